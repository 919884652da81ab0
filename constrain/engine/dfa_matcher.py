"""Matchers for regular constraints (regexes, or any :class:`ByteDFA`).

Masks are computed per DFA state with the trie-walk kernel and cached.  Small DFAs
(``precompute="auto"``: up to 512 states) get every state's mask at compile time — a walk
costs well under a millisecond, so that is still far cheaper than an outlines-style index and
makes every later mask a copy; larger ones are filled lazily on first visit, so compile cost
stays the regex-to-DFA construction.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

# the C fill_mask (native/maskwriter.c); optional, so a compiler-less install still works
from constrain._compiled import native as _native
from constrain.automata.bytedfa import ByteDFA
from constrain.engine import kernels
from constrain.engine.matcher import CompiledConstraint, HistoryMatcher, bitmask_words
from constrain.errors import EmptyLanguageError
from constrain.vocab import Vocabulary


class CompiledDFA(CompiledConstraint):
    """A byte DFA bound to a vocabulary, with a bounded per-state mask cache."""

    AUTO_PRECOMPUTE_STATES = 512

    def __init__(
        self, dfa: ByteDFA, vocab: Vocabulary, *, cache_states: int = 4096, precompute: bool | str = "auto"
    ) -> None:
        if dfa.is_empty():
            raise EmptyLanguageError("the constraint's language is empty: no output can satisfy it")
        self.dfa = dfa
        self.vocab = vocab
        self.table = np.ascontiguousarray(dfa.table)
        self.accepting = dfa.accepting
        self.words = bitmask_words(len(vocab))
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        # state -> (word indices or None, int32 words): what fill_mask writes, one lookup, while
        # no mask can be evicted (every precomputed DFA).  Masks with few non-zero words (a
        # date's "-" state has one) are written as zero-fill + scatter: that touches only the
        # caller's buffer, not 16 KB of cold cached mask
        self._writer: dict[int, tuple[np.ndarray | None, np.ndarray]] = {}
        self._sparse_max = max(1, self.words // 16)
        self._cache_states = cache_states
        self._eos = set(vocab.eos_token_ids)
        # the same entries, held by the C extension for matchers' C fill_mask and token steps
        # (None: not built)
        self._native = self._new_native_table()
        self.stats = {"mask_walks": 0, "nodes_visited": 0}
        if precompute is True or (precompute == "auto" and dfa.n_states <= self.AUTO_PRECOMPUTE_STATES):
            self.precompute()

    def matcher(self) -> DFAMatcher:
        return DFAMatcher(self)

    def __getstate__(self) -> dict:
        # the C table holds buffers, not picklable: it is rebuilt from ``_writer`` on load
        state = self.__dict__.copy()
        state["_native"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if _native is not None:
            self._native = self._new_native_table()
            for s in self._writer:
                self._to_native(s)

    def _new_native_table(self):
        """The C table of held masks, with the DFA bound for the cursors' token steps (None
        without the extension)."""
        if _native is None:
            return None
        table = _native.MaskTable(self.dfa.n_states, self.words)
        offsets, blob = self.vocab.token_blob
        eos = np.array(sorted(self._eos), dtype=np.int64)
        table.bind_dfa(
            np.ascontiguousarray(self.table, dtype=np.int32).reshape(-1),
            offsets,
            blob,
            np.ascontiguousarray(self.dfa.distances, dtype=np.int32),
            eos,
            np.ascontiguousarray(self.accepting, dtype=np.uint8),
        )
        return table

    def state_mask(self, state: int) -> np.ndarray:
        """uint32 words of the tokens allowed from ``state`` (EOS included when accepting); cached."""
        m = self._cache.get(state)
        if m is None:
            m = self._walk(state)
            self._cache[state] = m
            if len(self._cache) > self._cache_states:
                self._cache.popitem(last=False)
        elif len(self._cache) >= self._cache_states:
            self._cache.move_to_end(state)  # LRU order only matters once eviction can happen
        if len(self._cache) >= self._cache_states:
            # LRU order matters from now on: fill_mask takes this path
            self._writer.clear()
            if self._native is not None:
                self._native.clear()
        elif state not in self._writer:
            words = m.view(np.int32)  # same memory, the dtype callers' bitmasks use
            nz = np.flatnonzero(m).astype(np.int64)
            self._writer[state] = (nz, words[nz]) if len(nz) <= self._sparse_max else (None, words)
            self._to_native(state)
        return m

    def _to_native(self, state: int) -> None:
        """Hand ``state``'s writer entry to the C table (when built): the one place that does."""
        if self._native is None:
            return
        idx, words = self._writer[state]
        if idx is None:
            self._native.set_dense(state, words)
        else:
            self._native.set_sparse(state, idx, words)

    def _fill_state(self, state: int, bitmask: np.ndarray) -> None:
        """Write ``state``'s mask (``-1``: nothing allowed) into ``bitmask``: the pure-Python path.

        It is the reference for the C ``Cursor.fill_mask`` and what that calls for states the
        C table lacks (first visits; every visit once the LRU cache is full) and for bitmasks
        that are not writable contiguous int32 buffers.  A CPU torch tensor (xgrammar's bitmask
        type) is written through its numpy view.
        """
        if not isinstance(bitmask, np.ndarray) and hasattr(bitmask, "numpy"):
            bitmask = bitmask.numpy()
        if bitmask.size != self.words:  # a short one would be half-written without a word
            raise ValueError(
                f"bitmask has {bitmask.size} words; this vocabulary of {len(self.vocab)} tokens needs "
                f"{self.words} (ceil(V/32))"
            )
        if state < 0:
            bitmask[:] = 0
            return
        w = self._writer.get(state)
        if w is None:  # a miss, or a full LRU cache: state_mask keeps its order
            self.state_mask(state)
            w = self._writer.get(state) or (None, self._cache[state].view(np.int32))
        if w[0] is None:
            np.copyto(bitmask, w[1], casting="unsafe")
        else:
            bitmask[:] = 0
            bitmask[w[0]] = w[1]

    def _walk(self, state: int) -> np.ndarray:
        m = np.zeros(self.words, dtype=np.uint32)
        trie = self.vocab.trie
        self.stats["nodes_visited"] += kernels.dfa_fill_mask(
            self.table,
            state,
            trie.byte,
            trie.depth,
            trie.next,
            trie.tok_start,
            trie.tok_end,
            trie.tokens,
            trie.tok1,
            trie.max_depth,
            m,
        )
        self.stats["mask_walks"] += 1
        if self.accepting[state]:  # cache the full mask, EOS included, so fill_mask is one copy
            m |= self.vocab.eos_mask_words
        return m

    def clear_cache(self) -> None:
        """Forget every state's mask (benchmarks of cold masking; memory)."""
        self._cache.clear()
        self._writer.clear()
        if self._native is not None:
            self._native.clear()

    def precompute(self) -> None:
        """Compute and cache the mask of every DFA state now."""
        self._cache_states = max(self._cache_states, self.dfa.n_states)
        for s in range(self.dfa.n_states):
            self.state_mask(s)


class DFAMatcher(HistoryMatcher):
    """State (``pos``) = one DFA state; the history stack gives rollback."""

    def __init__(self, compiled: CompiledDFA) -> None:
        self.compiled = compiled
        self.pos: int = compiled.dfa.start
        self.history: list[int] = []
        self.terminated = False
        self._bind_native()

    def _bind_native(self) -> None:
        """Give this matcher the C ``fill_mask`` when the extension is built.

        The C cursor mirrors ``pos`` (``-1`` once terminated); every method that moves the
        state keeps it in step.  ``fill_mask`` becomes the cursor's bound method, an instance
        attribute that shadows the class's Python one: a call is then one C call, no frame.
        """
        table = self.compiled._native
        if table is None:
            self._cursor = None
            return
        self._cursor = _native.Cursor(table, self.compiled._fill_state, -1 if self.terminated else self.pos)
        self.fill_mask = self._cursor.fill_mask

    def _push(self, new_pos: int) -> None:
        super()._push(new_pos)
        if self._cursor is not None:
            self._cursor.state = new_pos

    def _terminate(self) -> None:
        super()._terminate()
        if self._cursor is not None:
            self._cursor.state = -1

    def rollback(self, n: int = 1) -> None:
        super().rollback(n)
        if self._cursor is not None and n:
            self._cursor.state = self.pos

    def copy(self) -> DFAMatcher:
        m = super().copy()
        m._bind_native()
        return m

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("fill_mask", None)
        state["_cursor"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._bind_native()

    @property
    def state(self) -> int:
        """The current DFA state."""
        return self.pos

    # ---- contract ---------------------------------------------------------------------------
    def fill_mask(self, bitmask: np.ndarray) -> None:
        # the pure-Python path; with the C extension built, the instance's C ``fill_mask``
        # (see _bind_native) shadows this method
        self.compiled._fill_state(-1 if self.terminated else self.pos, bitmask)

    def check(self, token_id: int) -> bool:
        self._check_range(token_id)
        if self.terminated:
            return False
        c = self.compiled
        if token_id in c._eos:
            return bool(c.accepting[self.pos])
        cached = c._cache.get(self.pos)
        if cached is not None:
            return bool((int(cached[token_id >> 5]) >> (token_id & 31)) & 1)
        data = self.vocab.token_bytes(token_id)
        return bool(data) and c.dfa.run(self.pos, data) >= 0

    def cached_allowed_words(self) -> np.ndarray | None:
        """The current state's mask as uint32 words (EOS included when accepting) if it is
        already cached, else None -- never computes one.  Lets a sampler test a drawn token
        with one bit test, without paying a first-visit mask walk it is trying to avoid."""
        if self.terminated:
            return None
        return self.compiled._cache.get(self.pos)

    def advance(self, token_id: int) -> None:
        cur = self._cursor
        if cur is not None and not self.terminated:
            # the C step over the token's bytes (the samplers advance by every token they
            # keep); EOS, an out-of-range id and a refused token take the Python path below
            try:
                nxt = cur.next_state(token_id)
            except IndexError:
                nxt = -2
            if nxt >= 0:
                self.history.append(self.pos)
                self.pos = nxt
                cur.state = nxt
                return
        self._check_range(token_id)
        if self.terminated:
            self._raise_invalid(token_id)
        c = self.compiled
        if token_id in c._eos:
            if not c.accepting[self.pos]:
                self._raise_invalid(token_id)
            self._terminate()
            return
        data = self.vocab.token_bytes(token_id)
        nxt = c.dfa.run(self.pos, data) if data else -1
        if nxt < 0:
            self._raise_invalid(token_id)
        self._push(nxt)

    def is_accepting(self) -> bool:
        return not self.terminated and bool(self.compiled.accepting[self.pos])

    def accepts_prefix_bytes(self, data: bytes) -> bool:
        if self.terminated:
            return not data
        return self.compiled.dfa.run(self.pos, data) >= 0

    def shortest_completion_bytes(self) -> int:
        return 0 if self.terminated else int(self.compiled.dfa.distances[self.pos])

    def _accepts_complete_bytes(self, data: bytes) -> bool:
        if self.terminated:
            return False
        s = self.compiled.dfa.run(self.pos, data)
        return s >= 0 and bool(self.compiled.accepting[s])

    def __repr__(self) -> str:
        return f"DFAMatcher(state={self.pos}, tokens={len(self.history)}, terminated={self.terminated})"
