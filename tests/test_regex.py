"""The byte DFA agrees with Python's re (ASCII classes) on generated and mutated strings."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from constrain.automata import ByteDFA, regex_to_dfa
from constrain.errors import ConstraintTooLarge, RegexError
from tests.regex_corpus import REGEXES

assert len(REGEXES) >= 40


def _mutations(draw, s: str) -> str:
    if not s:
        return draw(st.text(max_size=3))
    i = draw(st.integers(0, len(s) - 1))
    op = draw(st.sampled_from(["del", "ins", "sub", "dup"]))
    c = draw(st.characters(blacklist_categories=("Cs",)))
    if op == "del":
        return s[:i] + s[i + 1 :]
    if op == "ins":
        return s[:i] + c + s[i:]
    if op == "sub":
        return s[:i] + c + s[i + 1 :]
    return s + s[i:]


@pytest.mark.parametrize("pattern", REGEXES)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_dfa_agrees_with_re(pattern, data):
    dfa = regex_to_dfa(pattern)
    # ASCII class semantics; hypothesis cannot generate non-ASCII text under re.ASCII,
    # so the Unicode patterns of the corpus avoid \d, \w and \s instead
    ascii_only = pattern.isascii() and "\\u" not in pattern and "\\U" not in pattern
    rx = re.compile(pattern, re.ASCII if ascii_only else 0)
    s = data.draw(st.from_regex(rx, fullmatch=True))
    assert dfa.accepts(s), (pattern, s)
    for p in range(len(s.encode()) + 1):
        assert dfa.is_prefix(s.encode()[:p])  # every prefix of a match is viable
    m = _mutations(data.draw, s)
    if len(m) <= 24:  # longer mutants can send Python's backtracking re into exponential time
        assert dfa.accepts(m) == bool(rx.fullmatch(m)), (pattern, m)
    r = data.draw(st.text(max_size=8))
    assert dfa.accepts(r) == bool(rx.fullmatch(r)), (pattern, r)


@pytest.mark.parametrize(
    "bad, position",
    [("(ab", 0), ("a{5,3}", 2), ("[z-a]", 1), ("*a", 0), (r"a\\", None)],
)
def test_invalid_regex_is_typed_and_located(bad, position):
    if bad == r"a\\":
        regex_to_dfa(bad)  # a valid escaped backslash
        return
    with pytest.raises(RegexError) as ei:
        regex_to_dfa(bad)
    assert ei.value.pattern == bad
    assert ei.value.position == position
    assert bad in str(ei.value)


@pytest.mark.parametrize("bad", [r"(?<=a)b", r"(a)\1", r"a(?=b)", r"\p{L}+", r"a^b"])
def test_unsupported_constructs_raise(bad):
    with pytest.raises(RegexError):
        regex_to_dfa(bad)


@pytest.mark.parametrize(
    "evil", [r"(a|b)*a(a|b){40}", r".*a.{18}", r"[ab]{100000}", r"[a-z]*q[a-z]{16}"]
)
def test_exploding_regex_raises_quickly(evil):
    t = time.monotonic()
    with pytest.raises(ConstraintTooLarge) as ei:
        regex_to_dfa(evil, max_states=20_000)
    assert ei.value.limit in {"max_states", "max_nfa_states", "timeout_s"}
    assert time.monotonic() - t < 15


def test_non_str_pattern():
    with pytest.raises(RegexError):
        regex_to_dfa(123)  # type: ignore[arg-type]


def _brute(dfa: ByteDFA, words):
    return {w for w in words if dfa.accepts(w)}


@settings(max_examples=60, deadline=None)
@given(
    a=st.sampled_from(REGEXES[:20]),
    b=st.sampled_from(REGEXES[:20]),
    words=st.lists(st.text(alphabet="ab01.-@x(): ", max_size=8), max_size=30),
)
def test_product_constructions(a, b, words):
    da, db = regex_to_dfa(a), regex_to_dfa(b)
    inter, uni = da.intersect(db), da.union(db)
    for w in words:
        assert inter.accepts(w) == (da.accepts(w) and db.accepts(w))
        assert uni.accepts(w) == (da.accepts(w) or db.accepts(w))
    mini = uni.minimize()
    for w in words:
        assert mini.accepts(w) == uni.accepts(w)


def test_distances_and_shortest_string():
    dfa = regex_to_dfa(r"\d{3}-\d{4}")
    assert dfa.distances[dfa.start] == 8
    s = dfa.shortest_string()
    assert len(s) == 8 and dfa.accepts(s)
    assert regex_to_dfa("").accepts("")
    assert regex_to_dfa("a+").intersect(regex_to_dfa("b+")).is_empty()
