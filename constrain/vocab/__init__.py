"""Vocabulary layer: exact token bytes and the byte trie (the first layer of the data flow)."""

from constrain.vocab.trie import TokenTrie
from constrain.vocab.vocabulary import Vocabulary

__all__ = ["TokenTrie", "Vocabulary"]
