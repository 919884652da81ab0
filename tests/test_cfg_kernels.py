"""Fast CFG kernels against their slow references (hypothesis)."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from constrain.cfg.lexer import LexerDFA
from constrain.engine import cfg_kernels
from constrain.vocab.trie import TokenTrie

ALPHA = b"abc"


@st.composite
def walk_case(draw):
    n = draw(st.integers(1, 5))
    table = np.full((n, 256), -1, dtype=np.int32)
    for s in range(n):
        for b in ALPHA:
            table[s, b] = draw(st.integers(-1, n - 1))
    accept = np.array([draw(st.booleans()) for _ in range(n)], dtype=np.bool_)
    toks = draw(
        st.lists(
            st.binary(min_size=1, max_size=5).map(lambda x: bytes(ALPHA[c % 3] for c in x)),
            min_size=1,
            max_size=30,
        )
    )
    trie = TokenTrie.build(list(toks))
    k = draw(st.integers(1, 4))
    roots = sorted({draw(st.integers(0, trie.n_nodes - 1)) for _ in range(k)})
    start = draw(st.integers(0, n - 1))
    return table, accept, start, np.array(roots, dtype=np.int32), trie, len(toks)


@settings(max_examples=150, deadline=None)
@given(walk_case(), st.integers(0, 3))
def test_lexer_walk_matches_reference(case, cap_shrink) -> None:
    table, accept, start, roots, trie, n_tokens = case
    out = np.zeros((n_tokens + 31) // 32, dtype=np.uint32)
    cap = max(0, trie.n_nodes - cap_shrink)
    bn = np.empty(cap, dtype=np.int32)
    bs = np.empty(cap, dtype=np.int32)
    nb = cfg_kernels.lexer_walk(
        table,
        np.arange(256, dtype=np.intp),
        accept,
        start,
        roots,
        trie.byte,
        trie.depth,
        trie.next,
        trie.tok_start,
        trie.tok_end,
        trie.tokens,
        trie.tok1,
        trie.max_depth,
        out,
        bn,
        bs,
    )
    allowed, bnd = cfg_kernels.reference_walk(table, accept, start, roots, trie, n_tokens)
    bits = np.unpackbits(out.view(np.uint8), bitorder="little")[:n_tokens].astype(bool)
    assert (bits == allowed).all()
    assert nb == len(bnd)
    if nb <= cap:
        assert Counter(zip(bn[:nb].tolist(), bs[:nb].tolist(), strict=True)) == Counter(bnd)


@st.composite
def lexer_case(draw):
    n_terms = draw(st.integers(1, 3))
    tables, accs, key = [], [], []
    for t in range(n_terms):
        n = draw(st.integers(1, 4))
        tab = np.full((n, 256), -1, dtype=np.int32)
        for s in range(n):
            for b in ALPHA:
                tab[s, b] = draw(st.integers(-1, n - 1))
        tables.append(tab)
        accs.append(np.array([draw(st.booleans()) for _ in range(n)], dtype=np.bool_))
        key.append((t, draw(st.integers(0, n - 1))))
    data = draw(st.binary(max_size=8).map(lambda x: bytes(ALPHA[c % 3] for c in x)))
    return tables, accs, tuple(key), data


@settings(max_examples=150, deadline=None)
@given(lexer_case())
def test_lexer_product_matches_per_entry_simulation(case) -> None:
    tables, accs, key, data = case
    lx = LexerDFA(key, tables, accs, max_states=10_000)
    s = lx.start
    qs = [q for _, q in key]
    for b in data:
        qs = [int(tables[t][q, b]) if q >= 0 else -1 for (t, _), q in zip(key, qs, strict=True)]
        s = int(lx.table[s, lx.cls[b]]) if s >= 0 else -1
        alive = any(q >= 0 for q in qs)
        assert (s >= 0) == alive
        if not alive:
            break
        comp = tuple(e for e, ((t, _), q) in enumerate(zip(key, qs, strict=True)) if q >= 0 and accs[t][q])
        assert lx.completing[s] == comp
        assert bool(lx.accept[s]) == bool(comp)


@settings(max_examples=150, deadline=None)
@given(lexer_case(), st.integers(1, 40))
def test_numba_product_equals_python_product(case, max_states) -> None:
    """The sparse Numba product numbers states like the plain-Python reference: equal tables."""
    from constrain.cfg.lexer import _product_reference
    from constrain.errors import ConstraintTooLarge

    tables, accs, key, _ = case
    if len(key) < 2:
        key = key + ((0, 0),)
    try:
        ref = _product_reference(key, tables, max_states)
    except ConstraintTooLarge:
        ref = None
    got = cfg_kernels.build_product([tables[t] for t, _ in key], np.array([q for _, q in key]), max_states)
    if ref is None:
        assert got is None
    else:
        assert got is not None
        assert np.array_equal(got[0], ref[0]) and np.array_equal(got[1][:, got[2]], ref[1])
        stack = cfg_kernels.TableStack(tables)
        assert (got2 := stack.product(key, max_states)) is not None
        assert np.array_equal(got2[0], ref[0]) and np.array_equal(got2[1][:, got2[2]], ref[1])
        lx = LexerDFA(key, tables, accs, max_states=max_states, product=stack.product)
        lr = LexerDFA(key, tables, accs, max_states=max_states)
        assert np.array_equal(lx.accept, lr.accept)
        assert all(lx.completing[s] == lr.completing[s] for s in range(lx.n_states))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=40),
    st.lists(st.tuples(st.integers(0, 39), st.integers(0, 2**32 - 1)), max_size=30),
)
def test_sparse_word_kernels_match_references(words, pairs) -> None:
    w = np.array(words, dtype=np.uint32)
    w[::3] = 0  # zeros to skip
    idx, vals = cfg_kernels.sparsify(w)
    ridx, rvals = cfg_kernels.reference_sparsify(w)
    assert np.array_equal(idx, ridx) and np.array_equal(vals, rvals) and idx.dtype == np.int32
    pairs = [(i % len(w), v) for i, v in pairs]
    pi = np.array([i for i, _ in pairs], dtype=np.int32)
    pv = np.array([v for _, v in pairs], dtype=np.uint32)
    a, b = w.copy(), w.copy()
    cfg_kernels.or_sparse(a, pi, pv)
    cfg_kernels.reference_or_sparse(b, pi, pv)
    assert np.array_equal(a, b)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=40),
    st.booleans(),
    st.lists(st.tuples(st.integers(0, 29), st.integers(0, 5)), max_size=40),
    st.booleans(),
    st.integers(0, 3),
)
def test_finish_walk_matches_reference(words, with_extra, bnd, with_map, spare) -> None:
    w = np.array(words, dtype=np.uint32)
    w[::3] = 0
    extra = (w[::-1] & np.uint32(0x0F0F0F0F)).copy() if with_extra else np.zeros(0, dtype=np.uint32)
    node_map = np.arange(100, 130, dtype=np.int32)[::-1].copy() if with_map else np.zeros(0, dtype=np.int32)
    nb = len(bnd)
    bn = np.array([n for n, _ in bnd] + [7] * spare, dtype=np.int32)  # (buffers longer than nb)
    bs = np.array([s for _, s in bnd] + [9] * spare, dtype=np.int32)
    a, b = w.copy(), w.copy()
    got = cfg_kernels.finish_walk(a, extra, node_map, bn, bs, nb)
    want = cfg_kernels.reference_finish_walk(b, extra, node_map, bn, bs, nb)
    assert not a.any() and not b.any()  # (the scratch words are left zeroed)
    for x, y in zip(got, want, strict=True):
        assert x.dtype == y.dtype and np.array_equal(x, y), (x, y)


@settings(max_examples=60, deadline=None)
@given(walk_case(), st.lists(st.integers(0, 3), min_size=256, max_size=256))
def test_lexer_walk_with_byte_classes_matches_expanded_table(case, cls_list) -> None:
    """A class table (one column per byte class) walks like its 256-column expansion."""
    table, accept, start, roots, trie, n_tokens = case
    cls = np.array(cls_list, dtype=np.intp)
    ctab = np.ascontiguousarray(
        table[:, [int(np.flatnonzero(cls == c)[0]) if (cls == c).any() else 0 for c in range(4)]]
    )
    full = np.ascontiguousarray(ctab[:, cls])
    out = np.zeros((n_tokens + 31) // 32, dtype=np.uint32)
    bn = np.empty(4 * trie.n_nodes, dtype=np.int32)
    bs = np.empty(4 * trie.n_nodes, dtype=np.int32)
    args = (trie.byte, trie.depth, trie.next, trie.tok_start, trie.tok_end, trie.tokens, trie.tok1, trie.max_depth)
    nb = cfg_kernels.lexer_walk(ctab, cls, accept, start, roots, *args, out, bn, bs)
    allowed, bnd = cfg_kernels.reference_walk(full, accept, start, roots, trie, n_tokens)
    allowed2, bnd2 = cfg_kernels.reference_walk(ctab, accept, start, roots, trie, n_tokens, cls=cls)
    bits = np.unpackbits(out.view(np.uint8), bitorder="little")[:n_tokens].astype(bool)
    assert (bits == allowed).all() and (allowed2 == allowed).all()
    assert nb == len(bnd) == len(bnd2)
    assert Counter(zip(bn[:nb].tolist(), bs[:nb].tolist(), strict=True)) == Counter(bnd)


@st.composite
def class_case(draw):
    n = draw(st.integers(1, 7))
    letters = draw(st.integers(1, 3))
    table = np.full((n, 256), -1, dtype=np.int32)
    for s in range(n):
        for b in ALPHA[:letters]:
            table[s, b] = draw(st.integers(-1, n - 1))
    accept = np.array([draw(st.booleans()) for _ in range(n)], dtype=np.bool_)
    return table, accept, draw(st.integers(0, 3))


@settings(max_examples=200, deadline=None)
@given(class_case())
def test_walk_classes_equal_the_bounded_residual_definition(case) -> None:
    """Same class exactly when the brute force sees the same dead/accepting answer on every
    byte string up to ``depth`` bytes (merging two that differ would give a wrong mask;
    splitting two that agree would only lose sharing, but is checked too)."""
    table, accept, depth = case
    fast = cfg_kernels.walk_classes(table, accept, depth)
    ref = cfg_kernels.reference_walk_classes(table[:, :256], accept, depth)
    n = len(table)
    for a in range(n):
        for b in range(n):
            assert (fast[a] == fast[b]) == (ref[a] == ref[b]), (a, b, fast, depth)


@settings(max_examples=100, deadline=None)
@given(walk_case())
def test_states_of_one_walk_class_walk_alike(case) -> None:
    """The property the walk cache relies on: from states of one class, on a trie no deeper
    than the depth used, the reference walk allows the same tokens and finds the same
    boundary nodes (with states that are accepting alike)."""
    table, accept, _, roots, trie, n_tokens = case
    cls = cfg_kernels.walk_classes(table, accept, trie.max_depth)
    walks = {}
    for q in range(len(table)):
        allowed, bnd = cfg_kernels.reference_walk(table, accept, q, roots, trie, n_tokens)
        got = (allowed.tobytes(), sorted(node for node, s in bnd if accept[s]))
        assert walks.setdefault(int(cls[q]), got) == got


@settings(max_examples=150, deadline=None)
@given(class_case())
def test_byte_class_map_matches_reference(case) -> None:
    """Same numbering (by smallest byte) as comparing the columns as tuples."""
    table, _, _ = case
    fast = cfg_kernels.byte_class_map(table)
    ref = cfg_kernels.reference_byte_class_map(table)
    assert fast.tolist() == ref.tolist()
    cols = table.T
    for a in range(0, 256, 17):
        for b in range(256):
            assert (fast[a] == fast[b]) == bool((cols[a] == cols[b]).all())


@settings(max_examples=120, deadline=None)
@given(st.lists(st.lists(st.integers(0, 5), min_size=256, max_size=256), min_size=1, max_size=4))
def test_byte_classes_match_reference(maps) -> None:
    arrs = [np.array(m, dtype=np.int32) for m in maps]
    cls, reps = cfg_kernels.byte_classes(arrs)
    rcls, rreps = cfg_kernels.reference_byte_classes(arrs)
    assert np.array_equal(cls, rcls) and np.array_equal(reps, rreps)
    assert cls.dtype == np.intp and reps.dtype == np.int32
