"""Byte-level automata: regexes compiled to trimmed byte DFAs, with bounded products."""

from constrain.automata.bytedfa import ByteDFA
from constrain.automata.regex import Regex, clear_cache, regex, regex_to_dfa

__all__ = ["ByteDFA", "Regex", "clear_cache", "regex", "regex_to_dfa"]
