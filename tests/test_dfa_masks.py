"""DFA masks: the Numba kernels against the pure-Python references, and the Matcher contract."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import constrain
from constrain.automata import ByteDFA
from constrain.engine import kernels, reference
from constrain.engine.dfa_matcher import CompiledDFA
from constrain.engine.matcher import allocate_bitmask, bitmask_to_bool, bool_to_bitmask
from constrain.errors import InvalidTokenError, TokenOutOfRange
from constrain.vocab import Vocabulary
from tests.conftest import vocab_for
from tests.regex_corpus import REGEXES

# ---- kernels vs references on random automata and toy vocabularies -------------------------


@st.composite
def random_dfa(draw):
    n = draw(st.integers(1, 6))
    alphabet = draw(st.lists(st.integers(0, 255), min_size=1, max_size=4, unique=True))
    table = np.full((n, 256), -1, dtype=np.int32)
    for s in range(n):
        for b in alphabet:
            if draw(st.booleans()):
                table[s, b] = draw(st.integers(0, n - 1))
    acc = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    return ByteDFA(table, acc, 0), alphabet


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_fill_mask_kernel_matches_reference(data):
    dfa, alphabet = data.draw(random_dfa())
    if dfa.is_empty():
        return
    toks = data.draw(
        st.lists(st.one_of(st.none(), st.binary(min_size=1, max_size=4)), min_size=1, max_size=50)
    )
    toks = [None if t is None else bytes(alphabet[b % len(alphabet)] for b in t) for t in toks]
    vocab = Vocabulary.from_token_bytes(toks)
    state = data.draw(st.integers(0, dfa.n_states - 1))
    out = np.zeros((len(vocab) + 31) // 32, dtype=np.uint32)
    tr = vocab.trie
    kernels.dfa_fill_mask(
        dfa.table, state, tr.byte, tr.depth, tr.next, tr.tok_start, tr.tok_end, tr.tokens, tr.tok1, tr.max_depth, out
    )
    got = bitmask_to_bool(out.view(np.int32), len(vocab))
    np.testing.assert_array_equal(got, reference.dfa_mask(dfa, vocab, state))
    # the run kernel and the full-index kernel agree with ByteDFA.run
    lens = [len(t or b"") for t in toks]
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    blob = np.frombuffer(b"".join(t or b"" for t in toks) or b"\0", dtype=np.uint8)[: offsets[-1]]
    targets = np.zeros(len(toks), dtype=np.int32)
    kernels.dfa_token_targets(dfa.table, state, offsets, blob, targets)
    for i, t in enumerate(toks):
        want = dfa.run(state, t) if t else -1
        assert targets[i] == want
        if t:
            assert kernels.dfa_run(dfa.table, state, np.frombuffer(t, dtype=np.uint8)) == want


@settings(max_examples=100, deadline=None)
@given(st.lists(st.booleans(), min_size=0, max_size=100))
def test_bitmask_packing_roundtrip(bits):
    mask = np.array(bits, dtype=bool)
    np.testing.assert_array_equal(bitmask_to_bool(bool_to_bitmask(mask), len(mask)), mask)


# ---- real vocabularies: fill_mask == brute force at random reachable states ------------------


def _reachable_states(pattern: str, vocab: Vocabulary, rng: random.Random, n: int):
    """Matchers at random token boundaries of random valid strings."""
    compiled = constrain.compile(constrain.regex(pattern), vocab)
    out = []
    for _ in range(n):
        text = compiled.dfa.random_string(rng).decode()
        assert compiled.dfa.accepts(text)
        m = compiled.matcher()
        ids = vocab.encode(text)
        for t in ids[: rng.randint(0, len(ids))]:
            m.advance(t)
        out.append(m)
    return compiled, out


@pytest.mark.parametrize("vocab_name", ["llama3", "llama2"])
def test_fill_mask_equals_brute_force_on_real_vocab(vocab_name):
    vocab = vocab_for(vocab_name)
    rng = random.Random(1234)
    patterns = rng.sample(REGEXES, 8) + [r'"([^"\\]|\\.)*"', r"[\u4e00-\u9fff]{1,4}"]
    for pattern in patterns:
        compiled, matchers = _reachable_states(pattern, vocab, rng, 2)
        for m in matchers:
            bm = allocate_bitmask(len(vocab))
            m.fill_mask(bm)
            got = bitmask_to_bool(bm, len(vocab))
            want = reference.matcher_mask_by_checks(m)
            np.testing.assert_array_equal(got, want, err_msg=pattern)
            # the text-only part also equals the raw reference walk of the DFA
            text_only = got.copy()
            text_only[list(vocab.eos_token_ids)] = False
            np.testing.assert_array_equal(text_only, reference.dfa_mask(compiled.dfa, vocab, m.state))
            for t in rng.sample(range(len(vocab)), 300) + list(vocab.eos_token_ids):
                assert m.check(t) == got[t]


def test_fill_mask_with_a_small_lru_cache(llama3_vocab):
    """With fewer cache slots than states, masks are evicted and recomputed: every fill still
    equals the reference walk, whichever fast path (dense copy, sparse scatter) wrote it."""
    vocab = llama3_vocab
    dfa = constrain.regex(r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])").dfa
    rng = random.Random(7)
    for slots in (2, 5, 64):
        compiled = CompiledDFA(dfa, vocab, cache_states=slots, precompute=False)
        for _ in range(6):
            text = dfa.random_string(rng).decode()
            m = compiled.matcher()
            for t in vocab.encode(text) + [vocab.eos_token_ids[0]]:
                bm = np.full(compiled.words, -1, dtype=np.int32)  # garbage the fill must overwrite
                m.fill_mask(bm)
                got = bitmask_to_bool(bm, len(vocab))
                np.testing.assert_array_equal(got, reference.matcher_mask_by_checks(m))
                assert len(compiled._cache) <= slots and len(compiled._writer) <= slots  # memory stays bounded
                m.advance(t)


def test_matcher_contract_on_llama3(llama3_vocab):
    vocab = llama3_vocab
    eos = vocab.eos_token_ids[0]
    compiled = constrain.compile(constrain.regex(r"\d{3}-\d{4}"), vocab)
    m = compiled.matcher()
    assert not m.check(eos) and not m.is_accepting()
    with pytest.raises(TokenOutOfRange):
        m.check(len(vocab))
    with pytest.raises(TokenOutOfRange):
        m.advance(-1)
    with pytest.raises(InvalidTokenError):
        m.advance(vocab.encode("x")[0])
    ids = vocab.encode("555-1234")
    for t in ids:
        assert m.check(t)
        m.advance(t)
    assert m.is_accepting() and m.check(eos) and m.mask()[eos]
    assert m.shortest_completion_bytes() == 0
    fork = m.copy()
    m.advance(eos)
    assert m.is_terminated() and not m.mask().any() and not m.check(eos)
    m.rollback(1)
    assert not m.is_terminated() and m.is_accepting()
    m.rollback(len(ids))
    assert m.num_tokens() == 0 and m.shortest_completion_bytes() == 8
    assert fork.num_tokens() == len(ids) and fork.is_accepting()
    assert m.accepts_text("123-4567") and not m.accepts_text("123-456")
    assert m.num_tokens() == 0  # accepts_text leaves the state alone
    with pytest.raises(ValueError):
        m.rollback(1)
    # special tokens other than EOS are never allowed
    bos = vocab_for("llama3").bos_token_id
    assert bos is not None and not m.check(bos)


def test_compile_rejects_ambiguous_input(llama3_vocab):
    with pytest.raises(constrain.ConstrainError):
        constrain.compile(r"\d+", llama3_vocab)
    with pytest.raises(constrain.ConstrainError):
        constrain.compile(ByteDFA.empty(), llama3_vocab)  # empty language: nothing can satisfy it
    with pytest.raises(TypeError):
        constrain.compile(constrain.regex("a"), object())
