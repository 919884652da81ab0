"""Shared fixtures: real tokenizers from the shared data folder (skipped when absent)."""

from __future__ import annotations

import functools

import pytest

from constrain._data import shared_dir

TOKENIZERS = ["gpt2", "llama3", "qwen2", "llama2", "phi3"]


@functools.cache
def hf_tokenizer(name: str):
    path = shared_dir() / "tokenizers" / name
    if not (path / "tokenizer.json").exists():
        pytest.skip(f"tokenizer {name!r} not found under {path} (set CONSTRAIN_SHARED)")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


@functools.cache
def vocab_for(name: str):
    from constrain.vocab import Vocabulary

    return Vocabulary.from_hf(hf_tokenizer(name))


@pytest.fixture(scope="session")
def llama3_vocab():
    return vocab_for("llama3")


@pytest.fixture(scope="session")
def llama2_vocab():
    return vocab_for("llama2")
