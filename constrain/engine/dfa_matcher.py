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
        self.stats = {"mask_walks": 0, "nodes_visited": 0}
        if precompute is True or (precompute == "auto" and dfa.n_states <= self.AUTO_PRECOMPUTE_STATES):
            self.precompute()

    def matcher(self) -> DFAMatcher:
        return DFAMatcher(self)

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
            self._writer.clear()  # LRU order matters from now on: fill_mask takes this path
        elif state not in self._writer:
            words = m.view(np.int32)  # same memory, the dtype callers' bitmasks use
            nz = np.flatnonzero(m)
            self._writer[state] = (nz, words[nz]) if len(nz) <= self._sparse_max else (None, words)
        return m

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

    @property
    def state(self) -> int:
        """The current DFA state."""
        return self.pos

    # ---- contract ---------------------------------------------------------------------------
    def fill_mask(self, bitmask: np.ndarray) -> None:
        if self.terminated:
            bitmask[:] = 0
            return
        c = self.compiled
        w = c._writer.get(self.pos)
        if w is None:  # a miss, or a full LRU cache: state_mask keeps its order
            c.state_mask(self.pos)
            w = c._writer.get(self.pos) or (None, c._cache[self.pos].view(np.int32))
        if w[0] is None:
            np.copyto(bitmask, w[1], casting="unsafe")
        else:
            bitmask.fill(0)
            bitmask[w[0]] = w[1]

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

    def advance(self, token_id: int) -> None:
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
