"""Vectorised ByteDFA algorithms (trim, distances, minimise) against plain-Python references."""

from __future__ import annotations

from collections import deque

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from constrain.automata import ByteDFA


@st.composite
def raw_dfa(draw):
    n = draw(st.integers(1, 8))
    alphabet = [97, 98, 99]
    table = np.full((n, 256), -1, dtype=np.int32)
    for s in range(n):
        for b in alphabet:
            if draw(st.booleans()):
                table[s, b] = draw(st.integers(0, n - 1))
    acc = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    return table, acc


def _accepts(table, acc, start, word: bytes) -> bool:
    s = start
    for b in word:
        s = int(table[s, b])
        if s < 0:
            return False
    return bool(acc[s])


def _ref_distance(table, acc, state) -> int:
    """BFS forward from one state to the nearest accepting state (-1 if none)."""
    seen = {state}
    q = deque([(state, 0)])
    while q:
        s, d = q.popleft()
        if acc[s]:
            return d
        for t in table[s][table[s] >= 0].tolist():
            if t not in seen:
                seen.add(t)
                q.append((t, d + 1))
    return -1


WORDS = st.lists(st.binary(max_size=6).map(lambda b: bytes(97 + x % 3 for x in b)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(raw=raw_dfa(), words=WORDS)
def test_trim_keeps_the_language_and_only_live_states(raw, words):
    table, acc = raw
    dfa = ByteDFA(table, acc, 0)
    for w in words:
        assert dfa.accepts(w) == _accepts(table, acc, 0, w)
    for s in range(dfa.n_states):  # every kept state can reach acceptance
        assert _ref_distance(dfa.table, dfa.accepting, s) >= 0
    np.testing.assert_array_equal(
        dfa.distances, [_ref_distance(dfa.table, dfa.accepting, s) for s in range(dfa.n_states)]
    )
    mini = dfa.minimize()
    assert mini.n_states <= dfa.n_states
    for w in words:
        assert mini.accepts(w) == dfa.accepts(w)


def test_digest_follows_content_not_identity() -> None:
    """Walk caches are shared across grammars by this digest: equal automata must agree, and
    a change of one transition or one accepting flag must not."""
    a = ByteDFA.literal(b"ab")
    b = ByteDFA.literal(b"ab")
    assert a is not b and a.digest == b.digest
    assert ByteDFA.literal(b"ac").digest != a.digest
    flipped = ByteDFA(a.table, ~a.accepting, a.start, trim=False)
    assert flipped.digest != a.digest
    plain = ByteDFA(a.table, a.accepting, a.start, trim=False)  # (hashed by its table)
    wider = ByteDFA(np.asfortranarray(a.table), a.accepting, a.start, trim=False)  # (layout only)
    assert wider.digest == plain.digest
    # a literal's digest is one of its bytes (its table is a function of them), kept apart
    # from every table digest: equal literals agree, different ones do not
    assert ByteDFA.literal(b"").digest == ByteDFA.epsilon().digest
    assert len({ByteDFA.literal(x).digest for x in (b"", b"a", b"ab", b"ba", b"a\x00")}) == 5
