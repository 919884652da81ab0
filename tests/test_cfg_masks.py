"""CFG token masks equal a brute-force per-token check, on a toy and on the llama3 vocabulary.

The brute force is :func:`constrain.engine.reference.matcher_mask_by_checks`: for every token,
``accepts_prefix_bytes`` in pure Python (no trie, no lexer product, no caches).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import constrain
from constrain.cfg.generate import random_member
from constrain.engine.cfg_matcher import CompiledGrammar
from constrain.engine.reference import matcher_mask_by_checks
from constrain.vocab import Vocabulary

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"


def _grammar(name: str):
    return constrain.grammar((GRAMMARS / f"{name}.lark").read_text())


def _compare(m, where: str) -> None:
    fast = m.mask()
    ref = matcher_mask_by_checks(m)
    diff = np.flatnonzero(fast != ref)
    assert not len(diff), f"{where}: mask differs from brute force at tokens {diff[:10].tolist()}"


def _random_walks(cg: CompiledGrammar, rng: random.Random, walks: int, steps: int, label: str) -> int:
    """Compare masks with brute force along random token walks; returns the states compared."""
    states = 0
    for walk in range(walks):
        m = cg.matcher()
        for step in range(steps):
            _compare(m, f"{label} walk {walk} step {step}")
            states += 1
            allowed = m.allowed_tokens()
            if not len(allowed):
                break
            m.advance(int(rng.choice(allowed.tolist())))
            if m.is_terminated():
                break
    return states


def _toy_vocab() -> Vocabulary:
    rng = random.Random(3)
    alphabet = b' \t\n{}[]:,"\\0123456789.-+eEabcfilnrstuxyz_()*/%^=<>;!'
    toks: list[bytes | None] = [None]
    toks += [bytes([c]) for c in alphabet]
    for _ in range(400):
        toks.append(bytes(rng.choice(alphabet) for _ in range(rng.randint(2, 6))))
    toks += [b'{"', b'":', b'", "', b"true", b"null", b"}]", b"  ", b"    ", b'"}', b"\xc3\xa9", b"\xc3"]
    return Vocabulary.from_token_bytes(toks, eos_token_ids=[0])


@pytest.mark.parametrize("native", [True, False], ids=["c-walk", "python-walk"])
@pytest.mark.parametrize("split", [True, False], ids=["entries-split", "product-lexer"])
@pytest.mark.parametrize("name", ["json", "arithmetic", "c_like", "python_expr", "smiles", "sql"])
def test_toy_vocab_masks_match_brute_force_on_random_walks(name: str, split: bool, native: bool) -> None:
    vocab = _toy_vocab()
    cg = CompiledGrammar(_grammar(name), vocab, split_entries=split, native_walk=native)
    assert _random_walks(cg, random.Random(11), 8, 15, name) > 30


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(["json", "c_like", "python_expr", "sql", "keys"]),
    split=st.booleans(),
    seed=st.integers(0, 10**6),
)
def test_c_walk_equals_the_python_walk(name: str, split: bool, seed: int) -> None:
    """native/cfgwalk.c against its reference, CompiledGrammar._walk/_walk_apart/_subtree:
    the same masks along random walks, and the same cache traffic (hits of every kind)."""
    from constrain.engine import cfg_matcher

    if cfg_matcher._cfg_walk is None:
        pytest.skip("the C extension was not built")
    vocab = _toy_vocab()
    g = constrain.grammar(KEYS_GRAMMAR) if name == "keys" else _grammar(name)
    fast = CompiledGrammar(g, vocab, split_entries=split)
    ref = CompiledGrammar(g, vocab, split_entries=split, native_walk=False)
    assert fast.native_walk and not ref.native_walk
    rng = random.Random(seed)
    mf, mr = fast.matcher(), ref.matcher()
    for _ in range(14):
        a, b = mf.mask(), mr.mask()
        assert np.array_equal(a, b)
        allowed = np.flatnonzero(a)
        if not len(allowed):
            break
        t = int(rng.choice(allowed.tolist()))
        mf.advance(t)
        mr.advance(t)
        if mf.is_terminated():
            break
    for k in ("sub_hits", "union_hits", "deferred", "mask_hits", "view_hits"):
        assert fast.stats[k] == ref.stats[k], k


def test_c_walk_rejects_what_is_not_a_grammar() -> None:
    from constrain.engine import cfg_matcher

    if cfg_matcher._cfg_walk is None:
        pytest.skip("the C extension was not built")
    with pytest.raises(AttributeError):
        cfg_matcher._cfg_walk(object(), np.zeros(4, np.uint32), (), (), np.zeros(1, np.int32), {}, None)
    cg = CompiledGrammar(_grammar("json"), _toy_vocab())
    with pytest.raises(TypeError):
        cfg_matcher._cfg_walk(cg, np.zeros(4, np.uint32), [], (), np.zeros(1, np.int32), {}, None)
    with pytest.raises(TypeError):
        cfg_matcher._cfg_walk(cg, np.zeros(4, np.uint32), (), ())


# an object whose key position offers many literal keys (as a schema's properties do), nested,
# so the same set of key entries recurs under different origins: the remembered OR of their
# in-lexeme walks is reused there, and the few keys a token can finish are walked again
KEYS_GRAMMAR = r"""
start: value
value: obj | arr | "1" | "true"
obj: "{" (pair ("," pair)*)? "}"
arr: "[" (value ("," value)*)? "]"
pair: key ":" value
key: "\"a\"" | "\"ab\"" | "\"abc\"" | "\"b\"" | "\"ba\"" | "\"c\"" | "\"ca\"" | "\"x_1\"" | "\"y\""
"""


def test_many_literal_entries_masks_match_brute_force_and_reuse_the_union() -> None:
    vocab = _toy_vocab()
    cg = CompiledGrammar(constrain.grammar(KEYS_GRAMMAR), vocab)
    _random_walks(cg, random.Random(5), 12, 25, "keys")
    # (the OR of the key entries was found in the cache under other origins)
    assert cg.stats["union_hits"] > 0


def _reachable_states(cg: CompiledGrammar, vocab: Vocabulary, rng: random.Random, n: int):
    """Matchers after a random prefix of the tokenisation of a random member."""
    eg = cg.parser
    out = []
    while len(out) < n:
        s = random_member(eg, rng, max_depth=4)
        if not 0 < len(s) < 120:
            continue
        ids = vocab.encode(s)
        m = cg.matcher()
        k = rng.randrange(len(ids) + 1)
        m.advance_many(ids[:k])
        out.append(m)
    return out


def _compare_sampled(m, rng: random.Random, where: str) -> None:
    """Brute force on 4000 random tokens plus 1500 random allowed ones (grammars whose
    identifier terminals allow most of the vocabulary are too slow to check in full)."""
    vocab = m.vocab
    fast = m.mask()
    allowed = np.flatnonzero(fast).tolist()
    sample = set(rng.sample(range(len(vocab)), 4000)) | set(rng.sample(allowed, min(1500, len(allowed))))
    for t in sample:
        if t in vocab.eos_token_ids:
            ref = m.is_accepting()
        else:
            b = vocab.token_bytes(t)
            ref = bool(b) and m.accepts_prefix_bytes(b)
        assert fast[t] == ref, (
            f"{where}: token {t} {vocab.token_bytes(t)!r}: mask {fast[t]}, brute force {ref}"
        )


@pytest.mark.parametrize(
    ("name", "n", "full"),
    [
        ("json", 4, True),
        ("sql", 1, True),
        ("smiles", 2, True),
        ("arithmetic", 2, False),
        ("c_like", 2, False),
        ("python_expr", 2, False),
    ],
)
def test_llama3_masks_match_brute_force(llama3_vocab, name: str, n: int, full: bool) -> None:
    cg = CompiledGrammar(_grammar(name), llama3_vocab)
    rng = random.Random(5)
    ms = _reachable_states(cg, llama3_vocab, rng, n)
    if full:
        ms.insert(0, cg.matcher())
    for i, m in enumerate(ms):
        if full:
            _compare(m, f"{name} state {i}")
        else:
            _compare_sampled(m, rng, f"{name} state {i}")


def test_llama3_json_walk_allows_every_instance_token(llama3_vocab) -> None:
    """The real tokenisation of JSON documents is allowed token by token, and EOS at the end."""
    cg = CompiledGrammar(_grammar("json"), llama3_vocab)
    docs = ['{"a": [1, 2.5, {"b": null}], "c": "d\\u00e9"}', "[true,false]", '  {"x":"y"}  ']
    for d in docs:
        m = cg.matcher()
        for t in llama3_vocab.encode(d):
            assert m.mask()[t], (d, t)
            m.advance(t)
        assert m.is_accepting()
        assert m.mask()[llama3_vocab.eos_token_ids[0]]


def test_product_lexer_too_large_splits_entries_instead_of_raising() -> None:
    """Lengths mod 7, 11 and 13 in parallel: the three-terminal product has 1001 states, over
    the limit, so the walk splits the entries (JSONSchemaBench schemas used to raise
    ConstraintTooLarge mid-generation here); the masks must still equal brute force."""
    g = constrain.grammar(
        'start: A | B | C | A "," start\nA: /([ab]{7})+x/\nB: /([ab]{11})+y/\nC: /([ab]{13})+z/\n'
    )
    rng = random.Random(1)
    toks: list[bytes | None] = [None] + [bytes([c]) for c in b"abxyz,"]
    toks += [bytes(rng.choice(b"ab") for _ in range(rng.randint(2, 9))) for _ in range(150)]
    toks += [b"ax", b"bby", b"aaz,", b"x,a", b"ab,ab"]
    vocab = Vocabulary.from_token_bytes(list(dict.fromkeys(toks)), eos_token_ids=[0])
    cg = CompiledGrammar(g, vocab, max_lexer_states=100, split_entries=False)
    _random_walks(cg, rng, 6, 12, "product over the limit")
    assert cg.stats["split_lexers"] > 0


@pytest.mark.parametrize("name", ["json", "c_like"])
def test_tiny_lexer_limit_masks_match_brute_force(name: str) -> None:
    """With ``max_lexer_states=3`` nearly every product is split, recursively."""
    vocab = _toy_vocab()
    cg = CompiledGrammar(_grammar(name), vocab, max_lexer_states=3, split_entries=False)
    _random_walks(cg, random.Random(4), 4, 12, name)
    assert cg.stats["split_lexers"] > 0


def test_walks_are_shared_across_grammars_with_the_same_terminals() -> None:
    """A second grammar whose terminals have the same automata reuses the first one's walks
    (content-keyed), and its masks still equal the brute force -- including a grammar where a
    shared terminal sits beside different ones."""
    vocab = _toy_vocab()
    a = CompiledGrammar(_grammar("json"), vocab)
    rng = random.Random(5)
    for _ in range(4):  # warm the shared cache through grammar a
        m = a.matcher()
        for _ in range(12):
            allowed = m.allowed_tokens()
            if not len(allowed):
                break
            m.advance(int(rng.choice(allowed.tolist())))
            m.mask()
    b = CompiledGrammar(_grammar("json"), vocab)  # a different object: nothing of its own cached
    m = b.matcher()
    m.mask()
    assert b.stats["job_hits"] > 0 and b.stats["walks"] == 0
    text = '{"k": [1, "x", true], "z": {"y": null}}'
    json_lines = (GRAMMARS / "json.lark").read_text().splitlines()
    terminals = "\n".join(line for line in json_lines if line.startswith(("STRING:", "NUMBER:")))
    other = CompiledGrammar(constrain.grammar(f'start: "[" STRING ("," NUMBER)* "]"\n{terminals}\n'), vocab)
    for cg, sample in ((b, text), (other, '["a\\"b",1,2.5]')):
        m = cg.matcher()
        for ch in sample:
            _compare(m, f"{sample!r} before {ch!r}")
            m.advance_bytes(ch.encode())


def test_states_inside_a_long_bounded_string_share_walks_and_stay_exact() -> None:
    """Inside ``"[a-z ]{0,80}"`` each character is a new DFA state, but with tokens of at
    most 6 bytes all states with 6 or more characters left walk alike: one walk serves them
    (CompiledGrammar.walk_key).  The masks still equal brute force at every position,
    including the last few, where the closing quote comes within reach."""
    vocab = _toy_vocab()
    cg = CompiledGrammar(constrain.grammar('start: "<" S ">"\nS: /"[a-z ]{0,80}"/'), vocab)
    m = cg.matcher()
    m.advance_bytes(b"<")
    text = b'"' + b"ab c" * 20
    for i in range(len(text)):
        m.advance_bytes(text[i : i + 1])
        _compare(m, f"after {i + 1} bytes of the string")
    m.advance_bytes(b'">')
    _compare(m, "after the string")
    assert m.is_accepting()
    # 81 positions inside the string; without classes every one would be a root walk
    assert cg.stats["walks"] < 30, cg.stats


def test_a_big_automaton_is_numbered_only_once_walks_from_many_states_ask_for_it() -> None:
    """Numbering a big automaton's states costs ~states x rounds (17 ms for a 1,500-state
    pattern): it waits until walks from ``1 + states // 256`` states were asked for, with exact
    keys till then, and the masks are exact either way."""
    from constrain.engine import cfg_matcher

    vocab = _toy_vocab()
    cg = CompiledGrammar(constrain.grammar('start: "<" S ">"\nS: /"[a-z ]{0,700}"/'), vocab)
    m = cg.matcher()
    m.advance_bytes(b"<")
    t = cg.parser.term_index["S"]
    d = cg.parser.dfa(t)
    ck_d = (d.digest, vocab.trie.max_depth)
    need = 1 + d.n_states // 256
    assert need >= 2
    text = b'"' + b"ab c" * 5
    for i in range(len(text)):
        m.advance_bytes(text[i : i + 1])
        _compare(m, f"after {i + 1} bytes of the string")
        numbered = ck_d in cfg_matcher._SHARED_CLASSES
        assert numbered == (i + 1 >= need), (i, need)
    m.advance_bytes(b'">')
    _compare(m, "after the string")


def test_split_entries_cap_their_leaf_test_products_and_stay_exact(monkeypatch) -> None:
    """With entries walked apart a product lexer only answers _subtree's leaf test, so it is
    capped lower (SPLIT_PRODUCT_MAX); past the cap the subtree is walked entry by entry."""
    from constrain.engine import cfg_matcher

    monkeypatch.setattr(cfg_matcher, "SPLIT_PRODUCT_MAX", 3)
    cg = CompiledGrammar(_grammar("json"), _toy_vocab(), max_lexer_states=50_000)
    assert cg._product_cap == 3
    _random_walks(cg, random.Random(6), 4, 12, "capped products")
    # (None: over the cap; counted in split_lexers only where built, not when another
    # grammar with the same cap already found it too big)
    assert any(lx is None for lx in cg._lexers.values())
