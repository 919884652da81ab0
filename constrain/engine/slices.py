"""Token slices: skip most of the vocabulary when walking from inside a string.

A walk of the whole vocabulary trie from a lexer state costs ~1 ms on Llama 3 (274k nodes).
Most such walks in JSON Schema grammars start *inside a string* -- a property value with
``maxLength``, a key that is not one of the listed properties -- where almost every token
is allowed and nothing can end.  The idea (llguidance calls the token sets "slices") is to
settle those tokens without visiting them:

- ``STRING_BODY`` is a small byte DFA for text that any JSON string body admits: printable
  ASCII except ``"`` and ``\\`` (and DEL), and well-formed UTF-8, where a token may stop
  inside a character.  ``S`` is the set of tokens whose bytes it reads without dying: 96%
  of Llama 3's vocabulary.
- :func:`safe_depth` of a lexer state ``q`` is the largest ``k`` (up to a cap) such that
  every byte string of at most ``k`` bytes that ``STRING_BODY`` reads leads ``q`` to states
  that are live and not accepting.  Then every token of ``S`` with at most ``k`` bytes is
  allowed from ``q`` and no lexeme ends inside it: its bit is known and the walk would
  record no boundary in it.
- So a walk from ``q`` equals that precomputed token set ORed with a walk of the *rest
  trie*: the trie of the tokens not in the set (10x to 25x fewer nodes).  Every boundary the
  full walk finds lies on a path to a token of the rest (a boundary inside an ``S`` token
  of at most ``k`` bytes would contradict ``safe_depth``), and the rest trie's nodes map
  back to the full trie's, so the result -- token bits and boundary nodes with their
  states -- is identical, and so is its cache key.

Tiers trade the rest trie's size for how much of ``S`` a state must admit: a string with
10 characters left admits the tokens of ``S`` up to 10 bytes, not the long ones.
"""

from __future__ import annotations

import weakref

import numpy as np
from numba import njit

from constrain.engine.matcher import bool_to_bitmask
from constrain.vocab import Vocabulary
from constrain.vocab.trie import TokenTrie


def _string_body_dfa() -> np.ndarray:
    """States: 0 at a character boundary; 1-7 inside a UTF-8 sequence (which bytes may follow
    differ: E0 and ED, F0 and F4 restrict their second byte, as the standard does)."""
    r = np.full((8, 256), -1, dtype=np.int32)
    for b in range(0x20, 0x7F):
        if b not in (0x22, 0x5C):
            r[0, b] = 0
    r[0, 0xC2:0xE0] = 1
    r[0, 0xE1:0xED] = 2
    r[0, 0xEE:0xF0] = 2
    r[0, 0xE0] = 3
    r[0, 0xED] = 4
    r[0, 0xF1:0xF4] = 5
    r[0, 0xF0] = 6
    r[0, 0xF4] = 7
    r[1, 0x80:0xC0] = 0
    r[2, 0x80:0xC0] = 1
    r[3, 0xA0:0xC0] = 1
    r[4, 0x80:0xA0] = 1
    r[5, 0x80:0xC0] = 2
    r[6, 0x90:0xC0] = 2
    r[7, 0x80:0x90] = 2
    return r


STRING_BODY = _string_body_dfa()
# byte -> number of its column of STRING_BODY among the distinct columns (safe_depth visits
# one byte per class)
BODY_CLASSES = np.unique(STRING_BODY, axis=1, return_inverse=True)[1].reshape(-1).astype(np.int64)

# rest-trie tiers: (most bytes of an S token settled without walking; None: all of S)
TIERS: tuple[int | None, ...] = (16, 32, None)


@njit(cache=True, nogil=True)
def safe_depth(
    table: np.ndarray,  # int32 (n_states, n_columns)
    cls: np.ndarray,  # byte -> column of table
    accept: np.ndarray,  # bool (n_states,)
    start: int,
    body: np.ndarray,  # int32 (n_body_states, 256): STRING_BODY
    body_cls: np.ndarray,  # byte -> class of equal columns of body (BODY_CLASSES)
    cap: int,
) -> int:
    """Breadth-first over (lexer state, body state) pairs from ``(start, 0)``; the first level
    where a byte the body reads takes the lexer to a dead or accepting state gives the answer.

    Bytes are visited one per (lexer column, body column) class, so a level costs the pairs
    times a few dozen columns, not 256.
    """
    nt = table.shape[0]
    nr = body.shape[0]
    # representative bytes of the joint classes: one per (lexer column, body class) met
    ncol = table.shape[1]
    nbc = 0
    for b in range(256):
        nbc = max(nbc, body_cls[b] + 1)
    taken = np.zeros(ncol * nbc, dtype=np.bool_)
    reps = np.empty(256, dtype=np.int64)
    nrep = 0
    for b in range(256):
        j = cls[b] * nbc + body_cls[b]
        if not taken[j]:
            taken[j] = True
            reps[nrep] = b
            nrep += 1
    seen = np.zeros(nt * nr, dtype=np.bool_)
    cur = np.empty(nt * nr, dtype=np.int64)
    nxt = np.empty(nt * nr, dtype=np.int64)
    cur[0] = np.int64(start) * nr
    seen[cur[0]] = True
    ncur = 1
    for k in range(1, cap + 1):
        nn = 0
        for p in range(ncur):
            t = cur[p] // nr
            r = cur[p] % nr
            for a in range(nrep):
                b = reps[a]
                r2 = body[r, b]
                if r2 < 0:
                    continue
                t2 = table[t, cls[b]]
                if t2 < 0 or accept[t2]:
                    return k - 1
                key = np.int64(t2) * nr + r2
                if not seen[key]:
                    seen[key] = True
                    nxt[nn] = key
                    nn += 1
        if nn == 0:
            return cap
        cur, nxt = nxt, cur
        ncur = nn
    return cap


def reference_safe_depth(table, cls, accept, start: int, body, cap: int) -> int:
    """The definition, level by level over every byte: the set of (lexer, body) states after
    ``k`` bytes, for ``k = 1, 2, ...``; no visited-set pruning."""
    level = {(int(start), 0)}
    for k in range(1, cap + 1):
        nxt = set()
        for t, r in level:
            for b in range(256):
                r2 = int(body[r, b])
                if r2 < 0:
                    continue
                t2 = int(table[t, int(cls[b])])
                if t2 < 0 or bool(accept[t2]):
                    return k - 1
                nxt.add((t2, r2))
        if not nxt:
            return cap
        level = nxt
    return cap


@njit(cache=True, nogil=True)
def _map_nodes(
    f_byte: np.ndarray, f_depth: np.ndarray, f_next: np.ndarray, s_byte: np.ndarray, s_depth: np.ndarray
) -> np.ndarray:
    """Full-trie node of every node of a sub-trie (the trie of a subset of the tokens): the
    child of its parent's image with its byte, found along the sibling chain."""
    n = s_byte.shape[0]
    out = np.zeros(n, dtype=np.int32)
    path = np.zeros(int(s_depth.max()) + 2 if n else 1, dtype=np.int32)  # path[d]: image at depth d
    for j in range(1, n):
        d = s_depth[j]
        c = path[d - 1] + 1
        while f_byte[c] != s_byte[j] or f_depth[c] != d:
            c = f_next[c]
        out[j] = c
        path[d] = c
    return out


@njit(cache=True, nogil=True)
def _body_lengths(offsets: np.ndarray, blob: np.ndarray, body: np.ndarray) -> np.ndarray:
    """Each token's length if ``body`` reads it without dying, else 0 (specials are empty)."""
    n = offsets.shape[0] - 1
    out = np.zeros(n, dtype=np.int64)
    for i in range(n):
        r = 0
        for p in range(offsets[i], offsets[i + 1]):
            r = body[r, blob[p]]
            if r < 0:
                break
        if r >= 0:
            out[i] = offsets[i + 1] - offsets[i]
    return out


class Tier:
    """One rest trie: the tokens not settled when a state admits ``limit`` bytes of ``S``."""

    __slots__ = ("limit", "trie", "node_map", "words")

    def __init__(self, limit: int, trie: TokenTrie, node_map: np.ndarray, words: np.ndarray) -> None:
        self.limit = limit
        self.trie = trie
        self.node_map = node_map  # rest-trie node -> full-trie node
        self.words = words  # uint32 mask words of the settled tokens


class TokenSlices:
    """The tiers of one vocabulary (built once per process, see :func:`slices_for`)."""

    def __init__(self, vocab: Vocabulary, tiers: tuple[int | None, ...] = TIERS) -> None:
        tb = vocab.all_token_bytes
        offsets, blob = vocab.token_blob
        lens = _body_lengths(offsets, blob, STRING_BODY)  # byte length of each token in S, else 0
        self.max_len = int(lens.max()) if len(lens) else 0
        full = vocab.trie
        self.tiers: list[Tier] = []
        for lim in tiers:
            k = self.max_len if lim is None else min(lim, self.max_len)
            if k <= 0 or any(t.limit == k for t in self.tiers):
                continue
            settled = (lens > 0) & (lens <= k)
            rest = TokenTrie.build([None if settled[i] else b for i, b in enumerate(tb)])
            node_map = _map_nodes(full.byte, full.depth, full.next, rest.byte, rest.depth)
            self.tiers.append(Tier(k, rest, node_map, bool_to_bitmask(settled).view(np.uint32)))
        self.tiers.sort(key=lambda t: t.limit)

    def pick(self, table: np.ndarray, cls: np.ndarray, accept: np.ndarray, start: int) -> Tier | None:
        """The tier with the most settled tokens that state ``start`` admits, or None."""
        if not self.tiers or start < 0:
            return None
        d = safe_depth(table, cls, accept, start, STRING_BODY, BODY_CLASSES, self.tiers[-1].limit)
        best = None
        for t in self.tiers:
            if t.limit <= d:
                best = t
        return best


_SLICES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def slices_for(vocab: Vocabulary) -> TokenSlices:
    s = _SLICES.get(vocab)
    if s is None:
        s = _SLICES[vocab] = TokenSlices(vocab)
    return s
