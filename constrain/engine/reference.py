"""Slow, obviously correct references for every kernel: the oracles of the hypothesis tests."""

from __future__ import annotations

import numpy as np

from constrain.automata.bytedfa import ByteDFA
from constrain.engine.matcher import Matcher, bool_to_bitmask
from constrain.vocab import Vocabulary


def dfa_mask(dfa: ByteDFA, vocab: Vocabulary, state: int) -> np.ndarray:
    """Bool mask by running every token's bytes through the DFA, one by one (no trie, no EOS)."""
    out = np.zeros(len(vocab), dtype=bool)
    for t in range(len(vocab)):
        b = vocab.token_bytes(t)
        if b and dfa.run(state, b) >= 0:
            out[t] = True
    return out


def dfa_bitmask(dfa: ByteDFA, vocab: Vocabulary, state: int) -> np.ndarray:
    return bool_to_bitmask(dfa_mask(dfa, vocab, state))


def matcher_mask_by_checks(m: Matcher) -> np.ndarray:
    """Bool mask of any matcher from its byte-level prefix test, token by token.

    Independent of the matcher's own mask path: uses ``accepts_prefix_bytes`` for text
    tokens and ``is_accepting`` for EOS.
    """
    vocab = m.vocab
    out = np.zeros(len(vocab), dtype=bool)
    if m.is_terminated():
        return out
    for t in range(len(vocab)):
        b = vocab.token_bytes(t)
        if t in vocab.eos_token_ids:
            out[t] = m.is_accepting()
        elif b:
            out[t] = m.accepts_prefix_bytes(b)
    return out
