"""Numba kernels for DFA token masks (``cache=True``; see :mod:`constrain.engine.reference`).

The mask of a DFA state is a walk of the vocabulary trie in preorder, carrying one DFA
state per depth: a dead transition skips the node's whole subtree, so cost is proportional
to the number of *viable* token prefixes, not to the vocabulary size.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def dfa_fill_mask(
    table: np.ndarray,  # int32 (n_states, 256), C-contiguous
    state: int,
    trie_byte: np.ndarray,
    trie_depth: np.ndarray,
    trie_next: np.ndarray,
    tok_start: np.ndarray,
    tok_end: np.ndarray,
    tokens: np.ndarray,
    tok1: np.ndarray,  # TokenTrie.tok1: first token per node, -1 for none
    max_depth: int,
    out: np.ndarray,  # uint32 words, OR-ed into (caller zeroes it)
) -> int:
    """Set the bit of every token whose bytes keep the DFA alive from ``state``.

    Returns the number of trie nodes visited (a cost counter for benchmarks).  Same loop as
    ``cfg_kernels.lexer_walk`` (row offsets on the stack, branch-free token bits).
    """
    stack = np.empty(max_depth + 1, dtype=np.int64)
    ncol = table.shape[1]
    flat = table.ravel()
    stack[0] = np.int64(state) * ncol
    n = trie_byte.shape[0]
    i = 1
    visited = 0
    while i < n:
        visited += 1
        d = trie_depth[i]
        s = flat[stack[d - 1] + trie_byte[i]]
        if s < 0:
            i = trie_next[i]
            continue
        stack[d] = np.int64(s) * ncol
        t = tok1[i]
        out[max(t, 0) >> 5] |= np.uint32(t >= 0) << np.uint32(t & 31)
        if tok_end[i] - tok_start[i] > 1:  # (equal byte strings: rare)
            for k in range(tok_start[i] + 1, tok_end[i]):
                t = tokens[k]
                out[t >> 5] |= np.uint32(1) << np.uint32(t & 31)
        i += 1
    return visited


@njit(cache=True, nogil=True)
def dfa_run(table: np.ndarray, state: int, data: np.ndarray) -> int:
    """DFA state after ``data`` (uint8 array) from ``state``; -1 once dead."""
    for j in range(data.shape[0]):
        if state < 0:
            return -1
        state = table[state, data[j]]
    return state


@njit(cache=True, nogil=True)
def dfa_token_targets(
    table: np.ndarray,
    state: int,
    offsets: np.ndarray,  # int64 (V + 1) into data
    data: np.ndarray,  # uint8 concatenated token bytes
    out: np.ndarray,  # int32 (V,), target state per token or -1
) -> None:
    """Target state of every token from ``state`` (the outlines-style full index row)."""
    for t in range(offsets.shape[0] - 1):
        a = offsets[t]
        b = offsets[t + 1]
        if a == b:
            out[t] = -1
            continue
        s = state
        for j in range(a, b):
            s = table[s, data[j]]
            if s < 0:
                break
        out[t] = s
