"""Helpers for testing schema grammars: an acceptance check and a random sampler of L(G)."""

from __future__ import annotations

import random

import numpy as np

from constrain.automata.regex import regex_to_dfa
from constrain.cfg.ir import Grammar
from constrain.schema.oracle import EarleyRecognizer


def acceptor(constraint):
    """``text -> bool`` of the *grammar* through our CFG engine when it handles grammars, else
    the Earley oracle (the end-of-document validator of an over-approximated schema is left
    out: these tests are about what the grammar accepts)."""
    try:
        import constrain
        from constrain.vocab import Vocabulary

        vocab = Vocabulary.from_token_bytes([bytes([i]) for i in range(256)] + [None], eos_token_ids=(256,))
        compiled = constrain.compile(constraint, vocab, validate_end=False)
        compiled.matcher()
        return lambda text: compiled.matcher().accepts_text(text)
    except Exception:
        return EarleyRecognizer(constraint.grammar).accepts


def sample_text(g: Grammar, rng: random.Random, max_depth: int = 10) -> bytes:
    """A random string of ``L(g)``: random derivation, shortest completions once deep."""
    height: dict[str, float] = {t: 0 for t in g.terminals}
    for r in g.rules:
        height[r] = float("inf")
    changed = True
    while changed:
        changed = False
        for r, alts in g.rules.items():
            best = min((max((height[s] for s in alt), default=0) + 1 for alt in alts), default=float("inf"))
            if best < height[r]:
                height[r] = best
                changed = True
    dfas = {}

    def term(name: str) -> bytes:
        t = g.terminals[name]
        if t.literal is not None:
            return t.literal.encode()
        if name not in dfas:
            dfas[name] = t.dfa if t.dfa is not None else regex_to_dfa(t.regex)
        d = dfas[name]
        s, out = d.start, bytearray()
        dist = d.distances
        for _ in range(40):
            if d.accepting[s] and rng.random() < 0.3:
                return bytes(out)
            nxt = np.flatnonzero(d.table[s] >= 0)
            if len(nxt) == 0:
                break
            b = int(rng.choice(list(nxt)))
            out.append(b)
            s = int(d.table[s, b])
        while not d.accepting[s]:
            row = d.table[s]
            cands = [b for b in np.flatnonzero(row >= 0) if dist[row[b]] == dist[s] - 1]
            b = int(cands[0])
            out.append(b)
            s = int(row[b])
        return bytes(out)

    def expand(sym: str, depth: int) -> bytes:
        if sym in g.terminals:
            return term(sym)
        alts = g.rules[sym]
        if depth > max_depth:
            hs = [max((height[s] for s in alt), default=0) for alt in alts]
            alt = alts[int(np.argmin(hs))]
        else:
            finite = [a for a in alts if all(height[s] < float("inf") for s in a)]
            alt = rng.choice(finite)
        return b"".join(expand(s, depth + 1) for s in alt)

    return expand(g.start, 0)
