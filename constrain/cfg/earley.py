"""Incremental byte-level Earley recogniser over regular terminals (substitution semantics).

Why this shape: token masks need to ask "is this byte prefix still completable?" millions of
times, and samplers fork and rewind states constantly.  So the state is *persistent*:

* A :class:`Node` is an Earley item set at a lexeme boundary (items are ``(production, dot,
  origin Node)``).  Nodes are immutable once built and shared by every matcher state that
  reaches them, so copying or rolling back a matcher is copying a few references.
* A :data:`Pos` is the state between two bytes, a plain tuple ``(entries, node uid)``: the live
  lexer *entries* ``(terminal, dfa state, origin node uid)`` (every terminal that may currently
  be in progress, for every place it may have started: lexing is not greedy) and the uid of the
  boundary node reached at this byte, or 0.  Nodes are named by uid, not held
  (:meth:`EarleyGrammar.node` maps a uid back): a tuple of ints is untracked by Python's
  cyclic GC, and states are most of the objects a grammar keeps (in the memos below, in
  matcher histories; a schema's object-key position has one entry per property name, per
  byte).
* Completing terminals at a boundary is memoised by ``{(origin node, terminal)}`` (coded as
  ints) in :meth:`EarleyGrammar.complete`, so walking the same boundaries again (the mask
  walk does so for every token) costs a dict lookup.

``%ignore`` terminals are started at every boundary; completing one returns to its origin
node unchanged (ignored text is invisible to the grammar), so they may occur between any two
terminals and at both ends, like lark's ``%ignore``.  Nullable rules use the Aycock-Horspool
rule (advance over a nullable symbol at prediction time), so any CFG works: left recursion,
ambiguity, empty alternatives.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable, Collection

import numpy as np

from constrain._compiled import native as _native
from constrain.automata.bytedfa import ByteDFA
from constrain.automata.regex import regex_to_dfa
from constrain.cfg.ir import Grammar
from constrain.errors import ConstraintTooLarge, EmptyGrammarError, GrammarError, RegexError

INF = 1 << 30
_uids = itertools.count(1)


def _closure(prods: list[tuple[int, tuple[int, ...]]], base: set[int]) -> set[int]:
    """Least set containing ``base`` and every lhs whose rhs lies in the set (worklist, linear).

    With ``base`` = terminals it gives the productive symbols; with ``base`` empty, the
    nullable ones.  Linear in the grammar size, so huge generated grammars compile fast.
    """
    known = set(base)
    users: dict[int, list[int]] = {}
    remaining = [0] * len(prods)
    queue: list[int] = []
    for i, (lhs, rhs) in enumerate(prods):
        missing = [x for x in rhs if x not in known]
        remaining[i] = len(missing)
        for x in missing:
            users.setdefault(x, []).append(i)
        if not missing and lhs not in known:
            known.add(lhs)
            queue.append(lhs)
    while queue:
        x = queue.pop()
        for i in users.get(x, ()):
            remaining[i] -= 1
            if remaining[i] == 0:
                lhs = prods[i][0]
                if lhs not in known:
                    known.add(lhs)
                    queue.append(lhs)
    return known


class HorizonReached(Exception):
    """A completion needed an item set beyond the horizon of a truncated view (:meth:`EarleyGrammar.view`).

    Raised from inside :meth:`EarleyGrammar.build_node`, before anything is cached, so the
    caller can redo the computation with a deeper view (or the real nodes).
    """


class _HorizonWaiting(dict):
    """``waiting`` of the horizon node: any look-up means the truncated view was too shallow."""

    __slots__ = ()

    def get(self, key, default=None):  # type: ignore[override]
        raise HorizonReached

    def __getitem__(self, key):
        raise HorizonReached

    def __contains__(self, key) -> bool:
        raise HorizonReached


class Node:
    """An Earley item set at a lexeme boundary (immutable after :meth:`EarleyGrammar.build_node`)."""

    __slots__ = (
        "uid",
        "items",
        "origins",
        "waiting",
        "accepting",
        "expected",
        "key",
        "_need",
        "_best",
    )

    def __init__(self) -> None:
        self.uid = next(_uids)
        # items are (production, dot, k): the origin is origins[k], or this node if k < 0.
        # Plain int tuples (and a dict of them) are untracked by Python's cyclic GC, whose
        # full collections otherwise walk ~13 item tuples per node ever built (mask pauses)
        self.items: tuple[tuple[int, int, int], ...] = ()
        self.origins: tuple[Node, ...] = ()
        self.waiting: dict[int, tuple[tuple[int, int, int], ...]] = {}
        self.accepting = False
        self.expected: tuple[int, ...] = ()
        # (terminal, start state) of the lexer entries started here, canonical order
        self.key: tuple[tuple[int, int], ...] = ()
        self._need: dict[int, int] | None = None
        self._best: int | None = None

    @property
    def fresh(self) -> tuple[tuple[int, int, int], ...]:
        """The lexer entries started here ``(terminal, state, self.uid)``; built on demand, not
        stored: kept per node they were a third of the objects the cyclic GC walks."""
        u = self.uid
        return tuple([(t, q, u) for t, q in self.key])

    def full_items(self) -> list[tuple[int, int, Node]]:
        """Items with their origin nodes: ``(production, dot, origin)``."""
        origins = self.origins
        return [(p, d, self if k < 0 else origins[k]) for p, d, k in self.items]

    def _set_items(self, full: list[tuple[int, int, Node]], prods: list) -> None:
        """Store ``full`` items compactly and index the unfinished ones by their next symbol."""
        index: dict[int, int] = {}
        origins: list[Node] = []
        items = []
        waiting: dict[int, list[tuple[int, int, int]]] = {}
        for p, d, o in full:
            if o is self:
                k = -1
            else:
                k = index.get(o.uid, -2)
                if k == -2:
                    k = index[o.uid] = len(origins)
                    origins.append(o)
            it = (p, d, k)
            items.append(it)
            rhs = prods[p][1]
            if d < len(rhs):
                waiting.setdefault(rhs[d], []).append(it)
        self.items = tuple(items)
        self.origins = tuple(origins)
        self.waiting = {s: tuple(v) for s, v in waiting.items()}

    def __repr__(self) -> str:
        return f"Node(uid={self.uid}, items={len(self.items)}, accepting={self.accepting})"


_NODE_FIELDS: tuple[str, ...] = Node.__slots__  # (the record type below has no __slots__)

if _native is not None:
    # the same class as a type the cyclic GC does not track (native/records.c): nodes are
    # kept for the grammar's life, and each full collection walked them all and every memo
    # naming one (8-17 ms per collection on the JSON benchmark).  Nodes never form cycles:
    # they refer to older nodes only.  The __slots__ class above is the reference.
    Node = _native.record_type(f"{__name__}.Node", Node.__slots__, dict(vars(Node)))  # type: ignore[misc]


# the Node fields native/earley.c reads and writes, by their slot index
_CORE_FIELDS = ("uid", "items", "origins", "waiting", "accepting", "expected", "key")


# State between two bytes: ``(entries, node uid)``, the live lexer entries ``(terminal, state,
# origin node uid)`` and the uid of the boundary node reached here (0: none; uids start at 1).
# A plain tuple of ints, not a named tuple: only exact tuples are ever untracked by the cyclic
# GC, and a tuple naming a Node object is tracked too.  As a named tuple (holding the node)
# every state in the step and token memos, their keys and the matchers' histories was walked
# by each collection -- with the keys, half of what a grammar left on the heap.  Equality and
# hashing are unchanged (uids are never reused).  :meth:`EarleyGrammar.accepting`,
# :meth:`EarleyGrammar.viable` and :meth:`EarleyGrammar.node` read it.
Pos = tuple[tuple[tuple[int, int, int], ...], int]

_DEAD: Pos = ((), 0)


def _start_state_of(parser: EarleyGrammar) -> Callable[[int], int]:
    """The C core's callback for a terminal's DFA start state, holding ``parser`` weakly.

    Why weakly: the parser holds the core's bound methods, so a strong reference back made
    a cycle, and every compiled grammar was freed by the cyclic GC instead of by reference
    counting -- a gen-2 collection then freed a whole parser's memos (hundreds of thousands
    of objects) inside whatever call triggered it, typically a later grammar's fill_mask
    (~25 ms pauses, measured on JSONSchemaBench, 2026-12-03).
    """
    ref = weakref.ref(parser)

    def start_of(t: int) -> int:
        p = ref()
        if p is None:  # (the core outlived its parser: nothing can ask it any more)
            raise ReferenceError("the parser of this Earley core is gone")
        return p._start_state(t)

    return start_of


class EarleyGrammar:
    """A :class:`Grammar` prepared for recognition: integer symbols, productions, lazy DFAs.

    Terminal ids are ``0..n_terminals-1``; rule ids follow.  Terminal DFAs are compiled on
    first use (large generated grammars pay only for the terminals a document reaches).
    """

    STEP_MEMO = 200_000  # remembered multi-entry steps before the memo starts over

    def __init__(self, grammar: Grammar, *, max_dfa_states: int = 20_000, accelerate: bool = True) -> None:
        grammar.validate()
        self.grammar = grammar
        self.max_dfa_states = max_dfa_states
        self.term_names = list(grammar.terminals)
        self.term_index = {n: i for i, n in enumerate(self.term_names)}
        nt = len(self.term_names)
        self.n_terminals = nt
        rule_names = list(grammar.rules)
        self.rule_names = rule_names
        self.rule_index = {n: nt + i for i, n in enumerate(rule_names)}
        self.aug = nt + len(rule_names)  # the augmented start S' -> start
        sym = {**self.term_index, **self.rule_index}
        prods: list[tuple[int, tuple[int, ...]]] = []
        prod_rule: list[str] = []
        for name, alts in grammar.rules.items():
            for alt in alts:
                prods.append((self.rule_index[name], tuple(sym[s] for s in alt)))
                prod_rule.append(name)
        self.ignore = tuple(sorted({self.term_index[t] for t in grammar.ignore}))
        self.ignore_set = frozenset(self.ignore)
        # productive symbols (terminals assumed non-empty; checked when their DFA is built)
        productive = _closure(prods, set(range(nt)))
        start = self.rule_index[grammar.start]
        if start not in productive:
            raise EmptyGrammarError(
                "the start rule derives no finite string (its language is empty)", grammar.start
            )
        kept = [
            (i, p) for i, p in enumerate(prods) if all(s in productive for s in p[1]) and p[0] in productive
        ]
        self.prods: list[tuple[int, tuple[int, ...]]] = [p for _, p in kept] + [(self.aug, (start,))]
        self.prod_rule = [prod_rule[i] for i, _ in kept] + ["<start>"]
        self.aug_prod = len(self.prods) - 1
        self.by_lhs: dict[int, list[int]] = {}
        for i, (lhs, _) in enumerate(self.prods):
            self.by_lhs.setdefault(lhs, []).append(i)
        self.nullable = _closure(self.prods, set())
        self._dfas: list[ByteDFA | None] = [None] * nt
        self._tables: list[np.ndarray | None] = [None] * nt
        self._accs: list[np.ndarray | None] = [None] * nt
        # the terminals' ByteDFA.flat_table views and accepting flags as bytes, for the
        # byte-by-byte Python step (plain ints from indexing, not numpy scalars)
        self._flat: list[memoryview | None] = [None] * nt
        self._flat_acc: list[memoryview | None] = [None] * nt
        self._dist: list[list[int] | None] = [None] * nt  # per terminal: distances as a list
        # keys: completions coded as ints (see complete); memo keys and values: Pos tuples.
        # All of them plain ints and int tuples, which the cyclic GC stops tracking
        self._complete_cache: dict[int | tuple[int, ...], Node] = {}
        self._step_memo: dict[tuple[Pos, int], Pos] = {}
        self._lex_memo: dict[tuple[int, int, bytes], tuple[int, int]] = {}
        self._tok_memo: dict[tuple[Pos, bytes], Pos | bool] = {}
        self._intern: dict[tuple[int, ...], Node] = {}
        # uid -> node of every node built (entries name their origin by uid); never cleared:
        # a live Pos may name any node, and it no longer keeps that node alive itself
        self._nodes: dict[int, Node] = {}
        self._minlen: list[int] | None = None
        self.horizon = Node()
        self.horizon.waiting = _HorizonWaiting()
        # an item (production, dot, origin uid) coded as one int (see build_node)
        self._code = (len(self.prods), 1 + max(len(rhs) for _, rhs in self.prods))
        self._view_intern: dict[tuple[int, ...], Node] = {}
        # depth -> {node uid: its view}: a few grammar-wide dicts, not one per node (a dict
        # naming a Node is tracked by the cyclic GC; per node they were a sixth of the
        # objects left tracked once states and memo keys became int tuples)
        self._views: dict[int, dict[int, Node]] = {}
        # build_node, complete and view in C (native/earley.c) where the extension is built:
        # a mask that misses its caches runs them thousands of times (a third of the JSON
        # benchmark's mask time, interpreted).  The methods below are the reference
        # (accelerate=False, or CONSTRAIN_NO_NATIVE=1); the tests compare the two.
        self.accelerated = False
        if accelerate and _native is not None and hasattr(_native, "EarleyCore"):
            core = _native.EarleyCore(
                self.prods,
                self.nullable,
                self.ignore,
                nt,
                self.aug_prod,
                self._code,
                Node,
                self.horizon,
                HorizonReached,
                (self._intern, self._nodes, self._complete_cache, self._view_intern, self._views),
                _start_state_of(self),
                tuple(_NODE_FIELDS.index(f) for f in _CORE_FIELDS),
            )
            # (instance attributes: callers get the C methods without a Python frame)
            self.build_node = core.build_node  # type: ignore[method-assign]
            self.complete = core.complete  # type: ignore[method-assign]
            self.view = core.view  # type: ignore[method-assign]
            self.accelerated = True
        self.root = self.build_node([(self.aug_prod, 0, None)])

    def _start_state(self, t: int) -> int:
        """Terminal ``t``'s DFA start state (built on first use): the C core's key entries."""
        return int(self.dfa(t).start)

    def node(self, uid: int) -> Node:
        """The node an entry's origin uid (or a :data:`Pos`'s node uid) names."""
        return self._nodes[uid]

    def accepting(self, pos: Pos) -> bool:
        """Whether the document may end at ``pos`` (its boundary node accepts)."""
        u = pos[1]
        return bool(u) and self._nodes[u].accepting

    def viable(self, pos: Pos) -> bool:
        """Whether ``pos`` has a continuation or may end here (not dead)."""
        return bool(pos[0]) or self.accepting(pos)

    # ---- terminals --------------------------------------------------------------------------
    def dfa(self, t: int) -> ByteDFA:
        d = self._dfas[t]
        if d is None:
            d = self._build_dfa(t)
            self._dfas[t] = d
            self._tables[t] = d.table
            self._accs[t] = d.accepting
            self._flat[t] = d.flat_table
            self._flat_acc[t] = memoryview(np.ascontiguousarray(d.accepting, dtype=np.uint8)).cast("B")
        return d

    def _build_dfa(self, t: int) -> ByteDFA:
        name = self.term_names[t]
        term = self.grammar.terminals[name]
        try:
            if term.literal is not None:
                d = ByteDFA.literal(term.literal.encode("utf-8"))
            elif term.regex is not None:
                d = regex_to_dfa(term.regex, max_states=self.max_dfa_states)
            else:
                d = term.dfa
        except RegexError as exc:
            raise GrammarError(f"bad regex in terminal: {exc}", name) from exc
        except ConstraintTooLarge as exc:
            raise GrammarError(f"terminal regex too large: {exc}", name) from exc
        if d is None or d.is_empty():
            raise GrammarError("terminal matches no string", name)
        if d.accepting[d.start]:
            raise GrammarError(
                "terminal matches the empty string (zero-width terminals are not allowed; "
                "make the rule optional instead)",
                name,
            )
        return d

    def table(self, t: int) -> np.ndarray:
        tab = self._tables[t]
        if tab is None:
            self.dfa(t)
            tab = self._tables[t]
        return tab  # type: ignore[return-value]

    def acc(self, t: int) -> np.ndarray:
        a = self._accs[t]
        if a is None:
            self.dfa(t)
            a = self._accs[t]
        return a  # type: ignore[return-value]

    def compile_all_terminals(self) -> None:
        """Build every terminal DFA now (surfaces bad regexes eagerly)."""
        for t in range(self.n_terminals):
            self.dfa(t)

    # ---- item sets ---------------------------------------------------------------------------
    def build_node(self, seeds) -> Node:
        """Close ``seeds`` (items; origin None means the new node itself) under predict/complete."""
        node = Node()
        prods = self.prods
        nullable = self.nullable
        by_lhs = self.by_lhs
        nt = self.n_terminals
        seen: set[int] = set()
        np_, nd = self._code
        items: list[tuple[int, int, Node]] = []
        waiting: dict[int, list[tuple[int, int, Node]]] = {}
        predicted: set[int] = set()
        completed_here: set[int] = set()
        work = [(p, d, node if o is None else o) for p, d, o in seeds]
        while work:
            it = work.pop()
            p, d, org = it
            k = ((0 if org is node else org.uid) * np_ + p) * nd + d  # (p, d, origin uid; self as 0) as one int
            if k in seen:
                continue
            seen.add(k)
            items.append(it)
            lhs, rhs = prods[p]
            if d == len(rhs):
                if org is node:
                    completed_here.add(lhs)
                    for wp, wd, wo in waiting.get(lhs, ()):
                        work.append((wp, wd + 1, wo))
                else:
                    origins = org.origins
                    for wp, wd, wk in org.waiting.get(lhs, ()):
                        work.append((wp, wd + 1, org if wk < 0 else origins[wk]))
                continue
            s = rhs[d]
            waiting.setdefault(s, []).append(it)
            if s >= nt:
                if s not in predicted:
                    predicted.add(s)
                    for q in by_lhs.get(s, ()):
                        work.append((q, 0, node))
                if s in nullable or s in completed_here:
                    work.append((p, d + 1, org))
        # hash-consing: equal item sets (self-origins as 0) are one node, so repetition through
        # left-recursive rules (array elements, object members) returns to the *same* node
        # and every cache keyed by node identity (completions, masks) hits again.  The key is
        # a sorted tuple of ints, not a frozenset: the cyclic GC never traverses it (a set is
        # always tracked and visits every element; these keys were most of what it walked)
        ikey = tuple(sorted(seen))
        old = self._intern.get(ikey)
        if old is not None:
            return old
        if len(self._intern) > 500_000:
            self._intern.clear()
        self._intern[ikey] = node
        self._nodes[node.uid] = node
        node._set_items(items, self.prods)
        aug = self.aug_prod
        node.accepting = any(ip == aug and idot == 1 for ip, idot, _ in items)
        exp = sorted(s for s in waiting if s < nt)
        node.expected = tuple(exp)
        starts = sorted(set(exp) | self.ignore_set)
        node.key = tuple((t, self.dfa(t).start) for t in starts)
        return node

    def view(self, node: Node, k: int) -> Node:
        """``node`` truncated ``k`` origin levels deep: origins further away become :attr:`horizon`.

        Why: the real item sets encode the whole nesting path (every enclosing object of a
        JSON document), so caches keyed by real nodes miss in every new context, although
        a token can only complete a few levels.  Views are hash-consed by their truncated
        content, so equal local contexts share one view, and everything built from it
        (completions, masks) is shared too.  A computation on a view is exact unless it
        completes an item whose origin is the horizon; that raises :class:`HorizonReached`.
        """
        if k <= 0 or node is self.horizon:
            return self.horizon
        views = self._views.get(k)
        if views is None:
            views = self._views[k] = {}
        else:
            v = views.get(node.uid)
            if v is not None:
                return v
        view = self.view
        sub = tuple(view(o, k - 1) for o in node.origins)
        np_, nd = self._code
        seen = {((0 if j < 0 else sub[j].uid) * np_ + p) * nd + d: (p, d, j) for p, d, j in node.items}
        ikey = tuple(sorted(seen))  # (untracked by the GC, like build_node's keys)
        v = self._view_intern.get(ikey)
        if v is None:
            v = Node()
            v._set_items([(p, d, v if j < 0 else sub[j]) for p, d, j in seen.values()], self.prods)
            v.accepting = node.accepting
            v.expected = node.expected
            v.key = node.key
            if len(self._view_intern) > 500_000:
                self._view_intern.clear()
                self._views.clear()  # (it keeps views of views alive too)
                views = self._views[k] = {}
            self._view_intern[ikey] = v
        views[node.uid] = v
        return v

    def complete(self, done: Collection[tuple[Node, int]]) -> Node:
        """The node after terminals complete: ``done`` holds ``(origin node, terminal id)``
        pairs (any collection; repeats are fine)."""
        # memoised by the pairs coded as ints ``uid * n_terminals + terminal`` (one int for
        # one pair, the usual case; else a sorted tuple): untracked by the cyclic GC, unlike
        # the frozensets of (node, terminal) tuples this cache was keyed by (a set is always
        # tracked, and so is every tuple naming a Node).  A key holds uids, not nodes, so it
        # does not keep a view alive; uids are never reused, so a stale key never matches
        nt = self.n_terminals
        if len(done) == 1:
            for o, t in done:
                key: int | tuple[int, ...] = o.uid * nt + t
        else:
            codes = {o.uid * nt + t for o, t in done}
            key = codes.pop() if len(codes) == 1 else tuple(sorted(codes))
        hit = self._complete_cache.get(key)
        if hit is not None:
            if hit is self.horizon:  # remembered: this completion reaches past a view
                raise HorizonReached
            return hit
        origins = {o for o, _ in done}
        if len(origins) == 1 and all(t in self.ignore_set for _, t in done):
            node = next(iter(origins))  # ignored text is invisible to the grammar
        else:
            seeds = []
            for o, t in done:
                if t in self.ignore_set:
                    seeds.extend(o.full_items())
                w = o.waiting.get(t)
                if w:
                    origins = o.origins
                    seeds.extend((p, d + 1, o if k < 0 else origins[k]) for p, d, k in w)
            try:
                node = self.build_node(seeds)
            except HorizonReached:
                self._complete_cache[key] = self.horizon
                raise
        if len(self._complete_cache) > 200_000:
            self._complete_cache.clear()
        self._complete_cache[key] = node
        return node

    # ---- byte steps --------------------------------------------------------------------------
    def start_pos(self) -> Pos:
        return (self.root.fresh, self.root.uid)

    def step(self, pos: Pos, byte: int) -> Pos:
        """The state after one more byte (possibly dead: no entries and not accepting)."""
        flat = self._flat
        facc = self._flat_acc
        entries = pos[0]
        if len(entries) == 1:  # inside one lexeme, the usual case: no dict, no sort
            t, q, o = entries[0]
            q2 = flat[t][(q << 8) | byte]  # type: ignore[index]
            if q2 < 0:
                return _DEAD
            if not facc[t][q2]:  # type: ignore[index]
                return (((t, q2, o),), 0)
        # a step that completes terminals or starts from several entries is a pure function
        # of (pos, byte) and costs a dozen dict/set/sort operations: remembered.  Nodes are
        # hash-consed, so structural positions (after a key, between array items) recur
        # within a document and across documents
        memo = self._step_memo
        key = (pos, byte)
        hit = memo.get(key)
        if hit is not None:
            return hit
        nxt: set[tuple[int, int, int]] = set()
        done: set[tuple[Node, int]] = set()
        nodes = self._nodes
        for t, q, o in entries:
            q2 = flat[t][(q << 8) | byte]  # type: ignore[index]
            if q2 < 0:
                continue
            nxt.add((t, q2, o))
            if facc[t][q2]:  # type: ignore[index]
                done.add((nodes[o], t))
        u = 0
        if done:
            node = self.complete(done)
            u = node.uid
            for t, q in node.key:
                nxt.add((t, q, u))
        if not nxt:  # every entry died and nothing completed (most bytes a sampler tries)
            return _DEAD  # (not remembered: the loop above is all it costs)
        entries = tuple(nxt) if len(nxt) == 1 else tuple(sorted(nxt))
        res = memo[key] = (entries, u)
        if len(memo) > self.STEP_MEMO:
            memo.clear()
        return res

    def run(self, pos: Pos, data: bytes) -> Pos | None:
        """State after ``data`` or None once no continuation is viable.

        Inside one lexeme (a single live entry) the bytes go straight through its DFA without
        building a state per byte; :meth:`step` takes every byte that completes a terminal or
        starts from several entries.  :meth:`run_reference` is the byte-by-byte definition.
        """
        n = len(data)
        entries = pos[0]
        key = hit = None
        if len(entries) == 1 and n <= 64:
            # a whole token's bytes from one lexer state: how far they go inside the lexeme
            # depends on (terminal, state, bytes) alone, and inside a string or a number the
            # state recurs token after token -- remembered (tokens only, not long forced texts)
            t, q, o = entries[0]
            key = (t, q, data)
            hit = self._lex_memo.get(key)
            if hit is None:  # (first seen: the run below fills the lexeme memo)
                return self._run(pos, data, n, key, hit)
            if hit[0] == n:  # (the usual token: it stays inside the lexeme)
                return (((t, hit[1], o),), 0)
            if hit[0] < 0:  # (the entry dies inside the token: most tokens a sampler tries)
                return None
        # a token that ends a lexeme or starts from several entries: the whole run is a pure
        # function of (pos, bytes) too, and structural tokens (``":"``, ``","``) recur at the
        # same hash-consed positions -- one lookup instead of a step memo lookup per byte
        tkey = (pos, data) if n <= 64 else None
        if tkey is not None:
            got = self._tok_memo.get(tkey)
            if got is not None:
                return got or None
        res = self._run(pos, data, n, key, hit)
        if tkey is not None:
            memo = self._tok_memo
            memo[tkey] = res or False
            if len(memo) > self.STEP_MEMO:
                memo.clear()
        return res

    def _run(self, pos: Pos, data: bytes, n: int, key: tuple | None, hit: tuple | None) -> Pos | None:
        """:meth:`run` past its memos (``key``/``hit``: the lexeme memo's key and entry)."""
        flat = self._flat
        facc = self._flat_acc
        i = 0
        while i < n:
            entries = pos[0]
            if len(entries) == 1:
                t, q, o = entries[0]
                if i:  # (only the run from the token's first state is remembered)
                    key = hit = None
                if hit is not None:
                    j, q = hit
                    if j < 0:
                        return None
                else:
                    tab = flat[t]
                    acc = facc[t]
                    j = i
                    while j < n:
                        q2 = tab[(q << 8) | data[j]]  # type: ignore[index]
                        if q2 < 0:
                            j = -1
                            break  # the only entry died and nothing completed: dead
                        if acc[q2]:  # type: ignore[index]
                            break  # a terminal may complete here: the full step
                        q = q2
                        j += 1
                    if key is not None:
                        memo = self._lex_memo
                        memo[key] = (j, q)
                        if len(memo) > self.STEP_MEMO:
                            memo.clear()
                    if j < 0:
                        return None
                if j > i:
                    pos = (((t, q, o),), 0)
                    i = j
                    if i == n:
                        break
            pos = self.step(pos, data[i])
            if not pos[0] and not self.accepting(pos):  # (viable, inlined)
                return None
            i += 1
        return pos

    def run_reference(self, pos: Pos, data: bytes) -> Pos | None:
        """:meth:`run` one :meth:`step` per byte (the obviously correct version; tests compare)."""
        for b in data:
            pos = self.step(pos, b)
            if not self.viable(pos):
                return None
        return pos

    # ---- shortest completion ----------------------------------------------------------------
    def minlen(self) -> list[int]:
        """Fewest bytes each symbol derives (terminals by their DFA), by fixpoint."""
        if self._minlen is None:
            n = self.aug + 1
            ml = [INF] * n
            for t in range(self.n_terminals):
                ml[t] = int(self.dfa(t).distances[self.dfa(t).start])
            changed = True
            while changed:
                changed = False
                for lhs, rhs in self.prods:
                    v = sum(ml[s] for s in rhs)
                    if v < ml[lhs]:
                        ml[lhs] = v
                        changed = True
            self._minlen = ml
        return self._minlen

    def need(self, node: Node, sym: int) -> int:
        """Fewest bytes needed after ``sym`` is recognised at ``node`` to finish the document."""
        if node._need is None:
            ml = self.minlen()
            need: dict[int, int] = {}
            changed = True
            while changed:
                changed = False
                for p, d, org in node.full_items():
                    lhs, rhs = self.prods[p]
                    if d == len(rhs):
                        continue
                    rest = sum(ml[s] for s in rhs[d + 1 :])
                    if p == self.aug_prod:
                        tail = 0
                    elif org is node:
                        tail = need.get(lhs, INF)
                    else:
                        tail = self.need(org, lhs)
                    v = rest + tail
                    if v < need.get(rhs[d], INF):
                        need[rhs[d]] = v
                        changed = True
            node._need = need
        return node._need.get(sym, INF)

    def best(self, node: Node) -> int:
        """Fewest bytes completing the document from boundary ``node``."""
        if node._best is None:
            ml = self.minlen()
            b = 0 if node.accepting else INF
            for t in node.expected:
                b = min(b, ml[t] + self.need(node, t))
            node._best = b
        return node._best

    def shortest_completion(self, pos: Pos) -> int:
        # (the samplers' budget rule calls this for every token they check: plain lists and
        # the node's own need table, not numpy scalars and method calls, per entry)
        entries, u = pos
        nodes = self._nodes
        b = 0 if u and nodes[u].accepting else INF
        dists = self._dist
        ign = self.ignore_set
        for t, q, u in entries:
            o = nodes[u]
            dl = dists[t]
            if dl is None:
                dl = dists[t] = self.dfa(t).distances.tolist()
            if t in ign:
                tail = self.best(o)
            else:
                nd = o._need
                tail = nd.get(t, INF) if nd is not None else self.need(o, t)
            v = dl[q] + tail
            if v < b:
                b = v
        return b
