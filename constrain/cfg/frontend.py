"""Grammar front ends: Lark EBNF (through lark's own loader) and llama.cpp GBNF.

Lark: we let lark parse and normalise the grammar text (EBNF operators, ``%import``,
templates, ``?rule`` inlining, terminal composition) and read back its expanded BNF rules and
terminal patterns, so every Lark feature its loader supports comes for free and the
semantics match lark's Earley parser (our oracle).  Pattern flags are carried into the regex
as inline groups (lark's ``to_regexp``).  Priorities only choose between parse trees, which a
recogniser does not build, so they are accepted and have no effect on the language.

GBNF is small enough to parse here: rules ``name ::= ...`` with strings, character classes,
``.``, groups, ``* + ? {m,n}``; every string or class becomes a terminal, so the byte-level
recogniser gives exactly llama.cpp's character-level semantics.
"""

from __future__ import annotations

import re

from constrain.cfg.ir import Grammar, GrammarBuilder, Terminal
from constrain.errors import GrammarError

_NAME_IN_MSG = re.compile(r"(?:Rule|Terminal|rule|terminal|symbol)\W+'?([A-Za-z_][\w]*)")


def grammar(text: str, start: str = "start") -> Grammar:
    """A :class:`Grammar` from Lark grammar text (lark's loader does the parsing).

    Raises :class:`GrammarError` naming the offending rule for undefined symbols, bad
    regexes or constructs lark rejects.
    """
    import lark
    from lark.load_grammar import load_grammar

    if not isinstance(text, str):
        raise GrammarError(f"grammar text must be a str, got {type(text).__name__}")
    try:
        loaded, _ = load_grammar(text, "<grammar>", [], False)
        lark_terms, lark_rules, ignore = loaded.compile([start], set())
    except (lark.exceptions.LarkError, ValueError, KeyError, AssertionError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        m = _NAME_IN_MSG.search(str(exc))
        raise GrammarError(f"lark rejected the grammar: {msg}", m.group(1) if m else None) from exc
    rules: dict[str, list[tuple[str, ...]]] = {}
    for r in lark_rules:
        name = str(r.origin.name)
        rules.setdefault(name, []).append(tuple(str(s.name) for s in r.expansion))
    terminals: dict[str, Terminal] = {}
    for t in lark_terms:
        pat = t.pattern
        if type(pat).__name__ == "PatternStr" and not pat.flags:
            terminals[t.name] = Terminal(t.name, literal=pat.value)
        else:
            terminals[t.name] = Terminal(t.name, regex=pat.to_regexp())
    used = {s for alts in rules.values() for alt in alts for s in alt} | set(ignore)
    terminals = {n: t for n, t in terminals.items() if n in used}
    g = Grammar(start, rules, terminals, tuple(ignore))
    g.validate()
    _check_terminals(g)
    return g


def _check_terminals(g: Grammar) -> None:
    """Compile every regex terminal now so a bad pattern is reported at grammar time."""
    from constrain.automata.regex import regex_to_dfa
    from constrain.errors import ConstraintTooLarge, RegexError

    for name, t in g.terminals.items():
        if t.regex is None:
            continue
        try:
            d = regex_to_dfa(t.regex)
        except (RegexError, ConstraintTooLarge) as exc:
            raise GrammarError(f"terminal pattern cannot be compiled: {exc}", name) from exc
        if d.is_empty():
            raise GrammarError("terminal matches no string", name)
        if d.accepting[d.start]:
            raise GrammarError(
                "terminal matches the empty string (zero-width terminals are not allowed)", name
            )


# ---- GBNF ------------------------------------------------------------------------------------

_GBNF_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


class _GbnfParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.b = GrammarBuilder()
        self.rule = "?"

    def error(self, msg: str) -> GrammarError:
        line = self.text.count("\n", 0, self.i) + 1
        return GrammarError(f"GBNF syntax error at line {line}: {msg}", self.rule)

    def ws(self, newlines: bool) -> None:
        t = self.text
        while self.i < len(t):
            c = t[self.i]
            if c == "#":
                while self.i < len(t) and t[self.i] != "\n":
                    self.i += 1
            elif c in " \t\r" or (newlines and c == "\n"):
                self.i += 1
            else:
                break

    def parse(self) -> Grammar:
        rules: dict[str, list[tuple[str, ...]]] = {}
        while True:
            self.ws(True)
            if self.i >= len(self.text):
                break
            m = _GBNF_NAME.match(self.text, self.i)
            if not m:
                raise self.error(f"expected a rule name, found {self.text[self.i : self.i + 10]!r}")
            self.rule = m.group(0)
            self.i = m.end()
            self.ws(False)
            if not self.text.startswith("::=", self.i):
                raise self.error("expected '::='")
            self.i += 3
            alts = self.alternation(nested=False)
            if self.rule in rules:
                rules[self.rule].extend(alts)
            else:
                rules[self.rule] = alts
        if "root" not in rules:
            raise GrammarError("GBNF grammar has no 'root' rule", "root")
        for name, alts in rules.items():
            if name in self.b.rules:
                raise GrammarError("rule name clashes with a generated name", name)
            self.b.rules[name] = alts
        return self.b.build("root")

    def alternation(self, nested: bool) -> list[tuple[str, ...]]:
        alts = [self.sequence(nested)]
        while self.i < len(self.text) and self.text[self.i] == "|":
            self.i += 1
            alts.append(self.sequence(nested))
        return alts

    def sequence(self, nested: bool) -> tuple[str, ...]:
        seq: list[str] = []
        t = self.text
        while True:
            self.ws(nested)
            if self.i >= len(t):
                break
            c = t[self.i]
            if c == "\n":
                # a newline ends the rule unless the next line continues it (starts with | or
                # is not a new 'name ::=')
                save = self.i
                self.ws(True)
                m = _GBNF_NAME.match(t, self.i)
                if self.i >= len(t):
                    break
                if m:
                    k = m.end()
                    while k < len(t) and t[k] in " \t":
                        k += 1
                    if t.startswith("::=", k):
                        self.i = save
                        break
                continue
            if c in "|)":
                break
            sym = self.primary()
            sym = self.postfix(sym)
            seq.append(sym)
        return tuple(seq)

    def primary(self) -> str:
        t = self.text
        c = t[self.i]
        if c == '"':
            self.i += 1
            chars = []
            while True:
                if self.i >= len(t):
                    raise self.error("unterminated string")
                if t[self.i] == '"':
                    self.i += 1
                    break
                chars.append(self.char())
            s = "".join(chars)
            if not s:
                return self.b.rule([()], hint="empty")
            return self.b.literal(s)
        if c == "[":
            self.i += 1
            neg = t.startswith("^", self.i)
            if neg:
                self.i += 1
            parts = []
            first = True
            while True:
                if self.i >= len(t):
                    raise self.error("unterminated character class")
                if t[self.i] == "]" and not first:
                    self.i += 1
                    break
                first = False
                lo = self.char()
                if t.startswith("-", self.i) and not t.startswith("-]", self.i):
                    self.i += 1
                    hi = self.char()
                    if ord(hi) < ord(lo):
                        raise self.error(f"bad range {lo!r}-{hi!r}")
                    parts.append(f"\\U{ord(lo):08x}-\\U{ord(hi):08x}")
                else:
                    parts.append(f"\\U{ord(lo):08x}")
            return self.b.regex("[" + ("^" if neg else "") + "".join(parts) + "]")
        if c == ".":
            self.i += 1
            return self.b.regex("(?s:.)")
        if c == "(":
            self.i += 1
            alts = self.alternation(nested=True)
            self.ws(True)
            if not t.startswith(")", self.i):
                raise self.error("expected ')'")
            self.i += 1
            return self.b.rule(alts, hint="group")
        m = _GBNF_NAME.match(t, self.i)
        if m:
            self.i = m.end()
            return m.group(0)
        raise self.error(f"unexpected {c!r}")

    def char(self) -> str:
        t = self.text
        c = t[self.i]
        if c != "\\":
            self.i += 1
            return c
        if self.i + 1 >= len(t):
            raise self.error("dangling backslash")
        e = t[self.i + 1]
        simple = {
            "n": "\n",
            "t": "\t",
            "r": "\r",
            "\\": "\\",
            '"': '"',
            "[": "[",
            "]": "]",
            "-": "-",
            "^": "^",
        }
        if e in simple:
            self.i += 2
            return simple[e]
        widths = {"x": 2, "u": 4, "U": 8}
        if e in widths:
            w = widths[e]
            h = t[self.i + 2 : self.i + 2 + w]
            if len(h) != w or not all(ch in "0123456789abcdefABCDEF" for ch in h):
                raise self.error(f"bad \\{e} escape")
            self.i += 2 + w
            cp = int(h, 16)
            if cp > 0x10FFFF:
                raise self.error("code point out of range")
            return chr(cp)
        raise self.error(f"unknown escape \\{e}")

    def postfix(self, sym: str) -> str:
        t = self.text
        while self.i < len(t):
            c = t[self.i]
            if c == "*":
                self.i += 1
                r = self.b.rule(None, hint="star")
                self.b.set_rule(r, [(), (r, sym)])
                sym = r
            elif c == "+":
                self.i += 1
                r = self.b.rule(None, hint="plus")
                self.b.set_rule(r, [(sym,), (r, sym)])
                sym = r
            elif c == "?":
                self.i += 1
                sym = self.b.rule([(), (sym,)], hint="opt")
            elif c == "{":
                m = re.compile(r"\{\s*(\d+)\s*(,\s*(\d*)\s*)?\}").match(t, self.i)
                if not m:
                    raise self.error("bad repetition")
                self.i = m.end()
                lo = int(m.group(1))
                hi = lo if m.group(2) is None else (int(m.group(3)) if m.group(3) else None)
                if hi is not None and hi < lo:
                    raise self.error(f"bad repetition {{{lo},{hi}}}")
                if max(lo, hi or 0) > 10_000:
                    raise self.error("repetition bound too large")
                seq: list[str] = [sym] * lo
                if hi is None:
                    r = self.b.rule(None, hint="star")
                    self.b.set_rule(r, [(), (r, sym)])
                    seq.append(r)
                else:
                    tail: str | None = None
                    for _ in range(hi - lo):
                        tail = self.b.rule([(), (sym,) if tail is None else (sym, tail)], hint="opt")
                    if tail is not None:
                        seq.append(tail)
                sym = self.b.rule([tuple(seq)], hint="rep")
            else:
                break
        return sym


def gbnf(text: str) -> Grammar:
    """A :class:`Grammar` from llama.cpp GBNF text (start rule ``root``)."""
    if not isinstance(text, str):
        raise GrammarError(f"GBNF text must be a str, got {type(text).__name__}")
    g = _GbnfParser(text).parse()
    _check_terminals(g)
    return g
