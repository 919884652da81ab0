"""A slow, obviously-correct recogniser for grammar IR with DFA terminals (test oracle).

Lark cannot take ``dfa=`` terminals, and the CFG engine is the thing under test, so the
schema tests and the conformance runner fall back on this: a scannerless Earley recogniser
over bytes where each terminal is run as its byte DFA and may end at any accepting state
(the non-greedy substitution semantics of the IR).
"""

from __future__ import annotations

from collections import defaultdict

from constrain.automata.bytedfa import ByteDFA
from constrain.automata.regex import regex_to_dfa
from constrain.cfg.ir import Grammar
from constrain.errors import GrammarError


class EarleyRecognizer:
    """``accepts(text)``: is ``text`` in the language of ``grammar``?"""

    def __init__(self, grammar: Grammar) -> None:
        if grammar.ignore:
            raise GrammarError("the oracle does not support %ignore terminals")
        self.g = grammar
        self.rules = grammar.rules
        self.start = grammar.start
        self.tables: dict[str, tuple[list, list, int]] = {}
        by_obj: dict[int, tuple[list, list, int]] = {}
        for name, t in grammar.terminals.items():
            if t.dfa is not None and id(t.dfa) in by_obj:
                self.tables[name] = by_obj[id(t.dfa)]
                continue
            if t.literal is not None:
                dfa = ByteDFA.literal(t.literal.encode("utf-8"))
            elif t.regex is not None:
                dfa = regex_to_dfa(t.regex)
            else:
                dfa = t.dfa
            self.tables[name] = (dfa.table.tolist(), dfa.accepting.tolist(), dfa.start)
            if t.dfa is not None:
                by_obj[id(t.dfa)] = self.tables[name]
        self.nullable: set[str] = set()
        changed = True
        while changed:
            changed = False
            for name, alts in self.rules.items():
                if name in self.nullable:
                    continue
                if any(all(s in self.nullable for s in alt) for alt in alts):
                    self.nullable.add(name)
                    changed = True
        for name, (_, acc, s) in self.tables.items():
            if s >= 0 and acc[s]:
                self.nullable.add(name)

    def accepts(self, text: str | bytes) -> bool:
        data = text.encode("utf-8") if isinstance(text, str) else text
        n = len(data)
        rules, tables, nullable = self.rules, self.tables, self.nullable
        waiting: list[dict[str, list]] = []
        scans: dict[tuple[str, int], set[int]] = {}
        agenda = [(self.start, k, 0, 0) for k in range(len(rules[self.start]))]
        for i in range(n + 1):
            chart: set = set()
            wait: dict[str, list] = defaultdict(list)
            waiting.append(wait)
            predicted: set[str] = set()
            new_scans: dict[tuple[str, int], set[int]] = defaultdict(set)
            for key, origins in scans.items():
                new_scans[key] |= origins
            while agenda:
                item = agenda.pop()
                if item in chart:
                    continue
                chart.add(item)
                lhs, k, d, o = item
                rhs = rules[lhs][k]
                if d == len(rhs):
                    for w in waiting[o].get(lhs, ()):
                        agenda.append((w[0], w[1], w[2] + 1, w[3]))
                    continue
                x = rhs[d]
                wait[x].append(item)
                if x in nullable:
                    agenda.append((lhs, k, d + 1, o))
                if x in rules:
                    # an empty derivation of x is covered by the nullable advance above
                    if x not in predicted:
                        predicted.add(x)
                        agenda.extend((x, kk, 0, i) for kk in range(len(rules[x])))
                else:
                    t = tables[x]
                    if t[2] >= 0:
                        new_scans[(x, t[2])].add(i)
            if i == n:
                return any(
                    it[0] == self.start and it[3] == 0 and it[2] == len(rules[self.start][it[1]]) for it in chart
                )
            c = data[i]
            scans = {}
            for (x, s), origins in new_scans.items():
                table, acc, _ = tables[x]
                s2 = table[s][c]
                if s2 < 0:
                    continue
                scans[(x, s2)] = set(origins)
                if acc[s2]:
                    for o in origins:
                        for w in waiting[o].get(x, ()):
                            agenda.append((w[0], w[1], w[2] + 1, w[3]))
            if not scans and not agenda:
                return False
        return False  # pragma: no cover
