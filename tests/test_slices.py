"""Token slices (constrain.engine.slices): a tiered walk equals the full walk, exactly."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from constrain.automata.regex import regex_to_dfa
from constrain.engine import cfg_kernels
from constrain.engine.slices import BODY_CLASSES, STRING_BODY, TokenSlices, reference_safe_depth, safe_depth
from constrain.vocab import Vocabulary

# one byte of each kind the body DFA tells apart: ASCII (space sorts before the quote, so
# rest-trie node numbers differ from the full trie's), quote, backslash, control, a 2-byte
# lead, a continuation, E0's restricted second byte range, a byte never in UTF-8
ALPHA = bytes([0x20, 0x61, 0x22, 0x5C, 0x0A, 0xC3, 0xA9, 0xE0, 0x85, 0xFF])
IDENT = np.arange(256, dtype=np.intp)


@st.composite
def dfa_case(draw):
    n = draw(st.integers(1, 5))
    table = np.full((n, 256), -1, dtype=np.int32)
    for s in range(n):
        for b in ALPHA:
            # mostly live transitions, so deep safe depths occur
            table[s, b] = draw(st.one_of(st.integers(0, n - 1), st.just(-1)))
    accept = np.array([draw(st.integers(0, 3)) == 0 for _ in range(n)], dtype=np.bool_)
    return table, accept, draw(st.integers(0, n - 1))


@settings(max_examples=300, deadline=None)
@given(dfa_case(), st.integers(0, 6))
def test_safe_depth_matches_the_definition(case, cap) -> None:
    table, accept, start = case
    fast = safe_depth(table, IDENT, accept, start, STRING_BODY, BODY_CLASSES, cap)
    assert fast == reference_safe_depth(table, IDENT, accept, start, STRING_BODY, cap)


def test_safe_depth_with_byte_classes() -> None:
    """A table with one column per byte class gives what its 256-column expansion gives."""
    dfa = regex_to_dfa(r'[^"\\\x00-\x1f]{0,5}"')
    full = np.ascontiguousarray(dfa.table, dtype=np.int32)
    cols, cls = np.unique(full, axis=1, return_inverse=True)
    cls = cls.reshape(-1).astype(np.intp)
    acc = np.asarray(dfa.accepting, dtype=np.bool_)
    for q in range(len(full)):
        a = safe_depth(np.ascontiguousarray(cols, dtype=np.int32), cls, acc, q, STRING_BODY, BODY_CLASSES, 9)
        assert a == safe_depth(full, IDENT, acc, q, STRING_BODY, BODY_CLASSES, 9)
    # 5 characters left, then only the quote: 4 bytes safe (the 5th may be followed by `"`
    # only, but the 5th byte itself is still inside), i.e. strings of <= 5 bytes stay inside
    assert safe_depth(full, IDENT, acc, dfa.start, STRING_BODY, BODY_CLASSES, 9) == 5


def _tiered_walk(sl: TokenSlices, table, accept, start, vocab):
    tier = sl.pick(table, IDENT, accept, start)
    n = len(vocab)
    out = np.zeros((n + 31) // 32, dtype=np.uint32)
    trie = vocab.trie if tier is None else tier.trie
    cap = 4 * vocab.trie.n_nodes + 8
    bn = np.empty(cap, dtype=np.int32)
    bs = np.empty(cap, dtype=np.int32)
    roots = np.zeros(1, dtype=np.int32)
    nb = cfg_kernels.lexer_walk(
        table, IDENT, accept, start, roots, trie.byte, trie.depth, trie.next, trie.tok_start,
        trie.tok_end, trie.tokens, trie.tok1, trie.max_depth, out, bn, bs,
    )  # fmt: skip
    nodes = bn[:nb]
    if tier is not None:
        out |= tier.words
        nodes = tier.node_map[nodes]
    bits = np.unpackbits(out.view(np.uint8), bitorder="little")[:n].astype(bool)
    return tier, bits, Counter(zip(nodes.tolist(), bs[:nb].tolist(), strict=True))


@st.composite
def vocab_case(draw):
    toks = draw(st.lists(st.binary(min_size=1, max_size=5).map(lambda x: bytes(ALPHA[c % len(ALPHA)] for c in x)),
                         min_size=1, max_size=40))  # fmt: skip
    return Vocabulary.from_token_bytes(list(dict.fromkeys(toks)))


@settings(max_examples=150, deadline=None)
@given(vocab_case(), dfa_case())
def test_tiered_walk_equals_the_reference_walk(vocab, case) -> None:
    table, accept, _ = case
    sl = TokenSlices(vocab, tiers=(1, 2, None))
    for q in range(len(table)):
        _, bits, bnd = _tiered_walk(sl, table, accept, q, vocab)
        allowed, ref = cfg_kernels.reference_walk(table, accept, q, np.zeros(1, np.int32), vocab.trie, len(vocab))
        assert (bits == allowed).all()
        assert bnd == Counter(ref)


def test_tiers_are_used_inside_strings() -> None:
    """On a string terminal the cheap tiers really are picked, and results still agree."""
    toks = [b" ", b"!!", b"a", b"ab", b"abc", b'"', b'a"', b'",', b"\xc3\xa9", b"\xc3", b"\xa9x", b"\\n", b"abcdefgh", b"x" * 12]
    vocab = Vocabulary.from_token_bytes(toks)
    sl = TokenSlices(vocab, tiers=(2, 4, None))
    used = set()
    for pattern in (r'"[^"\\\x00-\x1f]*"', r'"[^"\\\x00-\x1f]{0,6}"', r'"(ab|[^"\\\x00-\x1f]{3,20})"'):
        dfa = regex_to_dfa(pattern)
        table = np.ascontiguousarray(dfa.table, dtype=np.int32)
        acc = np.asarray(dfa.accepting, dtype=np.bool_)
        for q in range(len(table)):
            tier, bits, bnd = _tiered_walk(sl, table, acc, q, vocab)
            allowed, ref = cfg_kernels.reference_walk(table, acc, q, np.zeros(1, np.int32), vocab.trie, len(vocab))
            assert (bits == allowed).all(), (pattern, q)
            assert bnd == Counter(ref), (pattern, q)
            if tier is not None:
                used.add(tier.limit)
    assert used == {2, 4, 12}


SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "note": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}},
    },
    "additionalProperties": {"type": "integer"},
}


def test_llama3_masks_with_and_without_slices_agree(llama3_vocab) -> None:
    import constrain
    from constrain.engine.cfg_matcher import CompiledGrammar

    spec = constrain.json_schema(SCHEMA)
    text = json.dumps({"name": "Zoë the 3rd", "note": "a longer note, with \"quotes\"", "tags": ["x", "abcdef"], "zz": 4})
    ids = llama3_vocab.encode(text)
    grammars = []
    for slices in (True, False):
        cg = constrain.compile(spec, llama3_vocab)
        if not isinstance(cg, CompiledGrammar):
            pytest.skip("schema did not compile to a grammar")
        cg.slices = slices
        grammars.append(cg)
    # fresh walk caches for both, or the second would reuse the first's walks
    from constrain.engine import cfg_matcher

    ms = []
    for cg in grammars:
        cfg_matcher._SHARED_JOBS.pop(llama3_vocab, None)
        cg._jobs = cfg_matcher._SHARED_JOBS.setdefault(llama3_vocab, cfg_matcher.OrderedDict())
        ms.append(cg.matcher())
    for i, t in enumerate([*ids, None]):
        a, b = (m.mask() for m in ms)
        assert (a == b).all(), f"mask {i} differs"
        if t is not None:
            for m in ms:
                m.advance(t)
    assert grammars[0].stats["slice_walks"] > 0
    assert grammars[1].stats["slice_walks"] == 0
