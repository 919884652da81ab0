"""Matchers for context-free grammars: Earley over a non-greedy lexer, trie-walk token masks.

Mask algorithm (the llguidance idea, with xgrammar-style caching of the context-independent
part):

1. The matcher state's live lexer entries form a product lexer DFA (:mod:`constrain.cfg.lexer`).
   A Numba walk of the vocabulary trie with it (:mod:`constrain.engine.cfg_kernels`) marks
   every token that stays inside the current lexemes, and collects the trie nodes where a
   lexeme can end (boundaries), grouped by lexer state.
2. For each boundary lexer state, the parser completes the finished terminals (memoised by
   ``{(origin node, terminal)}``) and yields the lexemes allowed next; the subtrees below the
   boundary nodes are walked with *those*, recursively.
3. Every walk result is cached by ``(lexer key, trie nodes walked)``, which is all it depends
   on, so results are reused across matcher states, sequences and forks.  In steady state
   (e.g. inside a JSON string) a mask is a handful of dict lookups and sparse word ORs.
4. The parser-dependent part is keyed by *views*, not by the real item sets: a view cuts the
   origins ``view_depths[0]`` levels up (:meth:`EarleyGrammar.view`), so a mask computed in one
   nesting context serves every context that looks the same that far up.  The few tokens
   whose completions reach past the horizon (``"}}]``) raise :class:`HorizonReached` and are
   *deferred*: :meth:`CompiledGrammar._resolve` finishes them with the real nodes.  With
   more than one finite depth (``view_depths=(1, 3, 6, None)``) they are first tried on
   deeper views, and the results are remembered by the shallowest views that settle them
   (:meth:`CompiledGrammar._settled`).  Measured on 2026-12-03 against the default
   ``(3, None)``, in paired runs: 7-10% less mask time on the generic JSON grammar
   (``bench/cfg_bench.py``), but 12% more on 120 JSONSchemaBench schemas, whose grammars
   offer many more entries per position.  So the default stays ``(3, None)``.
5. By default every lexer entry is walked on its own and the results ORed (the item set of a
   union of completions is the union, so this is exact; the OR of their in-lexeme parts is
   remembered by the entries' content key, and only entries reaching a lexeme boundary are
   walked again, see :meth:`CompiledGrammar._walk_apart`); with ``split_entries=False`` the
   entries share one walk with their product lexer, and a product over ``max_lexer_states``
   still never fails a mask: the walk splits the entries and ORs the halves.

Walks and product lexers are keyed by digests of the terminal automata's content, not by the
grammar's terminal numbers, and kept per vocabulary for the whole process: every grammar
with a JSON string terminal shares that terminal's walks (a server compiling one schema per
request, or a benchmark over thousands of schemas, pays for them once).  Grammars sharing a
vocabulary are therefore not safe to use from several threads at once.

Compile is lazy: constructing :class:`CompiledGrammar` prepares the productions and the first
item set only; terminal DFAs, lexer products and walks are built when first reached.
"""

from __future__ import annotations

import functools
import hashlib
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from constrain._compiled import native as _native
from constrain.cfg.earley import EarleyGrammar, HorizonReached, Node, Pos
from constrain.cfg.ir import Grammar
from constrain.cfg.lexer import LexerDFA
from constrain.engine import cfg_kernels
from constrain.engine.cfg_kernels import or_sparse, sparsify, walk_classes
from constrain.engine.matcher import CompiledConstraint, HistoryMatcher, bitmask_words
from constrain.engine.slices import TokenSlices, slices_for
from constrain.errors import ConstraintTooLarge
from constrain.vocab import Vocabulary

# the C word helpers (native/cfgwords.c) where the extension is built: a Numba or numpy call
# costs ~0.5-1 us of dispatch around sub-microsecond work, tens of thousands of times a second
_or_sparse = or_sparse if _native is None else _native.or_sparse
_copy_words = None if _native is None else _native.copy_words
_cfg_walk = getattr(_native, "cfg_walk", None)
_cfg_subtree = getattr(_native, "cfg_subtree", None)

_MISSING = object()
_EMPTY_WORDS = np.zeros(0, dtype=np.uint32)
_EMPTY_NODES = np.zeros(0, dtype=np.int32)
_DEEPER = object()  # (an _rmasks marker: views this deep do not settle the mask)

# Walks and product lexers depend only on the *content* of the terminal automata in play (and
# on the vocabulary, for walks), not on the grammar they came from: keyed by content digests
# they are shared by every grammar compiled in the process -- the JSON string terminal's walk
# over the whole vocabulary is done once, not once per schema.
_SHARED_JOBS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Vocabulary -> LRU of walks
_SHARED_LEXERS: OrderedDict[tuple, LexerDFA | None] = OrderedDict()
SHARED_JOBS_MAX = 4096
SHARED_LEXERS_MAX = 4096
# (terminal digest, longest token) -> walk_classes of its DFA (see CompiledGrammar.walk_key),
# None past WALK_CLASSES_MAX_STATES states (numbering then costs more than it saves)
_SHARED_CLASSES: OrderedDict[tuple[bytes, int], np.ndarray | None] = OrderedDict()
WALK_CLASSES_MAX_STATES = 2048
SPLIT_PRODUCT_MAX = 4096  # product lexer states when entries are walked apart (see __init__)
_CLASS_DEMAND: dict[tuple[bytes, int], int] = {}  # digest -> states asked for before numbering


class _Job:
    """Cached result of one walk: sparse mask words, and per lexer state the boundary trie
    nodes with their cache key (made once here, not at each of the many cache look-ups)."""

    __slots__ = ("idx", "vals", "bnd")

    def __init__(self, idx: np.ndarray, vals: np.ndarray, bnd: list[tuple[int, np.ndarray, tuple]]) -> None:
        self.idx = idx
        self.vals = vals
        self.bnd = bnd


class CompiledGrammar(CompiledConstraint):
    """A :class:`Grammar` bound to a vocabulary; holds the parser and every mask cache.

    Not thread-safe (shared scratch buffers and caches); use one per thread.
    """

    def __init__(
        self,
        grammar: Grammar,
        vocab: Vocabulary,
        *,
        cache_jobs: int = 4096,
        cache_masks: int = 1024,
        max_lexer_states: int = 20_000,
        max_dfa_states: int = 20_000,
        view_depths: tuple[int | None, ...] = (3, None),
        split_entries: bool = True,
        end_check: Callable[[bytes], bool] | None = None,
        slices: bool = True,
        native_walk: bool = True,
    ) -> None:
        self.grammar = grammar
        self.vocab = vocab
        # EOS also needs end_check(text) where the grammar over-approximates (a schema's
        # validator: see constrain.schema.validate); matchers then keep their text
        self.end_check = end_check
        self.parser = EarleyGrammar(grammar, max_dfa_states=max_dfa_states)
        self.words = bitmask_words(len(vocab))
        self.max_lexer_states = max_lexer_states
        # with split entries a product serves only _subtree's leaf test, and past a few
        # thousand states a product costs more than walking its entries apart (measured on
        # 120 JSONSchemaBench schemas: 2 of 531 products passed 5,000 states; one failed at
        # 20,000 after 25 ms inside a mask)
        self._product_cap = min(max_lexer_states, SPLIT_PRODUCT_MAX) if split_entries else max_lexer_states
        # walk each lexer entry on its own and OR the results (exact, see _walk), instead of
        # one walk with the product lexer of all entries: single-terminal walks are keyed by
        # that terminal's automaton alone, so they are shared across grammars -- a schema's
        # "any other key" terminal beside its listed keys no longer makes every walk new.
        # Measured on 60 JSONSchemaBench schemas in one process: mask avg -22%; the
        # one-grammar JSON bench unchanged within noise
        self.split_entries = split_entries
        self._lexers: dict[tuple, LexerDFA | None] = {}
        self._stack = cfg_kernels.TableStack(self.parser._tables)
        jobs = _SHARED_JOBS.get(vocab)
        if jobs is None:
            jobs = _SHARED_JOBS[vocab] = OrderedDict()
        self._jobs: OrderedDict[tuple, _Job] = jobs  # shared with every grammar on this vocabulary
        self._cache_jobs = cache_jobs
        self._dkeys: dict[tuple, tuple] = {}  # lexer key -> content key
        self._wkeys: dict[tuple, tuple] = {}  # one-entry lexer key -> walk key (see walk_key)
        self._digests: dict[int, bytes] = {}  # terminal -> digest of its automaton
        # full text masks keyed by the exact lexer entries (origin nodes by uid: nodes are immutable
        # and never reused, so equal keys mean equal states), e.g. every token inside a string
        self._masks: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._cache_masks = cache_masks
        self._eos = frozenset(vocab.eos_token_ids)
        self._scratch: np.ndarray | None = None
        self._bnd_node: np.ndarray | None = None
        self._bnd_state: np.ndarray | None = None
        self._root = np.zeros(1, dtype=np.int32)
        self._mark: np.ndarray | None = None
        self._gen = 0
        self.stats: dict[str, float] = {
            "walks": 0,
            "walk_s": 0.0,
            "job_hits": 0,
            "lexers": 0,
            "lexer_s": 0.0,
            "mask_hits": 0,
            "sub_hits": 0,
            "view_hits": 0,
            "split_lexers": 0,
            "deferred": 0,
            "union_hits": 0,
            "resolved_hits": 0,
            "item_hits": 0,
            "slice_walks": 0,
        }
        # origin levels seen by a mask walk, then by the retries of what it deferred; the
        # last entry must be None (the real nodes, see EarleyGrammar.view)
        if not view_depths or view_depths[-1] is not None:
            raise ValueError("view_depths must end with None (the real nodes)")
        self.view_depths = view_depths
        self._vmasks: OrderedDict[tuple, tuple[np.ndarray, tuple]] = OrderedDict()
        # full masks whose deferred items resolved on views view_depths[lev] deep, keyed by
        # (lev, the entries on those views), or _DEEPER where views that deep do not suffice
        # (see text_mask_words); _max_level: the deepest level a resolution of the mask being
        # built needed (len(view_depths) - 1: the real nodes, so it holds for its state only)
        self._rmasks: OrderedDict[tuple, object] = OrderedDict()
        self._max_level = 1
        # one deferred item's resolution, the same way (see _resolve_item)
        self._items: OrderedDict[tuple, object] = OrderedDict()
        self._subs: OrderedDict[tuple, tuple[np.ndarray, np.ndarray, tuple]] = OrderedDict()
        # (entries' content key, trie roots) -> the OR of their in-lexeme walks, and which
        # entries reach a lexeme boundary there (see _walk_apart)
        self._unions: OrderedDict[tuple, tuple[np.ndarray, np.ndarray, tuple[int, ...]]] = OrderedDict()
        self._drops: OrderedDict[tuple, tuple] = OrderedDict()  # see _drop_walked
        # settle most tokens of a walk from inside a string without visiting them
        # (constrain.engine.slices); off: every walk visits the whole trie (the reference)
        self.slices = slices
        self._slices: TokenSlices | None = None
        # the cache-hit traversal (_walk, _walk_apart, _subtree) in C, native/cfgwalk.c,
        # where the extension is built; the methods below stay its reference
        self.native_walk = native_walk and _cfg_walk is not None
        self._zeros = functools.partial(np.zeros, self.words, dtype=np.uint32)  # (for the C walk)

    def matcher(self) -> CFGMatcher:
        return CFGMatcher(self)

    # ---- caches ------------------------------------------------------------------------------
    def lexer(self, key: tuple[tuple[int, int], ...]) -> LexerDFA | None:
        """The product lexer of ``key`` (Numba construction), or None if it passes
        ``max_lexer_states``: the walk then splits the entries (see :meth:`_walk`) rather
        than fail mid-generation on a grammar that compiled."""
        lx = self._lexers.get(key, _MISSING)
        if lx is _MISSING:
            p = self.parser
            dkey = (self.content_key(key), self._product_cap)
            lx = _SHARED_LEXERS.get(dkey, _MISSING)
            if lx is not _MISSING:
                self._lexers[key] = lx
                return lx  # type: ignore[return-value]
            t0 = time.perf_counter()
            try:
                lx = LexerDFA(
                    key,
                    p._tables,
                    p._accs,
                    max_states=self._product_cap,
                    product=self._stack.product,
                )
            except ConstraintTooLarge:
                lx = None
                self.stats["split_lexers"] += 1
            self.stats["lexer_s"] += time.perf_counter() - t0
            if len(self._lexers) > 20_000:
                self._lexers.clear()
            self._lexers[key] = lx
            _SHARED_LEXERS[dkey] = lx
            if len(_SHARED_LEXERS) > SHARED_LEXERS_MAX:
                _SHARED_LEXERS.popitem(last=False)
            self.stats["lexers"] += 1
        return lx  # type: ignore[return-value]

    def content_key(self, key: tuple[tuple[int, int], ...]) -> tuple:
        """``key`` with each terminal replaced by a digest of its automaton (table, accepting
        states): equal content keys give identical product lexers and walks in any grammar."""
        d = self._dkeys.get(key)
        if d is None:
            p = self.parser
            parts = []
            for t, q in key:
                g = self._digests.get(t)
                if g is None:
                    g = self._digests[t] = p.dfa(t).digest
                parts.append((g, q))
            d = self._dkeys[key] = tuple(parts)
        return d

    def walk_key(self, key: tuple[tuple[int, int], ...]) -> tuple:
        """The part of a walk's cache key that stands for the lexer entries ``key``.

        For one entry, its terminal's digest and the state's class under
        :func:`~constrain.engine.cfg_kernels.walk_classes` (coded ``-1 - class``), so states
        whose walks cannot differ share one: generating inside a string with ``maxLength``
        steps through a new DFA state every token, and each used to cost a walk of the whole
        vocabulary (measured on 120 JSONSchemaBench schemas: 43% of such walks repeated an
        earlier one this way, a third of all mask time was these walks).  The state itself
        for automata too big to number cheaply.  Several entries (a product lexer): their
        exact :meth:`content_key`.
        """
        if len(key) != 1:
            return self.content_key(key)
        w = self._wkeys.get(key)
        if w is not None:  # (the usual case: on every walk-cache look-up)
            return w
        ck = self.content_key(key)
        (g, q), = ck
        ck_d = (g, self.vocab.trie.max_depth)
        cl = _SHARED_CLASSES.get(ck_d, _MISSING)
        if cl is _MISSING:
            t = key[0][0]
            p = self.parser
            table, acc = p._tables[t], p._accs[t]
            # (~0.2 ms for a typical string terminal, once per process; a full walk ~1.8 ms).
            # A literal's states all walk differently (each expects another suffix), bar
            # periodic literals past the longest token: numbering them is all cost
            big = len(table) > WALK_CLASSES_MAX_STATES or "literal_bytes" in p.dfa(t).__dict__
            # numbering costs ~states x rounds (17 ms for a 1,500-state pattern, in one mask),
            # and pays back only over walks from many states: so a big automaton is numbered
            # once walks from 1 + states/256 of its states were asked for, exact keys till then
            need = 1 + len(table) // 256
            seen = _CLASS_DEMAND.get(ck_d, 0) + 1
            if big or seen >= need:
                cl = None if big else walk_classes(table, acc, ck_d[1])
                _SHARED_CLASSES[ck_d] = cl
                _CLASS_DEMAND.pop(ck_d, None)
                if len(_SHARED_CLASSES) > SHARED_LEXERS_MAX:
                    _SHARED_CLASSES.popitem(last=False)
            else:
                cl = None
                if len(_CLASS_DEMAND) > SHARED_LEXERS_MAX:
                    _CLASS_DEMAND.clear()
                _CLASS_DEMAND[ck_d] = seen
        w = ck if cl is None else ((g, -1 - int(cl[q])),)  # type: ignore[index]
        self._wkeys[key] = w
        return w

    def job(self, chain: tuple, lx: LexerDFA, roots: np.ndarray) -> _Job:
        j = self._jobs.get(chain)
        if j is not None:
            try:
                self._jobs.move_to_end(chain)
            except KeyError:  # evicted meanwhile through another grammar (another thread)
                pass
            self.stats["job_hits"] += 1
            return j
        trie = self.vocab.trie
        if self._scratch is None:
            self._scratch = np.zeros(self.words, dtype=np.uint32)
            self._bnd_node = np.empty(trie.n_nodes, dtype=np.int32)
            self._bnd_state = np.empty(trie.n_nodes, dtype=np.int32)
        out = self._scratch
        t0 = time.perf_counter()
        tier = None
        if self.slices and len(roots) == 1 and roots[0] == 0:
            # from the root, inside a string: most tokens are settled without a walk (see
            # constrain.engine.slices); the rest trie is walked and its nodes mapped back
            if self._slices is None:
                self._slices = slices_for(self.vocab)
            tier = self._slices.pick(lx.table, lx.cls, lx.accept, lx.start)
        wt = trie if tier is None else tier.trie
        while True:
            nb = cfg_kernels.lexer_walk(
                lx.table,
                lx.cls,
                lx.accept,
                lx.start,
                roots,
                wt.byte,
                wt.depth,
                wt.next,
                wt.tok_start,
                wt.tok_end,
                wt.tokens,
                wt.tok1,
                wt.max_depth,
                out,
                self._bnd_node,
                self._bnd_state,
            )
            if nb <= len(self._bnd_node):
                break
            out[:] = 0
            self._bnd_node = np.empty(2 * nb, dtype=np.int32)
            self._bnd_state = np.empty(2 * nb, dtype=np.int32)
        if tier is not None:
            self.stats["slice_walks"] += 1
        idx, vals, ss, nn, starts = cfg_kernels.finish_walk(
            out,
            _EMPTY_WORDS if tier is None else tier.words,
            _EMPTY_NODES if tier is None else tier.node_map,
            self._bnd_node,
            self._bnd_state,
            nb,
        )
        bnd: list[tuple[int, np.ndarray, tuple]] = []
        for g in range(len(starts) - 1):
            grp = nn[starts[g] : starts[g + 1]]
            bnd.append((int(ss[starts[g]]), grp, _roots_key(grp)))
        j = _Job(idx, vals, bnd)
        self.stats["walks"] += 1
        self.stats["walk_s"] += time.perf_counter() - t0
        self._jobs[chain] = j
        while len(self._jobs) > max(self._cache_jobs, SHARED_JOBS_MAX):
            self._jobs.popitem(last=False)
        return j

    def _next_gen(self) -> int:
        if self._mark is None:
            self._mark = np.zeros(self.vocab.trie.n_nodes, dtype=np.int64)
        self._gen += 1
        return self._gen

    def text_mask_words(self, pos: Pos) -> np.ndarray:
        """uint32 words of the text tokens allowed at ``pos`` (EOS not included).

        Exact states (the entries themselves, origins by uid) hit ``_masks`` directly.  Otherwise the walk runs on
        truncated views of the origins (:meth:`EarleyGrammar.view`), so it and all the work
        below it are shared by every context that looks the same within
        ``view_depths[0]`` origin levels.  The few subtrees whose tokens complete further
        (a token like ``"}}]`` pops several levels) come back as *deferred* chains of
        completions and are finished by :meth:`_resolve` with deeper views, and at last
        with the real nodes.
        """
        mkey = pos[0]  # (terminal, state, origin node uid)
        hit = self._masks.get(mkey)
        if hit is not None:
            self._masks.move_to_end(mkey)
            self.stats["mask_hits"] += 1
            return hit
        view = self.parser.view
        depth = self.view_depths[0]
        by_uid = self.parser._nodes  # (entries name their origins by uid)
        # (one view per distinct origin: the entries at a position mostly share a few origins)
        vof = {o: view(by_uid[o], depth) for o in {o for _, _, o in mkey}}
        seen: dict[tuple[int, int, int], tuple[int, int, Node]] = {}
        for t, q, o in mkey:
            v = vof[o]
            seen[(t, q, v.uid)] = (t, q, v)
        vkey = tuple(seen)
        vhit = self._vmasks.get(vkey)
        if vhit is None:
            entries = tuple(seen.values())
            out = np.zeros(self.words, dtype=np.uint32)
            key = tuple((t, q) for t, q, _ in entries)
            if self.native_walk:
                d = _cfg_walk(self, out, entries, key, self._root, {}, None)
            else:
                d = self._walk(out, entries, key, self._root, {})
            deferred = _dedupe(d)
            vhit = (out, deferred)
            self._vmasks[vkey] = vhit
            if len(self._vmasks) > self._cache_masks:
                self._vmasks.popitem(last=False)
        else:
            self._vmasks.move_to_end(vkey)
            self.stats["view_hits"] += 1
        out, deferred = vhit
        if deferred:
            # what the deferred items add is exact on views ``view_depths[lev]`` deep unless a
            # completion reaches past those too; so the whole mask is remembered by the entries
            # on the shallowest such views, which many real contexts share (every document
            # nesting the same few levels), and each shallower key holds a marker saying it is
            # too shallow (whether a completion passes a horizon is a function of the views)
            depths = self.view_depths

            def rkey(lev: int) -> tuple:
                d = depths[lev]
                vu = {o: view(by_uid[o], d).uid for o in vof}
                return (lev, tuple(sorted({(t, q, vu[o]) for t, q, o in mkey})))

            rhit, rkeys = self._settled(self._rmasks, rkey)
            if rhit is not None:
                self.stats["resolved_hits"] += 1
                out = rhit  # type: ignore[assignment]
            else:
                out = out.copy()
                real: dict[int, dict[int, Node]] = {}  # view uid -> the real origins it stands for
                for o, v in vof.items():
                    real.setdefault(v.uid, {})[o] = by_uid[o]
                self._max_level = 1
                for done, chain, nodes in deferred:  # (done: (view uid, terminal) pairs)
                    self.stats["deferred"] += 1
                    pairs = [(r, t) for vu, t in done for r in real[vu].values()]
                    self._resolve_item(out, pairs, chain, nodes)
                # (_max_level len(view_depths) - 1: the real nodes were needed, nothing is shared)
                self._settle(self._rmasks, rkey, rkeys, self._max_level, out, 4 * self._cache_masks)
        self._masks[mkey] = out
        if len(self._masks) > self._cache_masks:
            self._masks.popitem(last=False)
        return out

    def _settled(self, cache: OrderedDict, key_at: Callable[[int], tuple]) -> tuple[object, list[tuple]]:
        """The value remembered under the shallowest view level that settles it (levels
        ``1..len(view_depths) - 2``, ``key_at(level)`` keys), or None; and the keys made.

        A computation on views is exact unless a completion passes their horizon, and
        whether one does is a function of the views: so a key on too shallow views holds
        :data:`_DEEPER`, which sends the lookup one level deeper, and a settled value serves
        every real context with the same views."""
        keys: list[tuple] = []
        for lev in range(1, len(self.view_depths) - 1):
            k = key_at(lev)
            keys.append(k)
            hit = cache.get(k)
            if hit is None:
                break
            cache.move_to_end(k)
            if hit is not _DEEPER:
                if lev > self._max_level:  # (the value depends on views that deep)
                    self._max_level = lev
                return hit, keys
        return None, keys

    def _settle(self, cache: OrderedDict, key_at, keys: list[tuple], top: int, value: object, limit: int) -> None:
        """Remember ``value``, computed with views down to level ``top``, as :meth:`_settled` reads it."""
        for lev in range(1, min(top, len(self.view_depths) - 2) + 1):
            if lev > len(keys):
                keys.append(key_at(lev))
            cache[keys[lev - 1]] = value if lev == top else _DEEPER
        while len(cache) > limit:
            cache.popitem(last=False)

    def _resolve_item(self, out: np.ndarray, pairs: list, chain: tuple, nodes: np.ndarray) -> None:
        """:meth:`_resolve` from level 1, remembered like whole masks (see :meth:`_settled`):
        the same closer after the same few levels recurs under many real contexts, and a
        new mask mixes items seen in other masks."""
        depths = self.view_depths
        if len(depths) == 2:  # (no level between the first views and the real nodes)
            self._resolve(out, pairs, chain, nodes, 1)
            return
        view = self.parser.view
        base = (chain, _roots_key(nodes))

        def key(lev: int) -> tuple:
            return (lev, tuple(sorted({(view(r, depths[lev]).uid, t) for r, t in pairs})), base)

        hit, keys = self._settled(self._items, key)
        if hit is not None:
            if len(hit[0]):  # type: ignore[index]
                _or_sparse(out, hit[0], hit[1])  # type: ignore[index]
            self.stats["item_hits"] += 1
            return
        outer = self._max_level
        self._max_level = 1
        tmp = np.zeros(self.words, dtype=np.uint32)
        self._resolve(tmp, pairs, chain, nodes, 1)
        top = self._max_level
        self._max_level = max(outer, top)
        res = sparsify(tmp)
        if len(res[0]):
            _or_sparse(out, res[0], res[1])
        self._settle(self._items, key, keys, top, res, self._cache_jobs)

    def _resolve(self, out: np.ndarray, pairs: list, chain: tuple, nodes: np.ndarray, level: int) -> None:
        """OR in a deferred subtree: complete ``pairs`` (real origin, terminal), then ``chain``
        (a tuple of sorted terminal tuples).

        Tried on views ``view_depths[level:]`` deep in turn (shared across contexts like
        the first walk), the real nodes last (``None``: no horizon).  Each retry's chain is
        one lexeme longer and its trie nodes deeper, so the recursion ends.
        """
        complete = self.parser.complete
        view = self.parser.view
        depths = self.view_depths
        while True:
            depth = depths[level]
            try:
                if depth is None:
                    y = complete(pairs)
                else:
                    y = complete([(view(r, depth), t) for r, t in pairs])
                for ts in chain:
                    y = complete([(y, t) for t in ts])
            except HorizonReached:
                level += 1
                continue
            break
        if level > self._max_level:  # (what the mask being built depends on: see text_mask_words)
            self._max_level = level
        if not y.key:
            return
        # the walk below goes through a shallow view again, so it is shared across contexts
        # too; what it defers is resolved from the same pairs with the chain extended
        v = y if depth == depths[0] else view(y, depths[0])
        sub = _cfg_subtree(self, out, v, nodes, None) if self.native_walk else self._subtree(out, v, nodes)
        for ch, nn in sub:
            self._resolve(out, pairs, chain + ch, nn, 1)

    def _walk(
        self, out: np.ndarray, entries, key, roots: np.ndarray, visited: dict[int, tuple[np.ndarray, tuple]], rk: tuple | None = None
    ) -> list:
        """OR into ``out`` the tokens viable below ``roots`` when ``entries`` start there.

        Returns the deferred subtrees ``(done, chain, trie nodes)``: completing ``done``
        (sorted ``(origin uid, terminal)`` pairs) here, then each terminal set of ``chain``
        in turn, needs an item set beyond the horizon of a view (:class:`HorizonReached`),
        so the caller must finish them with real nodes.  Uids and sorted int tuples rather
        than frozensets of ``(node, terminal)``: deferred items are kept in the mask caches,
        and ints and int tuples are untracked by the cyclic GC (sets and tuples naming a
        node never are).

        Reaching the same parser node at the same trie node twice (a run of ignored spaces
        ends at every depth) would walk the same subtree again, exponentially often; so
        ``visited`` keeps, per parser node of this mask, the trie nodes already walked below
        it (with their key), and a second visit drops those (:meth:`_drop_walked`).  The
        first visit, the most common, costs one dict store.
        ``rk``: ``_roots_key(roots)`` where the caller has it.
        """
        if self.split_entries and len(key) > 1:
            return self._walk_apart(out, entries, key, roots, visited)
        lx = self.lexer(key)
        if lx is None:
            # a product too big: halves on their own, recursively.  Exact: the item set
            # completed from a union of (origin, terminal) pairs is the union of the item
            # sets, so its continuations are the union of theirs too
            h = len(entries) // 2
            d = self._walk(out, entries[:h], key[:h], roots, visited)
            return d + self._walk(out, entries[h:], key[h:], roots, visited)
        if lx.start < 0:
            return []
        if rk is None:
            rk = _roots_key(roots)
        j = self.job((self.walk_key(key), rk), lx, roots)
        if len(j.idx):
            _or_sparse(out, j.idx, j.vals)
        complete = self.parser.complete
        deferred: list = []
        for s, nodes, nk in j.bnd:
            done = [(entries[e][2], entries[e][0]) for e in lx.completing[s]]
            try:
                y = complete(done)
            except HorizonReached:
                deferred.append((_uid_pairs(done), (), nodes))
                continue
            if not y.key:
                continue
            prev = visited.get(y.uid)
            if prev is None:
                visited[y.uid] = (nodes, nk)
            else:  # (runs of ignored text): drop the trie nodes already walked for y
                nodes, nk, both = self._drop_walked(prev, nodes, nk)
                if not len(nodes):
                    continue
                visited[y.uid] = both
            chains = self._subtree(out, y, nodes, nk)
            if chains:  # (the pairs' key once for all of the subtree's chains)
                ud = _uid_pairs(done)
                deferred += [(ud, ch, nn) for ch, nn in chains]
        return deferred

    def _drop_walked(self, prev: tuple[np.ndarray, tuple], nodes: np.ndarray, nk: tuple) -> tuple:
        """``nodes`` without the trie nodes of ``prev`` (``(nodes, key)``, walked already for the
        same parser node), its key, and the union as a ``visited`` entry; remembered by the
        two keys.  Whitespace tokens end at thousands of trie nodes (up to ~13k on llama3),
        and the same two sets meet again in every mask that walks past them: marking and
        filtering them with numpy, and hashing the result, cost ~10% of the JSON benchmark's
        mask time before this memo."""
        dk = (prev[1], nk)
        hit = self._drops.get(dk)
        if hit is None:
            g = self._next_gen()
            self._mark[prev[0]] = g
            kept = np.ascontiguousarray(nodes[self._mark[nodes] != g])
            both = np.concatenate((prev[0], kept))
            hit = (kept, _roots_key(kept), (both, _roots_key(both)))
            self._drops[dk] = hit
            if len(self._drops) > self._cache_jobs:
                self._drops.popitem(last=False)
        return hit

    def _walk_apart(self, out: np.ndarray, entries, key, roots: np.ndarray, visited: dict[int, tuple[np.ndarray, tuple]]) -> list:
        """:meth:`_walk` of each entry on its own, ORed (exact, as for the halves above).

        What an entry's walk adds *inside* its lexeme depends only on its automaton and
        ``roots``, so the OR of that part over all entries is remembered by the entries'
        content key: at an object's key position a schema offers every property name, one
        literal entry each (hundreds in the heaviest JSONSchemaBench schemas), and walking
        them one by one cost ~30 us of Python per entry on every mask that missed the mask
        caches, although their walks were cached.  Only the entries whose walk reaches a
        lexeme boundary below ``roots`` (few: a token must hold a whole property name) need
        the parser, so only they are walked again, each on its own.
        """
        rk = _roots_key(roots)
        ukey = (self.content_key(key), rk)
        u = self._unions.get(ukey)
        if u is None:
            u = self._union(ukey, key, roots, rk)
        else:
            self._unions.move_to_end(ukey)
            self.stats["union_hits"] += 1
        if len(u[0]):
            _or_sparse(out, u[0], u[1])
        deferred: list = []
        for e in u[2]:
            deferred += self._walk(out, entries[e : e + 1], key[e : e + 1], roots, visited, rk)
        return deferred

    def _union(self, ukey: tuple, key, roots: np.ndarray, rk: tuple) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
        """:meth:`_walk_apart`'s remembered part, computed: the OR of the entries' walks below
        ``roots`` and the entries that reach a lexeme boundary there."""
        tmp = np.zeros(self.words, dtype=np.uint32)
        rest = []
        for e in range(len(key)):
            k1 = key[e : e + 1]
            lx = self.lexer(k1)
            # (one entry's lexer is its terminal's own DFA: never over a limit, never None)
            assert lx is not None
            if lx.start < 0:
                continue
            j = self.job((self.walk_key(k1), rk), lx, roots)
            if len(j.idx):
                _or_sparse(tmp, j.idx, j.vals)
            if j.bnd:
                rest.append(e)
        u = (*sparsify(tmp), tuple(rest))
        self._unions[ukey] = u
        if len(self._unions) > self._cache_jobs:
            self._unions.popitem(last=False)
        return u

    def _subtree(self, out: np.ndarray, y: Node, nodes: np.ndarray, rk: tuple | None = None) -> tuple:
        """OR in what parser node ``y`` allows below trie ``nodes``; memoised by (node, nodes).

        Returns the deferred chains ``(terminal sets, trie nodes)`` relative to ``y`` (see
        :meth:`_walk`; every completion below ``y`` starts from ``y``'s own entries, so
        the terminals alone say what to complete).  Hash-consed nodes recur across masks
        (the node after ``,`` in a flat object, and with views the node after ``,`` in any
        object at any depth), so the whole recursion below a boundary is cached, not just
        each walk.  The sub-walk uses its own ``visited``: de-duplication only skips
        repeated work, never changes the OR.
        """
        skey = (y.uid, _roots_key(nodes) if rk is None else rk)
        hit = self._subs.get(skey)
        if hit is None:
            lx = self.lexer(y.key)
            j = None if lx is None else self.job((self.walk_key(y.key), skey[1]), lx, nodes)
            if j is not None and not j.bnd:  # a leaf: the walk's own result, no recursion
                hit = (j.idx, j.vals, ())
            else:
                tmp = np.zeros(self.words, dtype=np.uint32)
                d = self._walk(tmp, tuple([(t, q, y) for t, q in y.key]), y.key, nodes, {y.uid: (nodes, skey[1])}, skey[1])
                hit = (*sparsify(tmp), _chains(d))
            self._subs[skey] = hit
            if len(self._subs) > self._cache_jobs:
                self._subs.popitem(last=False)
        else:
            self._subs.move_to_end(skey)
            self.stats["sub_hits"] += 1
        if len(hit[0]):
            _or_sparse(out, hit[0], hit[1])
        return hit[2]


def _uid_pairs(done: list[tuple[Node, int]]) -> tuple[tuple[int, int], ...]:
    """``done`` as sorted ``(origin uid, terminal)`` pairs: a canonical, GC-untracked key."""
    return tuple(sorted({(o.uid, t) for o, t in done}))


def _chains(deferred: list) -> tuple:
    """A subtree's deferred items as chains relative to its node (see :meth:`CompiledGrammar._subtree`)."""
    return tuple(((tuple(sorted({t for _, t in done})),) + ch, nn) for done, ch, nn in _dedupe(deferred))


def _dedupe(deferred: list) -> tuple:
    """Deferred items without repeats (the same subtree can be reached along several paths)."""
    if len(deferred) < 2:
        return tuple(deferred)
    seen = {}
    for done, ch, nn in deferred:
        seen.setdefault((done, ch, nn.tobytes()), (done, ch, nn))
    return tuple(seen.values())


def _roots_key(roots: np.ndarray) -> tuple[bytes, int]:
    rb = roots.tobytes()
    return (rb if len(rb) <= 256 else hashlib.blake2b(rb, digest_size=16).digest(), len(rb))


class CFGMatcher(HistoryMatcher):
    """State = a persistent ``Pos`` (:mod:`constrain.cfg.earley`) plus a stack of previous
    ones (rollback = pop).

    With an ``end_check`` (an over-approximated schema) the matcher also keeps the bytes of
    each token it advanced by (``texts``, parallel to ``history``), and EOS is allowed only
    where the grammar accepts *and* ``end_check`` passes the whole text.
    """

    def __init__(self, compiled: CompiledGrammar) -> None:
        self.compiled = compiled
        self.pos: Pos = compiled.parser.start_pos()
        self.history: list[Pos] = []
        self.terminated = False
        self.texts: list[bytes] | None = [] if compiled.end_check is not None else None
        self._prefix = b""  # (advance_bytes: not undoable)

    def _eos_ok(self) -> bool:
        """EOS here: the grammar accepts and, where it over-approximates, the text validates."""
        if not self.compiled.parser.accepting(self.pos):
            return False
        check = self.compiled.end_check
        return check is None or check(self._text())

    def _text(self) -> bytes:
        """The bytes advanced so far (kept only under an end check)."""
        return self._prefix + b"".join(self.texts)  # type: ignore[arg-type]

    def _push_token(self, new_pos: Pos, data: bytes) -> None:
        self.history.append(self.pos)
        self.pos = new_pos
        if self.texts is not None:
            self.texts.append(data)

    def _terminate(self) -> None:
        super()._terminate()
        if self.texts is not None:
            self.texts.append(b"")

    def rollback(self, n: int = 1) -> None:
        super().rollback(n)
        if self.texts is not None and n:
            del self.texts[-n:]

    def copy(self) -> CFGMatcher:
        m = super().copy()
        m.texts = None if self.texts is None else list(self.texts)
        m._prefix = self._prefix
        return m  # type: ignore[return-value]

    def fill_mask(self, bitmask: np.ndarray) -> None:
        if self.terminated:
            bitmask.view(np.uint32)[:] = 0
            return
        words = self.compiled.text_mask_words(self.pos)
        if _copy_words is None:
            np.copyto(bitmask.view(np.uint32), words)
        else:
            try:
                _copy_words(bitmask, words)
            except (TypeError, ValueError, BufferError):  # (not plain words: numpy's path, and its errors)
                np.copyto(bitmask.view(np.uint32), words)
        if self._eos_ok():
            out = bitmask.view(np.uint32)
            out |= self.vocab.eos_mask_words

    def check(self, token_id: int) -> bool:
        self._check_range(token_id)
        if self.terminated:
            return False
        if token_id in self.compiled._eos:
            return self._eos_ok()
        data = self.vocab.token_bytes(token_id)
        return bool(data) and self.compiled.parser.run(self.pos, data) is not None

    def advance(self, token_id: int) -> None:
        self._check_range(token_id)
        if self.terminated:
            self._raise_invalid(token_id)
        if token_id in self.compiled._eos:
            if not self._eos_ok():
                self._raise_invalid(token_id)
            self._terminate()
            return
        data = self.vocab.token_bytes(token_id)
        nxt = self.compiled.parser.run(self.pos, data) if data else None
        if nxt is None:
            self._raise_invalid(token_id)
        self._push_token(nxt, data)

    # ---- peeking: a token's next state without moving (the samplers' checks) ----------------
    def peek(self, token_id: int) -> Pos | bool | None:
        """The state ``advance(token_id)`` would move to, without moving: a ``Pos``, True
        for an allowed EOS, None where advance would raise (an out-of-range id included).

        A sampler checks a drawn token and, if it keeps it, advances by it: peeking then
        :meth:`advance_to` runs the parser over the token's bytes once, and a second draw can
        be checked while the first's result is kept."""
        c = self.compiled
        vocab = c.vocab
        if self.terminated or not 0 <= token_id < vocab.size:
            return None
        if token_id in c._eos:
            return True if self._eos_ok() else None
        data = vocab._tokens[token_id]  # (token_bytes without its call: a special token is None)
        return c.parser.run(self.pos, data) if data else None

    def advance_to(self, token_id: int, peeked: Pos | bool) -> None:
        """``advance(token_id)``, whose :meth:`peek` from this state gave ``peeked`` (not None)."""
        if peeked is True:
            self._terminate()
        else:
            self._push_token(peeked, self.vocab.token_bytes(token_id))  # type: ignore[arg-type]

    def completion_of(self, peeked: Pos | bool) -> int:
        """``shortest_completion_bytes`` after advancing to ``peeked`` (0 after EOS)."""
        return 0 if peeked is True else self.compiled.parser.shortest_completion(peeked)

    def is_accepting(self) -> bool:
        return not self.terminated and self._eos_ok()

    def accepts_prefix_bytes(self, data: bytes) -> bool:
        if self.terminated:
            return not data
        return self.compiled.parser.run(self.pos, data) is not None

    def shortest_completion_bytes(self) -> int:
        if self.terminated:
            return 0
        return self.compiled.parser.shortest_completion(self.pos)

    def advance_bytes(self, data: bytes) -> None:
        """Consume raw bytes without a token (tests, forced prefixes); not undoable by rollback."""
        nxt = self.compiled.parser.run(self.pos, data)
        if nxt is None:
            raise ValueError(f"bytes {data!r} are not a viable continuation")
        self.pos = nxt
        if self.texts is not None:  # (the text goes on where it is: with the last token's)
            if self.texts:
                self.texts[-1] += data
            else:
                self._prefix += data

    def _accepts_complete_bytes(self, data: bytes) -> bool:
        if self.terminated:
            return False
        p = self.compiled.parser.run(self.pos, data)
        if p is None or not self.compiled.parser.accepting(p):
            return False
        check = self.compiled.end_check
        return check is None or check(self._text() + data)

    def __repr__(self) -> str:
        return f"CFGMatcher(tokens={len(self.history)}, entries={len(self.pos[0])}, terminated={self.terminated})"


if _cfg_walk is not None:  # (the helpers the C walk calls for what it does not do itself)
    _native.cfg_walk_setup(HorizonReached, _roots_key, _chains, sparsify)
