"""Deterministic automata over bytes: the common currency of regexes, lexers and masks.

A :class:`ByteDFA` is a dense ``(n_states, 256)`` int32 table with ``-1`` for "dead".  It
is always *trimmed*: every state can still reach acceptance, so "the walk is alive" means
"this prefix can still be completed".  That invariant is what lets the mask kernel prune a
whole vocabulary subtree the moment a transition is dead.

Every construction that can blow up (products, determinisation) takes ``max_states`` and
raises :class:`ConstraintTooLarge` instead of exhausting memory.
"""

from __future__ import annotations

import hashlib
from functools import cached_property

import numpy as np

from constrain.errors import ConstraintTooLarge

DEFAULT_MAX_STATES = 50_000


class ByteDFA:
    """A trimmed byte-level DFA.  ``start == -1`` denotes the empty language."""

    __slots__ = ("table", "accepting", "start", "__dict__")

    def __init__(self, table: np.ndarray, accepting: np.ndarray, start: int, *, trim: bool = True) -> None:
        table = np.ascontiguousarray(table, dtype=np.int32)
        accepting = np.ascontiguousarray(accepting, dtype=bool)
        if table.ndim != 2 or table.shape[1] != 256 or len(accepting) != len(table):
            raise ValueError("table must be (n, 256) with one accepting flag per state")
        if trim:
            table, accepting, start = _trim(table, accepting, start)
        self.table = table
        self.accepting = accepting
        self.start = int(start)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def literal(cls, data: bytes) -> ByteDFA:
        """The language ``{data}``."""
        n = len(data) + 1
        table = np.full((n, 256), -1, dtype=np.int32)
        for i, b in enumerate(data):
            table[i, b] = i + 1
        acc = np.zeros(n, dtype=bool)
        acc[-1] = True
        d = cls(table, acc, 0, trim=False)
        # the table is a function of ``data`` alone (built just above, untrimmed), so its digest
        # can be one of ``data``: a schema's property names are literals, each new to the
        # process, and hashing their (len + 1) x 256 tables was ~3% of JSONSchemaBench mask time
        d.__dict__["digest"] = hashlib.sha256(b"constrain.ByteDFA.literal\0" + data).digest()[:16]
        d.__dict__["literal_bytes"] = data
        return d

    @classmethod
    def empty(cls) -> ByteDFA:
        """The empty language (nothing, not even the empty string)."""
        return cls(np.zeros((0, 256), dtype=np.int32), np.zeros(0, dtype=bool), -1, trim=False)

    @classmethod
    def epsilon(cls) -> ByteDFA:
        """The language ``{b""}``."""
        return cls.literal(b"")

    # ---- queries --------------------------------------------------------------------------
    @cached_property
    def digest(self) -> bytes:
        """16-byte digest of the table and accepting flags (not the start state).

        Caches across grammars key walks and lexers by it; remembered on the automaton, so a
        cached one (a regex, a length-bounded JSON string) is hashed once per process, not
        once per grammar using it (a 1,000-state table is 1 MB to hash).
        """
        # (SHA-256 has hardware support here: 3x faster than BLAKE2b on a 5 MB table, no copy)
        h = hashlib.sha256(np.asarray(self.table.shape, dtype=np.int64).tobytes())
        h.update(memoryview(np.ascontiguousarray(self.table)).cast("B"))
        h.update(memoryview(np.ascontiguousarray(self.accepting).view(np.uint8)).cast("B"))
        return h.digest()[:16]

    @property
    def n_states(self) -> int:
        return len(self.table)

    def is_empty(self) -> bool:
        return self.start < 0

    def step(self, state: int, byte: int) -> int:
        return int(self.table[state, byte]) if state >= 0 else -1

    def run(self, state: int, data: bytes) -> int:
        """State after ``data`` from ``state`` (-1 once dead)."""
        # through a flat memoryview: a Python int per lookup, ~4x cheaper than numpy's 2-D
        # scalar indexing (the samplers advance by every token they keep)
        flat = self.flat_table
        for b in data:
            if state < 0:
                return -1
            state = flat[(state << 8) | b]
        return state

    def __getstate__(self) -> tuple[dict, dict]:
        # the flat view is rebuilt on first use after unpickling (a memoryview does not pickle)
        d = {k: v for k, v in self.__dict__.items() if k != "flat_table"}
        return d, {"table": self.table, "accepting": self.accepting, "start": self.start}

    def __setstate__(self, state: tuple[dict, dict]) -> None:
        d, slots = state
        self.__dict__.update(d)
        for k, v in slots.items():
            setattr(self, k, v)

    @cached_property
    def flat_table(self) -> memoryview:
        """The table as one flat view, ``flat_table[(state << 8) | byte]`` -> next state.

        Indexing it gives a plain int (~40 ns) where ``int(table[state, byte])`` on numpy costs
        ~150 ns: the byte-by-byte Python loops (``run`` here, the Earley parser's steps) use it.
        (The table is never written after construction: every operation builds a new DFA.)
        """
        return memoryview(self.table.reshape(-1))

    def accepts(self, data: bytes | str) -> bool:
        if isinstance(data, str):
            data = data.encode("utf-8")
        s = self.run(self.start, data)
        return s >= 0 and bool(self.accepting[s])

    def is_prefix(self, data: bytes) -> bool:
        """Whether ``data`` can be extended to an accepted string."""
        return self.run(self.start, data) >= 0

    @cached_property
    def distances(self) -> np.ndarray:
        """Fewest bytes from each state to acceptance (level-by-level BFS on the reversed graph)."""
        n = self.n_states
        dist = np.full(n, -1, dtype=np.int32)
        if n == 0:
            return dist
        offs, srcs = _reverse_csr(self.table)
        frontier = np.flatnonzero(self.accepting)
        dist[frontier] = 0
        level = 0
        while len(frontier):
            level += 1
            preds = _gather(frontier, offs, srcs)
            preds = np.unique(preds[dist[preds] < 0])
            dist[preds] = level
            frontier = preds
        return dist

    def shortest_string(self, state: int | None = None) -> bytes:
        """A shortest accepted continuation from ``state`` (default: the start)."""
        s = self.start if state is None else state
        if s < 0:
            raise ValueError("empty language has no strings")
        dist = self.distances
        out = bytearray()
        while dist[s] > 0:
            row = self.table[s]
            nxt = np.flatnonzero((row >= 0) & (dist[np.maximum(row, 0)] == dist[s] - 1))
            b = int(nxt[0])
            out.append(b)
            s = int(row[b])
        return bytes(out)

    def random_string(self, rng, max_len: int = 40, stop: float = 0.25) -> bytes:
        """A random member of the language: a random live walk, then a shortest completion.

        ``rng`` is a :class:`random.Random`; used by tests and benchmarks to reach random
        states, so it favours breadth over any particular distribution.
        """
        if self.start < 0:
            raise ValueError("empty language has no strings")
        s, out = self.start, bytearray()
        while len(out) < max_len and not (self.accepting[s] and rng.random() < stop):
            live = np.flatnonzero(self.table[s] >= 0)
            if len(live) == 0:
                break
            b = int(live[rng.randrange(len(live))])
            out.append(b)
            s = int(self.table[s, b])
        return bytes(out) + self.shortest_string(s)

    # ---- algebra ------------------------------------------------------------------------------
    def intersect(self, other: ByteDFA, *, max_states: int = DEFAULT_MAX_STATES) -> ByteDFA:
        return _product(self, other, both=True, max_states=max_states)

    def union(self, other: ByteDFA, *, max_states: int = DEFAULT_MAX_STATES) -> ByteDFA:
        return _product(self, other, both=False, max_states=max_states)

    def minimize(self) -> ByteDFA:
        """Moore partition refinement (vectorised); trimmed DFAs only need the live states."""
        n = self.n_states
        if n <= 1:
            return self
        # bytes whose columns are identical in every state never distinguish states: refine
        # on one representative column per byte class (typically ~10 of 256), much cheaper
        cols = np.ascontiguousarray(self.table.T)
        col_rows = cols.view(np.dtype((np.void, cols.dtype.itemsize * cols.shape[1]))).ravel()
        _, rep_cols = np.unique(col_rows, return_index=True)
        sub = np.ascontiguousarray(self.table[:, np.sort(rep_cols)])
        cls = self.accepting.astype(np.int64)
        n_cls = len(np.unique(cls))
        while True:
            nxt = np.where(sub >= 0, cls[np.maximum(sub, 0)], -1)
            sig = np.ascontiguousarray(np.concatenate([cls[:, None], nxt], axis=1))
            rows = sig.view(np.dtype((np.void, sig.dtype.itemsize * sig.shape[1]))).ravel()
            _, new = np.unique(rows, return_inverse=True)  # 1-D on raw row bytes: fast
            new = new.ravel()
            k = int(new.max()) + 1
            cls = new
            if k == n_cls:
                break
            n_cls = k
        table = np.full((n_cls, 256), -1, dtype=np.int32)
        acc = np.zeros(n_cls, dtype=bool)
        rep = np.zeros(n_cls, dtype=np.int64)
        rep[cls] = np.arange(n)
        row = self.table[rep]
        table[:] = np.where(row >= 0, cls[np.maximum(row, 0)], -1)
        acc[:] = self.accepting[rep]
        start = int(cls[self.start]) if self.start >= 0 else -1
        return ByteDFA(table, acc, start, trim=False)

    def __repr__(self) -> str:
        return f"ByteDFA(states={self.n_states}, start={self.start})"


def _reverse_csr(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predecessor lists of every state as CSR arrays (offsets, sources); duplicates allowed."""
    n = len(table)
    src, byte = np.nonzero(table >= 0)
    dst = table[src, byte]
    order = np.argsort(dst, kind="stable")
    counts = np.bincount(dst, minlength=n)
    offs = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offs[1:])
    return offs, src[order].astype(np.int64)


def _gather(frontier: np.ndarray, offs: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """Concatenate ``vals[offs[f]:offs[f+1]]`` for every ``f`` in ``frontier`` (vectorised)."""
    starts = offs[frontier]
    lens = offs[frontier + 1] - starts
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=vals.dtype)
    shift = np.repeat(starts - (np.cumsum(lens) - lens), lens)
    return vals[shift + np.arange(total)]


def _trim(table: np.ndarray, accepting: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Keep states reachable from ``start`` that can reach acceptance; renumber densely.

    Both searches are level-synchronous and vectorised, so trimming stays linear in the
    number of transitions even for the 10^5-state automata large schemas produce.
    """
    n = len(table)
    if start < 0 or n == 0:
        return np.zeros((0, 256), np.int32), np.zeros(0, bool), -1
    reach = np.zeros(n, dtype=bool)
    reach[start] = True
    frontier = np.array([start])
    while len(frontier):
        nxt = table[frontier].ravel()
        nxt = np.unique(nxt[nxt >= 0])
        frontier = nxt[~reach[nxt]]
        reach[frontier] = True
    offs, srcs = _reverse_csr(table)
    live = accepting & reach
    frontier = np.flatnonzero(live)
    while len(frontier):
        preds = np.unique(_gather(frontier, offs, srcs))
        frontier = preds[~live[preds] & reach[preds]]
        live[frontier] = True
    keep = reach & live
    if not keep[start]:
        return np.zeros((0, 256), np.int32), np.zeros(0, bool), -1
    new_id = np.full(n, -1, dtype=np.int32)
    order = np.flatnonzero(keep)
    new_id[order] = np.arange(len(order), dtype=np.int32)
    sub = table[order]
    new_table = np.where(sub >= 0, new_id[np.maximum(sub, 0)], -1).astype(np.int32)
    return new_table, accepting[order].copy(), int(new_id[start])


def _product(a: ByteDFA, b: ByteDFA, *, both: bool, max_states: int) -> ByteDFA:
    """Intersection (``both``) or union by breadth-first pair construction, bounded."""
    if both and (a.is_empty() or b.is_empty()):
        return ByteDFA.empty()
    if not both:
        if a.is_empty():
            return b
        if b.is_empty():
            return a
    ids: dict[tuple[int, int], int] = {(a.start, b.start): 0}
    pairs = [(a.start, b.start)]
    rows: list[np.ndarray] = []
    i = 0
    while i < len(pairs):
        sa, sb = pairs[i]
        ra = a.table[sa] if sa >= 0 else np.full(256, -1, np.int32)
        rb = b.table[sb] if sb >= 0 else np.full(256, -1, np.int32)
        alive = (ra >= 0) & (rb >= 0) if both else (ra >= 0) | (rb >= 0)
        row = np.full(256, -1, dtype=np.int32)
        for byte in np.flatnonzero(alive).tolist():
            key = (int(ra[byte]), int(rb[byte]))
            j = ids.get(key)
            if j is None:
                j = len(pairs)
                if j >= max_states:
                    raise ConstraintTooLarge(
                        f"automaton product exceeds {max_states} states", limit="max_states"
                    )
                ids[key] = j
                pairs.append(key)
            row[byte] = j
        rows.append(row)
        i += 1
    table = np.stack(rows)
    acc_a = np.array([sa >= 0 and bool(a.accepting[sa]) for sa, _ in pairs])
    acc_b = np.array([sb >= 0 and bool(b.accepting[sb]) for _, sb in pairs])
    acc = (acc_a & acc_b) if both else (acc_a | acc_b)
    return ByteDFA(table, acc, 0, trim=True)
