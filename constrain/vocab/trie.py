"""The vocabulary as a byte trie in flat arrays, laid out for Numba kernels.

Nodes are stored in DFS preorder, so a node's subtree is the contiguous index range
``[i + 1, next[i])``.  A kernel walking the trie with an automaton can therefore skip a
whole subtree with one assignment (``i = next[i]``) the moment a byte is rejected: that
pruning is where the speed of a full-vocabulary mask comes from.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class TokenTrie:
    byte: np.ndarray  # uint8, byte on the edge into the node (root: 0)
    depth: np.ndarray  # int32, root = 0
    next: np.ndarray  # int32, index just past the node's subtree
    tok_start: np.ndarray  # int32, slice of `tokens` ending at this node
    tok_end: np.ndarray  # int32
    tokens: np.ndarray  # int32 token ids, grouped by node in node order
    max_depth: int

    @property
    def n_nodes(self) -> int:
        return len(self.byte)

    @cached_property
    def tok1(self) -> np.ndarray:
        """int32 per node: the first token ending there, -1 for none.

        The walk kernels set that token's bit without a branch (``-1`` sets no bit); about half
        the nodes of a real vocabulary end a token, so a per-node branch there is a coin flip
        the CPU mispredicts.  Nodes ending several tokens (equal byte strings) loop over the
        rest of their ``tokens`` slice.
        """
        out = np.full(self.n_nodes, -1, dtype=np.int32)
        has = self.tok_end > self.tok_start
        out[has] = self.tokens[self.tok_start[has]]
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "trie_byte": self.byte,
            "trie_depth": self.depth,
            "trie_next": self.next,
            "trie_tok_start": self.tok_start,
            "trie_tok_end": self.tok_end,
            "trie_tokens": self.tokens,
        }

    @classmethod
    def from_arrays(cls, arrs: dict[str, np.ndarray]) -> TokenTrie:
        depth = arrs["trie_depth"]
        return cls(
            arrs["trie_byte"],
            depth,
            arrs["trie_next"],
            arrs["trie_tok_start"],
            arrs["trie_tok_end"],
            arrs["trie_tokens"],
            int(depth.max()) if len(depth) else 0,
        )

    @classmethod
    def build(cls, token_bytes: list[bytes | None]) -> TokenTrie:
        """Trie of every non-empty token; tokens with equal bytes share a node."""
        items = sorted((b, i) for i, b in enumerate(token_bytes) if b)
        byte = [0]
        depth = [0]
        nxt = [0]
        node_tokens: list[list[int]] = [[]]
        path = [0]  # path[d] = node index at depth d
        prev = b""
        for b, tid in items:
            if b == prev:
                node_tokens[path[-1]].append(tid)
                continue
            lcp = 0
            m = min(len(b), len(prev))
            while lcp < m and b[lcp] == prev[lcp]:
                lcp += 1
            while len(path) > lcp + 1:
                nxt[path.pop()] = len(byte)
            for d in range(lcp, len(b)):
                byte.append(b[d])
                depth.append(d + 1)
                nxt.append(0)
                node_tokens.append([])
                path.append(len(byte) - 1)
            node_tokens[path[-1]].append(tid)
            prev = b
        while path:
            nxt[path.pop()] = len(byte)
        counts = np.array([len(t) for t in node_tokens], dtype=np.int32)
        tok_end = np.cumsum(counts, dtype=np.int64).astype(np.int32)
        tok_start = (tok_end - counts).astype(np.int32)
        tokens = np.array([t for ts in node_tokens for t in ts], dtype=np.int32)
        depth_arr = np.array(depth, dtype=np.int32)
        return cls(
            np.array(byte, dtype=np.uint8),
            depth_arr,
            np.array(nxt, dtype=np.int32),
            tok_start,
            tok_end,
            tokens,
            int(depth_arr.max()) if len(depth_arr) else 0,
        )
