"""Exact token bytes on the five real tokenizers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from constrain.errors import VocabularyError
from constrain.vocab import TokenTrie, Vocabulary
from tests.conftest import TOKENIZERS, hf_tokenizer, vocab_for

TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)),
    max_size=40,
)


@pytest.mark.parametrize("name", TOKENIZERS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXT)
def test_hf_encoding_reproduces_text_bytes(name, text):
    """tok.encode(text), minus its known BOS / dummy-prefix artefacts, is the text's bytes."""
    tok = hf_tokenizer(name)
    vocab = vocab_for(name)
    specials = [t for t in tok.all_special_tokens if t]
    if any(s in text for s in specials):
        return  # the tokenizer maps special-token spellings to control ids by design
    if vocab.kind == "sentencepiece" and "\u2581" in text:
        return  # SentencePiece reads a literal U+2581 as its space marker (lossy by design)
    norm = getattr(getattr(tok, "backend_tokenizer", None), "normalizer", None)
    if norm is not None and vocab.kind != "sentencepiece" and norm.normalize_str(text) != text:
        return  # the tokenizer normalises first (qwen2: NFC turns U+F900 into U+8C48) by design
    assert vocab.text_of_hf_encoding(tok.encode(text), text) == text.encode("utf-8")


@pytest.mark.parametrize("name", TOKENIZERS)
@settings(max_examples=150, deadline=None)
@given(text=TEXT)
def test_exact_encode_roundtrips_everything(name, text):
    vocab = vocab_for(name)
    ids = vocab.encode(text)
    assert vocab.decode_bytes(ids) == text.encode("utf-8")
    assert all(not vocab.is_special(i) for i in ids)


@pytest.mark.parametrize("name", TOKENIZERS)
def test_known_artifacts(name):
    vocab = vocab_for(name)
    expected = {
        "gpt2": (False, "none"),
        "llama3": (False, "none"),
        "qwen2": (False, "none"),
        "llama2": (True, "if-absent"),
        "phi3": (True, "always"),
    }[name]
    assert (vocab.adds_bos, vocab.prefix_space) == expected
    assert vocab.eos_token_ids and all(vocab.is_special(e) for e in vocab.eos_token_ids)
    # every single byte is representable: needed for exactness and budget-aware completion
    singles = {vocab.token_bytes(t) for t in range(len(vocab)) if len(vocab.token_bytes(t)) == 1}
    assert len(singles) == 256


def test_sentencepiece_byte_fallback_tokens():
    vocab = vocab_for("llama2")
    tok = hf_tokenizer("llama2")
    assert vocab.token_bytes(tok.convert_tokens_to_ids("<0x0A>")) == b"\n"
    assert vocab.token_bytes(tok.convert_tokens_to_ids("\u2581the")) == b" the"


def test_cache_roundtrip_matches_fresh_build(tmp_path, monkeypatch):
    monkeypatch.setenv("CONSTRAIN_CACHE", str(tmp_path))
    tok = hf_tokenizer("gpt2")
    fresh = Vocabulary.from_hf(tok, use_cache=False)
    Vocabulary.from_hf(tok, use_cache=True)  # writes the disk cache
    import constrain.vocab.vocabulary as vv

    vv._MEMORY.clear()
    cached = Vocabulary.from_hf(tok, use_cache=True)
    assert list(tmp_path.glob("vocab-*.npz"))
    assert cached.all_token_bytes == fresh.all_token_bytes
    for k, a in fresh.trie.arrays().items():
        np.testing.assert_array_equal(a, cached.trie.arrays()[k], err_msg=k)


def test_vocab_size_padding_and_errors():
    tok = hf_tokenizer("gpt2")
    v = Vocabulary.from_hf(tok, vocab_size=50304, use_cache=False)
    assert len(v) == 50304 and v.is_special(50300)
    with pytest.raises(VocabularyError):
        Vocabulary.from_hf(tok, vocab_size=10, use_cache=False)
    with pytest.raises(VocabularyError):
        Vocabulary.from_token_bytes([b"a", "b"])  # type: ignore[list-item]
    with pytest.raises(VocabularyError):
        Vocabulary.from_token_bytes([b"a"], eos_token_ids=(5,))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=5), min_size=1, max_size=40))
def test_trie_preorder_invariants(tokens):
    trie = TokenTrie.build(tokens)
    # reconstruct each node's byte path and check every token sits at the node of its bytes
    path: list[bytes] = [b""]
    for i in range(1, trie.n_nodes):
        d = trie.depth[i]
        prefix = path[_parent_index(trie, i)]
        path.append(prefix + bytes([trie.byte[i]]))
        assert len(path[i]) == d
    seen = {}
    for i in range(trie.n_nodes):
        for k in range(trie.tok_start[i], trie.tok_end[i]):
            seen[int(trie.tokens[k])] = path[i]
        assert trie.next[i] > i
        for j in range(i + 1, trie.next[i]):
            assert path[j].startswith(path[i])
    assert seen == {i: b for i, b in enumerate(tokens)}


def _parent_index(trie: TokenTrie, i: int) -> int:
    d = trie.depth[i]
    j = i - 1
    while trie.depth[j] != d - 1:
        j -= 1
    return j


def test_from_pretrained_cache_hit_skips_transformers(tmp_path):
    """A cached vocabulary loads from its files' hash without building the HF tokenizer."""
    import subprocess
    import sys

    from tests.conftest import shared_dir

    path = shared_dir() / "tokenizers" / "gpt2"
    if not path.exists():
        pytest.skip(f"no tokenizer at {path}")
    code = (
        "import sys; from constrain.vocab import Vocabulary; "
        f"v = Vocabulary.from_pretrained({str(path)!r}); "
        "print(len(v), 'transformers' in sys.modules, v.encode('hi there') == [5303, 612])"
    )
    env = {**__import__("os").environ, "CONSTRAIN_CACHE": str(tmp_path)}
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert first.stdout.split() == ["50257", "True", "True"]
    assert second.stdout.split() == ["50257", "False", "True"]
