"""The grammar IR every front end compiles to (Lark, GBNF, JSON Schema, query constraints).

Plain BNF over named terminals: EBNF operators are expanded by the front ends, so the core
(lexer + Earley recogniser + token masks) sees one small structure.  Semantics are those of
*substitution*: a terminal stands for every string of its regular language, and lexing is
not greedy (the language equals lark's Earley with ``lexer='dynamic_complete'``).  Terminals
named in ``ignore`` may occur any number of times between two terminals (and at the ends).

Keeping this independent of lark lets JSON Schema build large grammars without generating
and re-parsing grammar text; :meth:`Grammar.to_lark` exists for oracles and debugging.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from constrain.errors import GrammarError

if TYPE_CHECKING:
    from constrain.automata.bytedfa import ByteDFA  # noqa: F401


@dataclass(frozen=True)
class Terminal:
    """A regular lexeme.  Exactly one of ``literal``, ``regex`` or ``dfa`` is set.

    ``regex`` uses Python syntax with full-match semantics (no anchors needed).  ``dfa`` is
    a prebuilt byte automaton for languages that are awkward as regex text (intersections,
    numeric ranges); such terminals cannot be exported with :meth:`Grammar.to_lark`.
    """

    name: str
    literal: str | None = None
    regex: str | None = None
    dfa: ByteDFA | None = field(default=None, compare=False, hash=False)

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.literal, self.regex, self.dfa)) != 1:
            raise GrammarError("a terminal needs exactly one of literal, regex or dfa", self.name)


@dataclass
class Grammar:
    """BNF: ``rules[name]`` is a list of alternatives, each a tuple of symbol names.

    A symbol is a rule name or a terminal name (the two namespaces must not overlap).  The
    empty tuple is the empty alternative.
    """

    start: str
    rules: dict[str, list[tuple[str, ...]]]
    terminals: dict[str, Terminal]
    ignore: tuple[str, ...] = ()

    def validate(self) -> Grammar:
        """Raise :class:`GrammarError` naming the rule for undefined or clashing symbols."""
        if self.start not in self.rules:
            raise GrammarError(f"start symbol {self.start!r} is not defined", self.start)
        clash = set(self.rules) & set(self.terminals)
        if clash:
            name = sorted(clash)[0]
            raise GrammarError(f"{name!r} is both a rule and a terminal", name)
        for name, alts in self.rules.items():
            for alt in alts:
                for sym in alt:
                    if sym not in self.rules and sym not in self.terminals:
                        raise GrammarError(f"undefined symbol {sym!r}", name)
        for t in self.ignore:
            if t not in self.terminals:
                raise GrammarError(f"%ignore names undefined terminal {t!r}", t)
        return self

    def to_lark(self) -> str:
        """The grammar as Lark text (rules lower-case, terminals upper-case), for oracles."""
        rn = {n: _lark_name(n, upper=False, i=i) for i, n in enumerate(self.rules)}
        tn = {n: _lark_name(n, upper=True, i=i) for i, n in enumerate(self.terminals)}
        names = {**rn, **tn}
        out = []
        for name, alts in self.rules.items():
            rhs = " | ".join(" ".join(names[s] for s in alt) if alt else "" for alt in alts)
            out.append(f"{rn[name]}: {rhs}")
        for name, t in self.terminals.items():
            if t.literal is not None:
                body = _lark_string(t.literal)
            elif t.regex is not None:
                body = "/" + t.regex.replace("/", "\\/") + "/"
            else:
                raise GrammarError("a dfa terminal cannot be exported to Lark", name)
            out.append(f"{tn[name]}: {body}")
        for t in self.ignore:
            out.append(f"%ignore {tn[t]}")
        return "\n".join(out) + "\n"

    def lark_start(self) -> str:
        """The start symbol's name in :meth:`to_lark` output."""
        return _lark_name(self.start, upper=False, i=list(self.rules).index(self.start))


def _lark_name(name: str, upper: bool, i: int) -> str:
    base = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "x"
    base = base.upper() if upper else base.lower()
    if base[0].isdigit():
        base = ("T" if upper else "r") + base
    return f"{base}_{i}" if upper else f"{base}__{i}"


def _lark_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class GrammarBuilder:
    """Builds a :class:`Grammar` with fresh names and shared literal terminals.

    Front ends generating large grammars (JSON Schema) use this instead of text so that
    equal literals and regexes become one terminal each.
    """

    def __init__(self) -> None:
        self.rules: dict[str, list[tuple[str, ...]]] = {}
        self.terminals: dict[str, Terminal] = {}
        self.ignore: list[str] = []
        self._lit: dict[str, str] = {}
        self._rx: dict[str, str] = {}
        self._ids = itertools.count()
        self.dfa_states = 0  # states of every automaton terminal so far (size budgets)

    def fresh(self, hint: str = "r") -> str:
        return f"{hint}#{next(self._ids)}"

    def literal(self, text: str) -> str:
        """Terminal name for the exact string ``text``."""
        if text not in self._lit:
            name = self.fresh("lit")
            self.terminals[name] = Terminal(name, literal=text)
            self._lit[text] = name
        return self._lit[text]

    def regex(self, pattern: str) -> str:
        """Terminal name for the regular language ``pattern`` (Python syntax, full match)."""
        if pattern not in self._rx:
            name = self.fresh("rx")
            self.terminals[name] = Terminal(name, regex=pattern)
            self._rx[pattern] = name
        return self._rx[pattern]

    def dfa(self, dfa: ByteDFA, hint: str = "dfa") -> str:
        name = self.fresh(hint)
        self.terminals[name] = Terminal(name, dfa=dfa)
        self.dfa_states += dfa.n_states
        return name

    def rule(self, alternatives: list[tuple[str, ...]] | None = None, hint: str = "r") -> str:
        """A new rule; pass ``None`` to reserve a name and :meth:`set_rule` later (recursion)."""
        name = self.fresh(hint)
        self.rules[name] = list(alternatives) if alternatives is not None else []
        return name

    def set_rule(self, name: str, alternatives: list[tuple[str, ...]]) -> None:
        self.rules[name] = list(alternatives)

    def build(self, start: str) -> Grammar:
        """The grammar, with alternatives that can derive no string removed.

        Generated grammars meet empty languages legitimately: ``multipleOf: 12`` within
        ``(-300, 0)`` and ``not multipleOf: 6`` leave an empty integer automaton in one branch
        of an ``anyOf``.  That branch must vanish rather than fail the whole grammar.  An
        empty *start* language leaves ``start`` with no alternative (like the ``false`` schema).
        """
        g = Grammar(start, self.rules, self.terminals, tuple(self.ignore)).validate()
        dead = {n for n, t in g.terminals.items() if t.dfa is not None and t.dfa.is_empty()}
        if not dead and all(g.rules.values()):
            return g
        live = set(g.terminals) - dead
        changed = True
        while changed:  # productive rules: least fixpoint
            changed = False
            for name, alts in g.rules.items():
                if name not in live and any(all(s in live for s in alt) for alt in alts):
                    live.add(name)
                    changed = True
        if start not in live:
            return Grammar(start, {start: []}, {}, ())
        rules = {
            name: [alt for alt in alts if all(s in live for s in alt)]
            for name, alts in g.rules.items()
            if name in live
        }
        terminals = {n: t for n, t in g.terminals.items() if n not in dead or n in g.ignore}
        return Grammar(start, rules, terminals, g.ignore).validate()
