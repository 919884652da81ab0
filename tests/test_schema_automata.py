"""Automata behind the schema compiler, each against an obviously-correct Python reference."""

from __future__ import annotations

import json
import re
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from constrain.schema import numbers as nm
from constrain.schema import strings as sx

texts = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=8)


@settings(max_examples=150, deadline=None)
@given(texts, st.integers(0, 4), st.integers(0, 6))
def test_length_transducer_matches_len(s, lo, span):
    """json_string_dfa(length_dfa) accepts a JSON text iff the decoded value has the length."""
    hi = lo + span
    d = sx.json_string_dfa(sx.length_dfa(lo, hi))
    tiled = sx.json_length_string_dfa(lo, hi)
    want = lo <= len(s) <= hi
    for ea in (True, False):
        text = json.dumps(s, ensure_ascii=ea)
        assert d.accepts(text) == want
        assert tiled.accepts(text) == want


@settings(max_examples=100, deadline=None)
@given(texts)
def test_transducer_decodes_escapes(s):
    """Upper-case hex, short escapes and \\/ all decode to the same value."""
    d = sx.json_string_dfa(sx.literal_value_dfa([s]))
    assert d.accepts(json.dumps(s)) and d.accepts(json.dumps(s, ensure_ascii=False))
    upper = re.sub(r"\\u([0-9a-f]{4})", lambda m: "\\u" + m.group(1).upper(), json.dumps(s))
    assert d.accepts(upper)
    assert not d.accepts(json.dumps(s + "x"))


def test_transducer_rejects_lone_surrogates_and_raw_controls():
    d = sx.json_string_dfa(sx.length_dfa(0, 3))
    assert not d.accepts('"\\ud800"')
    assert not d.accepts('"\\udc00"')
    assert not d.accepts('"a\nb"')  # raw control character
    assert d.accepts('"\\ud83d\\ude00"')
    assert d.accepts('"\\/"')


@settings(max_examples=200, deadline=None)
@given(st.integers(-3000, 3000), st.one_of(st.none(), st.integers(-2000, 2000)), st.one_of(st.none(), st.integers(-2000, 2000)))
def test_int_range_regex(n, lo, hi):
    rx = nm.int_range(lo, hi)
    want = (lo is None or n >= lo) and (hi is None or n <= hi)
    got = rx is not None and re.fullmatch(rx, str(n)) is not None
    assert got == want


decimals = st.decimals(min_value=-200, max_value=200, places=3, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(decimals, decimals, st.booleans())
def test_decimal_bounds(x, c, excl):
    text = format(x, "f")
    if text.startswith("-") and Decimal(text) == 0:
        text = text  # '-0.000' is a fine JSON number
    ge = re.fullmatch(nm._signed_ge(c, excl), text) is not None
    le = re.fullmatch(nm._signed_le(c, excl), text) is not None
    assert ge == (x > c if excl else x >= c)
    assert le == (x < c if excl else x <= c)


@settings(max_examples=100, deadline=None)
@given(st.integers(-10**6, 10**6), st.integers(1, 60))
def test_residue_dfa(n, k):
    d = nm.residue_dfa(k)
    assert d.accepts(str(n)) == (n % k == 0)
    assert d.accepts(f"{n}.00") == (n % k == 0)


def test_pattern_is_a_search_and_ecma_classes():
    d = sx.pattern_dfa("a+")
    assert d.accepts("xxaxx") and not d.accepts("xyz")
    anchored = sx.pattern_dfa("^a+$")
    assert anchored.accepts("aaa") and not anchored.accepts("aab")
    ws = sx.pattern_dfa("^\\s$")
    assert ws.accepts("\u00a0") and ws.accepts("\u2003") and not ws.accepts("x")
    digits = sx.pattern_dfa("^\\d$")
    assert digits.accepts("5") and not digits.accepts("\u0665")  # ECMA \d is ASCII


NON_SPACE_CLASSES = [r"^[\S]+$", r"^[^\S\n]+$", r"^[\S\s]*$", r"^[a\S]$", r"[^\S\t ]", r"^[\S-]+\d$", r"x[\Sy]*z"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(NON_SPACE_CLASSES), st.text(alphabet="ab xyz-1\t\n\r\u3000\u00a0", max_size=6))
def test_non_space_escape_inside_classes(pattern, text):
    """``\\S`` inside ``[...]`` (e.g. ``^[\\S]+$``) used to be refused, and the pattern dropped
    (any string accepted).  re.search agrees with ECMA on these characters once ``$`` is
    ``\\Z`` (Python's ``$`` also matches before a final newline, ECMA's does not)."""
    assert sx.pattern_dfa(pattern).accepts(text) == bool(re.search(pattern.replace("$", r"\Z"), text))


LOOKAHEADS = [
    r"^(?!pattern$).*$", r"^(?!ab|b).+$", r"^(?!@@)[@a-z0-9_-]+$", r"^(?=.*[a-z])(?=.*[A-Z])(?=.*\d).{3,}$",
    r"^(?!^a\.|b\.).*", r"^(?!x)", r"^(?=a)(?!ab)[a-z]*", r"^(?![ \t]*\(d(.*)\))[\s\S]*",
]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(LOOKAHEADS), st.text(alphabet="abAB1@.x()d \t\npattern", max_size=9))
def test_leading_lookaheads_are_dfa_operations(pattern, text):
    """'^(?!A)B' and '^(?=A)B' (JSON Schema Store's reserved-word and password patterns) used to
    be refused, the pattern dropped; re.search is the reference (``$`` as ``\\Z``)."""
    assert sx.pattern_dfa(pattern).accepts(text) == bool(re.search(pattern.replace("$", r"\Z"), text))


def test_minus_literals():
    d = sx.minus_literals(sx.any_string_text_dfa(), ['"ab"', '"a"'])
    assert [d.accepts(x) for x in ['"ab"', '"a"', '"abc"', '""', '"b"']] == [False, False, True, True, True]


ANCHORED_ALTERNATIONS = [
    "^all|tags$", r"^(\{[a-z]+\})|([a-z]+)$", "^p([0-9]+)|t$", "a|^b", "^x$|^y$|z", "a|",
    r"^$|(^(?:\S+\s+){0,3}\S+$)", "(^a|b$)", "(?:^x|z$)|y", "((^a$))",
]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(ANCHORED_ALTERNATIONS), st.text(alphabet="abgilpstxyz{}R0123 ", max_size=8))
def test_anchors_belong_to_their_own_branch(pattern, text):
    """'^all|tags$' is "starts with all, or ends with tags" (ECMA search semantics), as re.search
    reads it; these patterns were once widened to any string."""
    assert sx.pattern_dfa(pattern).accepts(text) == bool(re.search(pattern, text))


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 9999), st.integers(0, 13), st.integers(0, 32))
def test_date_format_is_calendar_exact(y, m, d):
    """February 29 only in leap years, 30-day months end on the 30th (what datetime accepts)."""
    import datetime

    text = f"{y:04d}-{m:02d}-{d:02d}"
    try:
        datetime.date(y, m, d)
        real = True
    except ValueError:
        real = False
    assert sx.format_dfa("date").accepts(text) == real


def test_iri_needs_a_scheme_and_no_spaces():
    iri = sx.format_dfa("iri")
    assert iri.accepts("http://例え.jp/パス?q=1#f") and iri.accepts("urn:isbn:0451450523")
    assert not iri.accepts("not-an-iri") and not iri.accepts("http://a b")


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="a()[]^*+?|\\#:{}2,é", max_size=10))
def test_regex_format_never_rejects_a_regex_python_compiles(text):
    """Format 'regex' may over-approximate (syntax nests; it is not regular) but never blocks
    what ``re.compile`` -- the validators' check -- accepts."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "possible nested set"
        try:
            re.compile(text)
        except (re.error, OverflowError, RecursionError):
            return
    assert sx.regex_syntax_dfa().accepts(text)


def test_regex_format_rejects_broken_syntax():
    d = sx.regex_syntax_dfa()
    for ok in ["[])]", "[^]]", "[]a]"]:  # a first ']' is literal for Python (hypothesis found '[])]')
        assert d.accepts(ok), ok
    for bad in ["[", "^(abc]", "a)", "(a", "*a", "a**", "x|*", "(*)", "\\", "a*?+"]:
        assert not d.accepts(bad), bad
    for good in ["([abc])+\\s+$", "[]]", "(?P<n>a)(?P=n)", "(?#a(b)", "a*+", "((((((((((a))))))))))"]:
        assert d.accepts(good), good
