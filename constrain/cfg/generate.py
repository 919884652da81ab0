"""Random members of a grammar's language, for oracle tests and benchmarks.

Expands rules at random with a depth budget; past the budget it takes the alternative with
the fewest bytes, so generation always terminates.  Terminals contribute random members of
their regular language; ``%ignore`` text is sprinkled between terminals.
"""

from __future__ import annotations

import random

from constrain.cfg.earley import EarleyGrammar
from constrain.cfg.ir import Grammar


def random_member(
    grammar: Grammar | EarleyGrammar,
    rng: random.Random,
    *,
    max_depth: int = 8,
    ignore_p: float = 0.15,
    max_terminal_len: int = 6,
) -> bytes:
    """A random string of the grammar's language (as UTF-8 bytes)."""
    eg = grammar if isinstance(grammar, EarleyGrammar) else EarleyGrammar(grammar)
    ml = eg.minlen()
    nt = eg.n_terminals
    out = bytearray()

    def ignore() -> None:
        if eg.ignore and rng.random() < ignore_p:
            t = rng.choice(eg.ignore)
            out.extend(eg.dfa(t).random_string(rng, max_len=3))

    # explicit stack to survive deep derivations: items are (symbol, depth)
    stack: list[tuple[int, int]] = [(eg.rule_index[eg.grammar.start], 0)]
    ignore()
    while stack:
        sym, depth = stack.pop()
        if sym < nt:
            out.extend(eg.dfa(sym).random_string(rng, max_len=max_terminal_len))
            ignore()
            continue
        alts = eg.by_lhs[sym]
        if depth >= max_depth:
            best = min(sum(ml[s] for s in eg.prods[p][1]) for p in alts)
            alts = [p for p in alts if sum(ml[s] for s in eg.prods[p][1]) == best]
        p = rng.choice(alts)
        for s in reversed(eg.prods[p][1]):
            stack.append((s, depth + 1))
    return bytes(out)


def mutate(data: bytes, rng: random.Random, alphabet: bytes) -> bytes:
    """One random byte-level edit (delete, insert, replace, duplicate a slice)."""
    k = rng.randrange(4)
    i = rng.randrange(len(data) + 1)
    if k == 0 and data:
        i = min(i, len(data) - 1)
        return data[:i] + data[i + 1 :]
    if k == 1:
        return data[:i] + bytes([rng.choice(alphabet)]) + data[i:]
    if k == 2 and data:
        i = min(i, len(data) - 1)
        return data[:i] + bytes([rng.choice(alphabet)]) + data[i + 1 :]
    j = rng.randrange(i, len(data) + 1)
    return data[:j] + data[i:j] + data[j:]


def grammar_alphabet(grammar: Grammar) -> bytes:
    """Bytes that occur in the grammar's literals, plus a few generic ones (mutation alphabet)."""
    chars = set(b" ()[]{},.;:'\"0123456789aZ_-+*/=<>!\n")
    for t in grammar.terminals.values():
        if t.literal is not None:
            chars.update(t.literal.encode("utf-8"))
    return bytes(sorted(chars))
