"""Bundled grammars against lark's own Earley parser (``lexer='dynamic_complete'``): the oracle.

For every grammar: its example strings, random members of its language and byte mutations of
them must get the same full-acceptance verdict from our recogniser and from lark, and every
prefix of an accepted string must be viable.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import lark
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import constrain
from constrain.cfg.earley import EarleyGrammar
from constrain.cfg.generate import grammar_alphabet, mutate, random_member

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"
NAMES = ["json", "arithmetic", "sql", "smiles", "c_like", "python_expr"]
# lark's Earley is slow on long ambiguous inputs: keep generated strings short
MAX_LEN = {"sql": 70, "python_expr": 50}


def _load(name: str):
    text = (GRAMMARS / f"{name}.lark").read_text()
    oracle = lark.Lark(text, parser="earley", lexer="dynamic_complete")
    return text, oracle, EarleyGrammar(constrain.grammar(text))


def _lark_accepts(oracle: lark.Lark, data: bytes) -> bool:
    try:
        oracle.parse(data.decode("utf-8"))
    except lark.exceptions.LarkError:
        return False
    return True


def _ours(eg: EarleyGrammar, data: bytes) -> bool:
    p = eg.run(eg.start_pos(), data)
    return p is not None and eg.accepting(p)


def _assert_prefixes_viable(eg: EarleyGrammar, data: bytes) -> None:
    pos = eg.start_pos()
    for i, b in enumerate(data):
        pos = eg.step(pos, b)
        assert eg.viable(pos), f"prefix {data[: i + 1]!r} of an accepted string is not viable"
    assert eg.accepting(pos)


@pytest.mark.parametrize("name", NAMES)
def test_examples(name: str) -> None:
    _, oracle, eg = _load(name)
    ex = json.loads((GRAMMARS / "examples" / f"{name}.json").read_text())
    assert ex["positive"] and ex["negative"]
    for s in ex["positive"]:
        data = s.encode()
        assert _lark_accepts(oracle, data), f"lark rejects positive example {s!r}"
        assert _ours(eg, data), f"we reject positive example {s!r}"
        _assert_prefixes_viable(eg, data)
    for s in ex["negative"]:
        data = s.encode()
        assert not _lark_accepts(oracle, data), f"lark accepts negative example {s!r}"
        assert not _ours(eg, data), f"we accept negative example {s!r}"


@pytest.mark.parametrize("name", NAMES)
def test_random_members_and_mutations_agree_with_lark(name: str) -> None:
    text, oracle, eg = _load(name)
    rng = random.Random(hash(name) & 0xFFFF)
    alphabet = grammar_alphabet(eg.grammar)
    max_len = MAX_LEN.get(name, 90)
    checked = accepted = members = 0
    for _ in range(300):
        if members == 20:
            break
        s = random_member(eg, rng, max_depth=3 if name == "sql" else 5)
        if len(s) > max_len:
            continue
        members += 1
        assert _ours(eg, s), f"generated member {s!r} rejected"
        _assert_prefixes_viable(eg, s)
        for c in [s] + [mutate(s, rng, alphabet) for _ in range(2)]:
            try:
                c.decode("utf-8")
            except UnicodeDecodeError:
                continue
            lk = _lark_accepts(oracle, c)
            assert _ours(eg, c) == lk, f"{name}: {c!r}: lark says {lk}"
            checked += 1
            accepted += lk
    assert checked >= 20 and 0 < accepted < checked, (checked, accepted)


def test_gbnf_json_agrees_with_lark_json() -> None:
    """The GBNF JSON grammar and the Lark JSON grammar define the same language."""
    _, oracle, eg_lark = _load("json")
    eg = EarleyGrammar(constrain.gbnf((GRAMMARS / "json.gbnf").read_text()))
    rng = random.Random(7)
    alphabet = grammar_alphabet(eg_lark.grammar)
    n = 0
    for _ in range(40):
        s = random_member(eg_lark, rng, max_depth=5)
        for c in [s, mutate(s, rng, alphabet), mutate(s, rng, alphabet)]:
            try:
                c.decode("utf-8")
            except UnicodeDecodeError:
                continue
            assert _ours(eg, c) == _lark_accepts(oracle, c), c
            n += 1
    assert n > 60


def test_left_recursion_ambiguity_nullable() -> None:
    text = """
    start: a
    a: a a | a "x" | "x" | b
    b: c c
    c: | "y"
    """
    g = constrain.grammar(text)
    oracle = lark.Lark(text, parser="earley", lexer="dynamic_complete")
    eg = EarleyGrammar(g)
    for s in ["", "x", "xx", "yx", "yyyx", "yxyxy", "xyyyx", "z", "xz"]:
        assert _ours(eg, s.encode()) == _lark_accepts(oracle, s.encode()), s


def test_terminals_that_are_prefixes_of_each_other_and_ignore() -> None:
    text = r"""
    start: (A | AB | ABC)+
    A: "a"
    AB: "ab"
    ABC: /abc+/
    %ignore " "
    """
    oracle = lark.Lark(text, parser="earley", lexer="dynamic_complete")
    eg = EarleyGrammar(constrain.grammar(text))
    for s in ["a", "ab", "abc", "abccc", "aab", "a b", " abcab a ", "ac", "b", "abcb", "a  bc"]:
        assert _ours(eg, s.encode()) == _lark_accepts(oracle, s.encode()), s


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), cuts=st.lists(st.integers(0, 200), max_size=6))
def test_run_equals_byte_by_byte_reference(name: str, seed: int, cuts: list[int]) -> None:
    """``run``'s lexeme fast path (no state per byte inside one lexeme) and its memos reach the
    very state ``run_reference`` (one ``step`` per byte) does, from any intermediate state:
    members and mutations cut into random chunks, as tokens cut text."""
    eg = _EG.get(name)
    if eg is None:
        eg = _EG[name] = _load(name)[2]
    rng = random.Random(seed)
    s = random_member(eg, rng, max_depth=3 if name == "sql" else 4)
    if rng.random() < 0.5:
        s = mutate(s, rng, grammar_alphabet(eg.grammar))
    bounds = sorted({0, len(s), *(c % (len(s) + 1) for c in cuts)})
    fast = slow = eg.start_pos()
    for a, b in zip(bounds, bounds[1:], strict=False):
        prev = fast
        fast, slow = eg.run(fast, s[a:b]), eg.run_reference(slow, s[a:b])
        again = eg.run(prev, s[a:b])  # (now from the run's memos: the same answer)
        assert again == fast  # (entries and node uid)
        assert (fast is None) == (slow is None)
        if fast is None:
            break
        assert fast == slow, (s, a, b)  # (entries, and the same node: uids are never reused)


_EG: dict[str, EarleyGrammar] = {}
