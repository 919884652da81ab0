"""Numba kernel of the CFG mask: walk vocabulary subtrees with a lexer product DFA.

One call walks the subtrees below a list of trie nodes (the root for the first walk, the
lexeme-boundary nodes of a previous walk afterwards), all starting in the same lexer state.
It sets the bit of every token whose bytes keep some lexeme alive (no parser needed: the
lexer DFAs are trimmed and every entry was predicted by the parser) and records the
*boundary* nodes: inner nodes where some lexeme can end, below which the walk must continue
with the lexemes the parser allows after that boundary.  Dead transitions skip the whole
subtree.  :func:`reference_walk` is the slow, obviously correct version.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def lexer_walk(
    table: np.ndarray,  # int32 (n_states, 256)
    accept: np.ndarray,  # bool (n_states,)
    start: int,
    roots: np.ndarray,  # int32 trie nodes whose subtrees are walked (node itself excluded)
    trie_byte: np.ndarray,
    trie_depth: np.ndarray,
    trie_next: np.ndarray,
    tok_start: np.ndarray,
    tok_end: np.ndarray,
    tokens: np.ndarray,
    max_depth: int,
    out: np.ndarray,  # uint32 words, OR-ed into
    bnd_node: np.ndarray,  # int32 buffer
    bnd_state: np.ndarray,  # int32 buffer
) -> int:
    """Returns the number of boundary nodes found.

    Only the first ``len(bnd_node)`` are written: roots may be nested (a lexeme that can end
    at several depths, like a run of spaces), so the count can exceed the number of trie
    nodes; the caller grows the buffers and walks again when the result does not fit.
    """
    stack = np.empty(max_depth + 2, dtype=np.int32)
    cap = min(bnd_node.shape[0], bnd_state.shape[0])
    nb = 0
    for j in range(roots.shape[0]):
        root = roots[j]
        base = trie_depth[root]
        stack[0] = start
        end = trie_next[root]
        i = root + 1
        while i < end:
            d = trie_depth[i] - base
            s = table[stack[d - 1], trie_byte[i]]
            if s < 0:
                i = trie_next[i]
                continue
            stack[d] = s
            for k in range(tok_start[i], tok_end[i]):
                t = tokens[k]
                out[t >> 5] |= np.uint32(1) << np.uint32(t & 31)
            if accept[s] and trie_next[i] > i + 1:
                if nb < cap:
                    bnd_node[nb] = i
                    bnd_state[nb] = s
                nb += 1
            i += 1
    return nb


def reference_walk(table, accept, start, roots, trie, n_tokens: int):
    """Pure-Python :func:`lexer_walk`: from each node's full byte string, no subtree skipping.

    Returns ``(allowed bool array, list of (boundary node, state))``; the list has one entry
    per root that reaches the node (nested roots walk shared nodes once each).
    """
    n = len(trie.byte)
    prefix: list[bytes] = [b""] * n
    parent_stack: list[int] = [0]
    for i in range(1, n):
        d = int(trie.depth[i])
        del parent_stack[d:]
        prefix[i] = prefix[parent_stack[-1]] + bytes([int(trie.byte[i])])
        parent_stack.append(i)
    allowed = np.zeros(n_tokens, dtype=bool)
    bnd: list[tuple[int, int]] = []
    for r in roots:
        r = int(r)
        base = prefix[r]
        for i in range(r + 1, int(trie.next[r])):
            s = start
            for b in prefix[i][len(base) :]:
                s = int(table[s, b])
                if s < 0:
                    break
            if s < 0:
                continue
            for k in range(int(trie.tok_start[i]), int(trie.tok_end[i])):
                allowed[int(trie.tokens[k])] = True
            if accept[s] and int(trie.next[i]) > i + 1:
                bnd.append((i, s))
    return allowed, bnd
