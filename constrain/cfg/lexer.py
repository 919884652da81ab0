"""The combined lexer automaton of a set of in-progress lexemes.

A matcher state has a tuple of lexer entries ``(terminal, dfa state)`` (one per terminal that
may be in progress).  The product of their DFAs, built here, advances *all* of them with one
table lookup per byte; its states are tuples of per-entry DFA states (-1 = that entry died).
A product state is alive while any entry is alive; ``accept[s]`` says some entry can end a
lexeme there (a *lexeme boundary* where the parser must be consulted), and ``completing[s]``
says which entries.

The product depends only on the entries' ``(terminal, state)`` key, never on parser
context, so it and every trie walk done with it are cached across matcher states: that is
the context-independent part of a mask (tokens that stay inside one lexeme need no parser).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from constrain.errors import ConstraintTooLarge


class _SingleCompleting:
    """``completing[s]`` of a one-entry lexer, without a per-state list."""

    __slots__ = ("accept",)

    def __init__(self, accept: np.ndarray) -> None:
        self.accept = accept

    def __getitem__(self, s: int) -> tuple[int, ...]:
        return (0,) if self.accept[s] else ()


class _ProductCompleting:
    """``completing[s]`` of a product, computed per state on first use (most are never asked)."""

    __slots__ = ("acc_mat", "memo")

    def __init__(self, acc_mat: np.ndarray) -> None:
        self.acc_mat = acc_mat
        self.memo: dict[int, tuple[int, ...]] = {}

    def __getitem__(self, s: int) -> tuple[int, ...]:
        c = self.memo.get(s)
        if c is None:
            c = self.memo[s] = tuple(np.flatnonzero(self.acc_mat[s]).tolist())
        return c


# (key, max_states) -> (state vectors, table, byte -> column of table), or None past max_states
ProductBuilder = Callable[[tuple, int], "tuple[np.ndarray, np.ndarray, np.ndarray] | None"]

_IDENTITY = np.arange(256, dtype=np.intp)


class LexerDFA:
    """Product DFA of lexer entries; built eagerly (bounded) when first needed.

    ``product``, if given, builds ``(state vectors, table, byte -> column)`` (None when over
    ``max_states``) in place of the plain-Python breadth-first construction below, which is
    its reference (the engine passes a Numba kernel: this layer stays pure Python).  The
    transition on byte ``b`` is ``table[s, cls[b]]``: a built product keeps one column per
    byte class.
    """

    __slots__ = ("key", "table", "cls", "accept", "completing", "start", "n_states")

    def __init__(
        self,
        key: tuple[tuple[int, int], ...],
        tables: list,
        accs: list,
        *,
        max_states: int,
        product: ProductBuilder | None = None,
    ) -> None:
        self.key = key
        self.cls = _IDENTITY  # byte -> column of table (byte classes for a built product)
        k = len(key)
        if k == 0:
            self.table = np.full((0, 256), -1, dtype=np.int32)
            self.accept = np.zeros(0, dtype=np.bool_)
            self.completing: list[tuple[int, ...]] = []
            self.start = -1
            self.n_states = 0
            return
        if k == 1:
            # one lexeme in progress: its own DFA is the product (no construction at all)
            t, q = key[0]
            self.table = tables[t]
            self.accept = np.ascontiguousarray(accs[t], dtype=np.bool_)
            self.completing = _SingleCompleting(self.accept)  # type: ignore[assignment]
            self.start = int(q)
            self.n_states = len(self.table)
            return
        term_accs = [accs[t] for t, _ in key]
        if product is not None:
            built = product(key, max_states)
            if built is None:
                raise ConstraintTooLarge(
                    f"lexer automaton for {k} terminals passed {max_states} states", "max_lexer_states"
                )
            mat, self.table, self.cls = built
        else:
            mat, self.table = _product_reference(key, tables, max_states)
        self.n_states = len(mat)
        acc_mat = np.zeros(mat.shape, dtype=np.bool_)
        for e in range(k):
            col = mat[:, e]
            live = col >= 0
            acc_mat[live, e] = term_accs[e][col[live]]
        self.completing = _ProductCompleting(acc_mat)  # type: ignore[assignment]
        self.accept = acc_mat.any(axis=1)
        self.start = 0


def _product_reference(key: tuple[tuple[int, int], ...], tables: list, max_states: int):
    """Plain-Python breadth-first product: ``(state vectors (n, k), table (n, 256))``."""
    k = len(key)
    start = tuple(q for _, q in key)
    index: dict[bytes, int] = {}
    states: list[np.ndarray] = []
    vec0 = np.array(start, dtype=np.int32)
    index[vec0.tobytes()] = 0
    states.append(vec0)
    rows: list[np.ndarray] = []
    term_tables = [tables[t] for t, _ in key]
    i = 0
    dead = np.full(256, -1, dtype=np.int32)
    while i < len(states):
        vec = states[i]
        m = np.empty((k, 256), dtype=np.int32)
        for e in range(k):
            q = vec[e]
            m[e] = term_tables[e][q] if q >= 0 else dead
        cols = np.ascontiguousarray(m.T)  # (256, k)
        alive = (cols >= 0).any(axis=1)
        row = np.full(256, -1, dtype=np.int32)
        for b in np.flatnonzero(alive):
            col = cols[b]
            kb = col.tobytes()
            j = index.get(kb)
            if j is None:
                j = len(states)
                if j >= max_states:
                    raise ConstraintTooLarge(
                        f"lexer automaton for {k} terminals passed {max_states} states",
                        "max_lexer_states",
                    )
                index[kb] = j
                states.append(col.copy())
            row[b] = j
        rows.append(row)
        i += 1
    return np.stack(states), np.ascontiguousarray(np.stack(rows).astype(np.int32))
