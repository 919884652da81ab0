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
    table: np.ndarray,  # int32 (n_states, n_classes), C-contiguous
    cls: np.ndarray,  # byte -> column of table (byte classes; identity for 256 columns)
    accept: np.ndarray,  # bool (n_states,)
    start: int,
    roots: np.ndarray,  # int32 trie nodes whose subtrees are walked (node itself excluded)
    trie_byte: np.ndarray,
    trie_depth: np.ndarray,
    trie_next: np.ndarray,
    tok_start: np.ndarray,
    tok_end: np.ndarray,
    tokens: np.ndarray,
    tok1: np.ndarray,  # TokenTrie.tok1: first token per node, -1 for none
    max_depth: int,
    out: np.ndarray,  # uint32 words, OR-ed into
    bnd_node: np.ndarray,  # int32 buffer
    bnd_state: np.ndarray,  # int32 buffer
) -> int:
    """Returns the number of boundary nodes found.

    Only the first ``len(bnd_node)`` are written: roots may be nested (a lexeme that can end
    at several depths, like a run of spaces), so the count can exceed the number of trie
    nodes; the caller grows the buffers and walks again when the result does not fit.

    The loop is bound by the latency of ``state -> table row -> next state``; the stack holds
    row offsets into the flat table (one multiply fewer on that chain), and a node's token
    bit is set without a branch (``tok1``; -1 ORs a zero into word 0): 1.8x faster than the
    textbook loop on the Llama 3 trie (2.2 -> 1.2 ms for a JSON string's full walk).
    """
    stack = np.empty(max_depth + 2, dtype=np.int64)
    cap = min(bnd_node.shape[0], bnd_state.shape[0])
    nb = 0
    ncol = table.shape[1]
    flat = table.ravel()
    for j in range(roots.shape[0]):
        root = roots[j]
        base = trie_depth[root]
        stack[0] = np.int64(start) * ncol
        end = trie_next[root]
        i = root + 1
        while i < end:
            d = trie_depth[i] - base
            s = flat[stack[d - 1] + cls[trie_byte[i]]]
            if s < 0:
                i = trie_next[i]
                continue
            stack[d] = np.int64(s) * ncol
            t = tok1[i]
            out[max(t, 0) >> 5] |= np.uint32(t >= 0) << np.uint32(t & 31)
            # (the same six lines as kernels.dfa_fill_mask: a shared numba helper, even
            # inline="always", made this loop 10x slower)
            if tok_end[i] - tok_start[i] > 1:  # (equal byte strings: rare)
                for k in range(tok_start[i] + 1, tok_end[i]):
                    t = tokens[k]
                    out[t >> 5] |= np.uint32(1) << np.uint32(t & 31)
            if accept[s] and trie_next[i] > i + 1:
                if nb < cap:
                    bnd_node[nb] = i
                    bnd_state[nb] = s
                nb += 1
            i += 1
    return nb


def reference_walk(table, accept, start, roots, trie, n_tokens: int, cls=None):
    """Pure-Python :func:`lexer_walk`: from each node's full byte string, no subtree skipping.

    Returns ``(allowed bool array, list of (boundary node, state))``; the list has one entry
    per root that reaches the node (nested roots walk shared nodes once each).  ``cls``
    maps bytes to columns of ``table`` (default: the byte itself).
    """
    if cls is None:
        cls = np.arange(256)
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
                s = int(table[s, int(cls[b])])
                if s < 0:
                    break
            if s < 0:
                continue
            for k in range(int(trie.tok_start[i]), int(trie.tok_end[i])):
                allowed[int(trie.tokens[k])] = True
            if accept[s] and int(trie.next[i]) > i + 1:
                bnd.append((i, s))
    return allowed, bnd


@njit(cache=True, nogil=True, inline="always")
def _pairs_hash(ve: np.ndarray, vq: np.ndarray, a: int, z: int) -> int:
    """FNV-style hash of the live (entry, state) pairs ``a:z`` in int64 (wrapping arithmetic)."""
    h = np.int64(1469598103934665603)
    for p in range(a, z):
        h = (h ^ np.int64(ve[p] + 1)) * np.int64(1099511628211)
        h = (h ^ np.int64(vq[p] + 1)) * np.int64(1099511628211)
    return h


@njit(cache=True, nogil=True)
def product_lexer(tab: np.ndarray, off: np.ndarray, start: np.ndarray, reps: np.ndarray, max_states: int):
    """Breadth-first product of ``k`` DFAs: ``(n_states, state vectors, transition table)``.

    ``tab`` stacks the entries' tables (int32, rows of 256), ``off[e]`` is the first row of
    entry ``e``'s table and ``start[e]`` its state.  ``reps`` holds one byte per byte class
    (bytes that every entry's table maps alike), ascending: the returned table has one
    column per class (expand with the byte -> class map).  A product state is the vector of entry
    states (-1 = dead); it is stored sparsely (its live ``(entry, state)`` pairs, CSR) and
    interned in an open-addressing hash table, so a step costs the number of *live*
    entries, not ``k`` (a schema's many property-name literals die after a byte or two).
    States are numbered in discovery order (state by state, bytes ascending), exactly like
    the plain-Python :class:`constrain.cfg.lexer.LexerDFA` construction, so the two tables
    are equal.  Returns ``n_states = -1`` (and empty arrays) past ``max_states`` states.
    """
    k = start.shape[0]
    cap = 64
    ptr = np.zeros(cap + 1, dtype=np.int64)
    se = np.empty(256 + k, dtype=np.int32)
    sq = np.empty(256 + k, dtype=np.int32)
    table = np.empty((cap, reps.shape[0]), dtype=np.int32)
    m = 0
    for e in range(k):
        if start[e] >= 0:
            se[m] = e
            sq[m] = start[e]
            m += 1
    ptr[1] = m
    hsize = 256
    htab = np.full(hsize, -1, dtype=np.int32)
    htab[_pairs_hash(se, sq, 0, m) & (hsize - 1)] = 0
    n = 1
    i = 0
    ve = np.empty(k, dtype=np.int32)
    vq = np.empty(k, dtype=np.int32)
    n_cls = reps.shape[0]
    while i < n:
        a = ptr[i]
        z = ptr[i + 1]
        for ci in range(n_cls):
            b = reps[ci]
            c = 0
            for p in range(a, z):
                e = se[p]
                q2 = tab[off[e] + sq[p], b]
                if q2 >= 0:
                    ve[c] = e
                    vq[c] = q2
                    c += 1
            if c == 0:
                table[i, ci] = -1
                continue
            slot = _pairs_hash(ve, vq, 0, c) & (hsize - 1)
            j = -1
            while True:
                r = htab[slot]
                if r < 0:
                    break
                ra = ptr[r]
                if ptr[r + 1] - ra == c:
                    same = True
                    for x in range(c):
                        if se[ra + x] != ve[x] or sq[ra + x] != vq[x]:
                            same = False
                            break
                    if same:
                        j = r
                        break
                slot = (slot + 1) & (hsize - 1)
            if j < 0:
                if n >= max_states:
                    return -1, np.empty((0, k), dtype=np.int32), np.empty((0, n_cls), dtype=np.int32)
                if n == cap:
                    cap *= 2
                    p2 = np.zeros(cap + 1, dtype=np.int64)
                    p2[: n + 1] = ptr[: n + 1]
                    ptr = p2
                    t2 = np.empty((cap, n_cls), dtype=np.int32)
                    t2[:n] = table[:n]
                    table = t2
                top = ptr[n]
                if top + c > se.shape[0]:
                    size = 2 * (top + c)
                    e2 = np.empty(size, dtype=np.int32)
                    e2[:top] = se[:top]
                    se = e2
                    q3 = np.empty(size, dtype=np.int32)
                    q3[:top] = sq[:top]
                    sq = q3
                for x in range(c):
                    se[top + x] = ve[x]
                    sq[top + x] = vq[x]
                ptr[n + 1] = top + c
                htab[slot] = n
                j = n
                n += 1
                if 2 * n > hsize:
                    hsize *= 2
                    htab = np.full(hsize, -1, dtype=np.int32)
                    for r in range(n):
                        sl = _pairs_hash(se, sq, ptr[r], ptr[r + 1]) & (hsize - 1)
                        while htab[sl] >= 0:
                            sl = (sl + 1) & (hsize - 1)
                        htab[sl] = r
            table[i, ci] = j
        i += 1
    mat = np.full((n, k), -1, dtype=np.int32)
    for r in range(n):
        for p in range(ptr[r], ptr[r + 1]):
            mat[r, se[p]] = sq[p]
    return n, mat, table[:n].copy()


def build_product(tables: list, start: np.ndarray, max_states: int) -> tuple[np.ndarray, ...] | None:
    """:func:`product_lexer` on a list of per-entry tables (stacked here, a copy): ``(states,
    class table, byte -> class)``, or None past ``max_states``.  :class:`TableStack` avoids the copy."""
    off = np.zeros(len(tables), dtype=np.int64)
    acc = 0
    for e, t in enumerate(tables):
        off[e] = acc
        acc += len(t)
    tab = np.ascontiguousarray(np.concatenate(tables), dtype=np.int32)
    cls, reps = byte_classes([byte_class_map(t) for t in tables])
    n, states, table = product_lexer(tab, off, np.ascontiguousarray(start, dtype=np.int32), reps, max_states)
    if n < 0:
        return None
    return states, table, cls


def byte_class_map(table: np.ndarray) -> np.ndarray:
    """int32 class of each byte: bytes with identical columns in ``table`` share a class.

    Classes are numbered by their smallest byte.  One row-major pass hashes the columns and
    a second checks each against its class's first column (the numpy way, sorting
    transposed columns, cost ~10 ms on a 5,000-state pattern terminal, once per grammar);
    should two different columns share a hash, :func:`reference_byte_class_map` answers.
    """
    table = np.ascontiguousarray(table, dtype=np.int32)
    out = _byte_class_map(table)
    if out[0] < 0:
        return reference_byte_class_map(table)
    return out


@njit(cache=True, nogil=True)
def _byte_class_map(table: np.ndarray) -> np.ndarray:
    n, m = table.shape
    h = np.full(m, np.uint64(1469598103934665603))
    for r in range(n):
        for c in range(m):
            h[c] = (h[c] ^ np.uint64(table[r, c] + 2)) * np.uint64(1099511628211)
    out = np.empty(m, dtype=np.int32)
    rep = np.empty(m, dtype=np.int64)  # first byte of each class
    k = 0
    for c in range(m):
        found = -1
        for j in range(k):
            if h[rep[j]] == h[c]:
                found = j
                break
        if found < 0:
            rep[k] = c
            found = k
            k += 1
        out[c] = found
    for r in range(n):  # (hash equal, columns equal?)
        for c in range(m):
            if table[r, c] != table[r, rep[out[c]]]:
                out[0] = -1
                return out
    return out


def reference_byte_class_map(table: np.ndarray) -> np.ndarray:
    """Columns compared as tuples; classes numbered by their smallest byte."""
    seen: dict[tuple, int] = {}
    cols = np.asarray(table).T.tolist()
    return np.array([seen.setdefault(tuple(col), len(seen)) for col in cols], dtype=np.int32)


def byte_classes(maps: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Common refinement of per-table byte classes: ``(byte -> class, representative bytes)``.

    Classes are numbered by their smallest byte, and that byte is the representative, so a
    product explored class by class discovers states in the same order as byte by byte.
    One Numba pass (:func:`_refine`); :func:`reference_byte_classes` is the numpy definition
    (``np.unique`` over the rows, ~0.15 ms a product: half its build cost for a schema's
    small property-name products, built by the hundred).
    """
    sig = np.ascontiguousarray(np.stack(maps, axis=1), dtype=np.int64)  # (256, k)
    cls, reps, n = _refine(sig)
    return cls.astype(np.intp), reps[:n].copy()


@njit(cache=True, nogil=True)
def _refine(sig: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    m, k = sig.shape
    cls = np.empty(m, dtype=np.int64)
    reps = np.empty(m, dtype=np.int32)
    h = np.empty(m, dtype=np.uint64)
    n = 0
    for b in range(m):
        x = np.uint64(1469598103934665603)
        for e in range(k):
            x = (x ^ np.uint64(sig[b, e] + 1)) * np.uint64(1099511628211)
        h[b] = x
        found = -1
        for c in range(n):
            r = reps[c]
            if h[r] == x:
                same = True
                for e in range(k):
                    if sig[r, e] != sig[b, e]:
                        same = False
                        break
                if same:
                    found = c
                    break
        if found < 0:
            reps[n] = b
            found = n
            n += 1
        cls[b] = found
    return cls, reps, n


def reference_byte_classes(maps: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """numpy :func:`byte_classes`: distinct rows of the stacked maps, by first byte."""
    sig = np.ascontiguousarray(np.stack(maps, axis=1))  # (256, k)
    rows = sig.view(np.dtype((np.void, sig.dtype.itemsize * sig.shape[1]))).ravel()
    _, first, inv = np.unique(rows, return_index=True, return_inverse=True)
    order = np.argsort(first)  # classes by smallest byte
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inv.ravel()].astype(np.intp), np.sort(first).astype(np.int32)


class TableStack:
    """Every terminal table used by a product so far, stacked once (grown by doubling).

    Stacking a product's tables per call copied tens of MB for some schemas (one big
    pattern terminal next to a literal) and cost more than the product itself.
    """

    def __init__(self, tables: list) -> None:
        self.tables = tables  # the parser's per-terminal tables (filled lazily, by id)
        self.stack = np.empty((0, 256), dtype=np.int32)
        self.rows = 0
        self.off: dict[int, int] = {}
        self.cls: dict[int, np.ndarray] = {}  # terminal -> its byte -> class map

    def _add(self, t: int) -> int:
        tab = self.tables[t]
        need = self.rows + len(tab)
        if need > len(self.stack):
            grown = np.empty((max(need, 2 * len(self.stack)), 256), dtype=np.int32)
            grown[: self.rows] = self.stack[: self.rows]
            self.stack = grown
        self.stack[self.rows : need] = tab
        o = self.off[t] = self.rows
        self.rows = need
        self.cls[t] = byte_class_map(tab)
        return o

    def product(self, key: tuple[tuple[int, int], ...], max_states: int) -> tuple[np.ndarray, ...] | None:
        """``(state vectors, class table, byte -> class)`` of ``key``'s entries (see
        :func:`product_lexer`; one column per byte class: 4x less memory than 256 for a
        schema's property-name products), or None if too big."""
        off = np.empty(len(key), dtype=np.int64)
        for e, (t, _) in enumerate(key):
            o = self.off.get(t)
            off[e] = self._add(t) if o is None else o
        start = np.array([q for _, q in key], dtype=np.int32)
        cls, reps = byte_classes([self.cls[t] for t, _ in key])
        n, states, table = product_lexer(self.stack, off, start, reps, max_states)
        if n < 0:
            return None
        return states, table, cls


@njit(cache=True, nogil=True)
def or_sparse(out: np.ndarray, idx: np.ndarray, vals: np.ndarray) -> None:
    """``out[idx] |= vals`` without numpy's per-call overhead (µs on the small sets of a mask)."""
    for i in range(idx.shape[0]):
        out[idx[i]] |= vals[i]


@njit(cache=True, nogil=True)
def sparsify(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The non-zero words of ``words`` as ``(int32 indices, values)``, in one pass."""
    n = 0
    for i in range(words.shape[0]):
        if words[i]:
            n += 1
    idx = np.empty(n, dtype=np.int32)
    vals = np.empty(n, dtype=words.dtype)
    n = 0
    for i in range(words.shape[0]):
        if words[i]:
            idx[n] = i
            vals[n] = words[i]
            n += 1
    return idx, vals


@njit(cache=True, nogil=True)
def finish_walk(
    out: np.ndarray,  # uint32 words the walk ORed into; zeroed here
    extra: np.ndarray,  # uint32 words ORed in first (a slice tier's settled tokens), or empty
    node_map: np.ndarray,  # int32: walked trie node -> reported node, or empty for the identity
    bnd_node: np.ndarray,
    bnd_state: np.ndarray,
    nb: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A walk's result in the form the walk cache keeps, in one call: ``(idx, vals)`` of the
    non-zero words of ``out | extra`` (and ``out`` zeroed for the next walk), and the boundary
    nodes mapped and grouped by state -- ``(states, nodes, starts)``: group ``g`` is state
    ``states[starts[g]]`` with nodes ``nodes[starts[g]:starts[g + 1]]``, nodes in walk order.

    Why one kernel: done with numpy this was a dozen calls (nonzero, fancy indexing, a stable
    argsort, diff...), each a few microseconds of dispatch around little work, on every one
    of the ~9k walks of a 120-schema JSONSchemaBench run.  :func:`reference_finish_walk` is
    the numpy definition.
    """
    if extra.shape[0]:
        for i in range(out.shape[0]):
            out[i] |= extra[i]
    n = 0
    for i in range(out.shape[0]):
        if out[i]:
            n += 1
    idx = np.empty(n, dtype=np.int32)
    vals = np.empty(n, dtype=np.uint32)
    n = 0
    for i in range(out.shape[0]):
        w = out[i]
        if w:
            idx[n] = i
            vals[n] = w
            out[i] = 0
            n += 1
    order = np.argsort(bnd_state[:nb], kind="mergesort")
    states = np.empty(nb, dtype=np.int32)
    nodes = np.empty(nb, dtype=np.int32)
    for k in range(nb):
        states[k] = bnd_state[order[k]]
        v = bnd_node[order[k]]
        nodes[k] = node_map[v] if node_map.shape[0] else v
    ng = 0
    for k in range(nb):
        if k == 0 or states[k] != states[k - 1]:
            ng += 1
    starts = np.empty(ng + 1, dtype=np.int64)
    g = 0
    for k in range(nb):
        if k == 0 or states[k] != states[k - 1]:
            starts[g] = k
            g += 1
    starts[ng] = nb
    return idx, vals, states, nodes, starts


def reference_finish_walk(out, extra, node_map, bnd_node, bnd_state, nb: int):
    """numpy :func:`finish_walk` (what CompiledGrammar.job did inline before)."""
    if len(extra):
        np.bitwise_or(out, extra, out=out)
    idx = np.flatnonzero(out).astype(np.int32)
    vals = out[idx].copy()
    out[idx] = 0
    nodes = bnd_node[:nb]
    if len(node_map):
        nodes = node_map[nodes]
    order = np.argsort(bnd_state[:nb], kind="stable")
    ss = bnd_state[:nb][order].astype(np.int32)
    nn = np.asarray(nodes)[order].astype(np.int32)
    cuts = np.flatnonzero(np.diff(ss)) + 1
    starts = np.concatenate(([0], cuts, [nb])).astype(np.int64) if nb else np.zeros(1, dtype=np.int64)
    return idx, vals, ss, nn, starts


def reference_or_sparse(out: np.ndarray, idx: np.ndarray, vals: np.ndarray) -> None:
    """Plain-Python :func:`or_sparse` (repeated indices OR in turn)."""
    for i, v in zip(idx.tolist(), vals.tolist(), strict=True):
        out[i] = int(out[i]) | v


def reference_sparsify(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Plain-Python :func:`sparsify`."""
    nz = [(i, int(w)) for i, w in enumerate(words.tolist()) if w]
    return np.array([i for i, _ in nz], dtype=np.int32), np.array([w for _, w in nz], dtype=words.dtype)


def walk_classes(table: np.ndarray, accept: np.ndarray, depth: int) -> np.ndarray:
    """Number the states of a terminal DFA so that equal numbers give equal trie walks.

    A walk from state ``q`` reads trie paths of at most ``depth`` bytes (the longest token)
    and records, per path, only whether the state reached is dead (-1) or accepting.  So two
    states whose answers agree on every byte string of at most ``depth`` bytes have identical
    walks, and the walk cache can key them alike.  This is what makes the states of a long
    length-bounded string share one walk: ``maxLength: 1000`` counts characters in ~1000
    states, and all those with more than ``depth`` characters left look the same from here.

    Moore's refinement cut at ``depth`` rounds: round ``k`` separates states that differ on a
    string of ``k`` bytes or fewer; a round that separates nothing means no later one will.
    Rows are grouped by hash and then compared exactly, so a hash collision cannot merge two
    states.  Returns int64 class numbers.  :func:`reference_walk_classes` is the brute-force
    definition it is tested against.
    """
    table = np.ascontiguousarray(table, dtype=np.int32)
    accept = np.ascontiguousarray(accept, dtype=np.bool_)
    # (bytes acting alike are one letter: the rounds read one column per byte class)
    return _walk_classes(table, accept, int(depth), byte_class_map(table).astype(np.int64))


@njit(cache=True, nogil=True)
def _mix(h: np.uint64, v: np.int64) -> np.uint64:
    x = (h ^ np.uint64(v + 3)) * np.uint64(0x9E3779B97F4A7C15)
    return x ^ (x >> np.uint64(29))


@njit(cache=True, nogil=True)
def _group(keys: np.ndarray, hashes: np.ndarray, out: np.ndarray) -> int:
    """Number the rows of ``keys`` by content (equal rows, equal numbers); returns the count."""
    n = keys.shape[0]
    order = np.argsort(hashes, kind="mergesort")
    k = 0
    a = 0
    reps = np.empty(n, dtype=np.int64)  # (first row of each distinct content in a hash run)
    rid = np.empty(n, dtype=np.int64)
    while a < n:
        b = a + 1
        while b < n and hashes[order[b]] == hashes[order[a]]:
            b += 1
        nr = 0
        for x in range(a, b):
            r = order[x]
            found = -1
            for y in range(nr):
                o = reps[y]
                same = True
                for c in range(keys.shape[1]):
                    if keys[r, c] != keys[o, c]:
                        same = False
                        break
                if same:
                    found = rid[y]
                    break
            if found < 0:
                reps[nr] = r
                rid[nr] = k
                nr += 1
                found = k
                k += 1
            out[r] = found
        a = b
    return k


@njit(cache=True, nogil=True)
def _walk_classes(table: np.ndarray, accept: np.ndarray, depth: int, colid: np.ndarray) -> np.ndarray:
    n, m = table.shape
    cls = np.empty(n, dtype=np.int64)
    if n == 0:
        return cls
    nc = colid.max() + 1  # (colid: byte_class_map of table)
    cols = np.empty(nc, dtype=np.int64)
    for c in range(m - 1, -1, -1):
        cols[colid[c]] = c
    rows = np.empty((n, nc + 1), dtype=np.int64)
    hashes = np.empty(n, dtype=np.uint64)
    for q in range(n):
        cls[q] = 1 if accept[q] else 0
    k = 1
    for q in range(1, n):
        if cls[q] != cls[0]:
            k = 2
            break
    for q in range(n):
        rows[q, 0] = cls[q]  # (acceptance: the same first column every round)
    new = np.empty(n, dtype=np.int64)
    for _ in range(depth):
        for q in range(n):
            h = _mix(np.uint64(7), rows[q, 0])
            for j in range(nc):
                s = table[q, cols[j]]
                v = -1 if s < 0 else cls[s]
                rows[q, j + 1] = v
                h = _mix(h, v)
            hashes[q] = h
        k2 = _group(rows, hashes, new)
        cls[:] = new
        if k2 == k:
            break
        k = k2
    return cls


def reference_walk_classes(table: np.ndarray, accept: np.ndarray, depth: int) -> list[tuple]:
    """Per state, the full answer a walk of ``depth`` bytes can observe: for every byte string
    of length 1..``depth`` (over the bytes with transitions), dead or accepting.  Exponential:
    for tests only, on tiny automata."""
    n = table.shape[0]
    letters = sorted({int(b) for b in range(table.shape[1]) if (table[:, b] >= 0).any()})
    words: list[tuple[int, ...]] = [()]
    frontier: list[tuple[int, ...]] = [()]
    for _ in range(depth):
        frontier = [w + (b,) for w in frontier for b in letters]
        words += frontier
    out = []
    for q in range(n):
        sig = []
        for w in words:
            s = q
            for b in w:
                s = int(table[s, b])
                if s < 0:
                    break
            sig.append(-1 if s < 0 else int(bool(accept[s])))
        out.append(tuple(sig))
    return out
