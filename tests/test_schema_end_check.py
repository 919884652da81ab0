"""An over-approximated schema's matcher allows EOS only where the text validates.

The grammar of ``uniqueItems`` (and of overlapping ``oneOf`` branches, ...) accepts some
invalid documents; the compiled matcher consults the schema's validator before EOS, so an
invalid document is never finished -- in masks, checks, advances, peeks, ``is_accepting`` and
``accepts_text`` alike -- while rollback and copies keep the text it validates right.
"""

from __future__ import annotations

import json
import pickle
import warnings

import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import constrain
from constrain.errors import ConstrainError, InvalidTokenError
from constrain.schema.validate import EndValidator
from constrain.vocab import Vocabulary

BYTES = Vocabulary.from_token_bytes([bytes([i]) for i in range(256)] + [None], eos_token_ids=(256,))
EOS = 256
UNIQUE = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 3}, "uniqueItems": True}
ONE_OF = {"oneOf": [{"type": "integer", "multipleOf": 2}, {"type": "integer", "multipleOf": 3}]}


def _compile(schema, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = constrain.json_schema(schema)
    assert spec.warnings  # (these schemas are over-approximated: the point of the test)
    return constrain.compile(spec, BYTES, **kw)


def _feed(m, text: str) -> None:
    for b in text.encode():
        m.advance(b)


def _eos_bit(m) -> bool:
    words = np.zeros(-(-len(BYTES) // 32), dtype=np.int32)
    m.fill_mask(words)
    return bool((int(words[EOS >> 5]) >> (EOS & 31)) & 1)


@pytest.mark.parametrize(
    "schema, text, valid",
    [
        (UNIQUE, "[1,2]", True),
        (UNIQUE, "[1,1]", False),
        (UNIQUE, "[0, 3, 0]", False),
        (ONE_OF, "4", True),
        (ONE_OF, "6", False),  # (both branches: not exactly one)
        (ONE_OF, "9", True),
    ],
)
def test_eos_follows_the_validator(schema, text, valid):
    assert jsonschema.Draft202012Validator(schema).is_valid(json.loads(text)) == valid
    compiled = _compile(schema)
    m = compiled.matcher()
    _feed(m, text)
    assert m.compiled.parser.accepting(m.pos)  # (the grammar itself accepts the text either way)
    assert _eos_bit(m) == valid and m.check(EOS) == valid and m.is_accepting() == valid
    assert (m.peek(EOS) is True) == valid
    assert compiled.matcher().accepts_text(text) == valid
    if valid:
        m.advance(EOS)
        assert m.is_terminated()
    else:
        with pytest.raises(InvalidTokenError):
            m.advance(EOS)
    # the grammar alone, as before
    g = _compile(schema, validate_end=False).matcher()
    _feed(g, text)
    assert _eos_bit(g) and g.check(EOS) and g.texts is None


def test_exact_schemas_carry_no_validator():
    spec = constrain.json_schema({"type": "array", "items": {"type": "integer"}})
    assert spec.exact and spec.end_check() is None
    m = constrain.compile(spec, BYTES).matcher()
    assert m.compiled.end_check is None and m.texts is None


@settings(max_examples=80, deadline=None)
@given(a=st.lists(st.integers(0, 3), max_size=4), b=st.lists(st.integers(0, 3), max_size=4))
def test_rollback_and_copy_keep_the_text(a, b):
    """Feed document ``a``, roll back to where ``b`` differs, feed the rest of ``b`` (and a copy
    of the matcher): EOS is allowed exactly where ``b`` validates."""
    m = _compile(UNIQUE).matcher()
    ta, tb = json.dumps(a), json.dumps(b)
    common = next((i for i, (x, y) in enumerate(zip(ta, tb, strict=False)) if x != y), min(len(ta), len(tb)))
    _feed(m, ta)
    m.rollback(len(ta) - common)
    _feed(m, tb[common:])
    c = m.copy()
    want = jsonschema.Draft202012Validator(UNIQUE).is_valid(b)
    assert m.check(EOS) == want and c.check(EOS) == want and _eos_bit(c) == want
    assert c.texts == m.texts and c.texts is not m.texts and b"".join(m.texts) == tb.encode()


def test_samplers_never_finish_an_invalid_document():
    """A random tiny model under uniqueItems with every sampler: each finished output
    validates (a row that can only end invalid is a dead end, reported as such)."""
    from constrain.sampling import run
    from constrain.sampling.toy import NGramLM, ToyDecoder

    compiled = _compile(UNIQUE)
    lm = NGramLM.random(len(BYTES), np.random.default_rng(0), alpha=0.3)
    v = jsonschema.Draft202012Validator(UNIQUE)
    finished = 0
    for method in ("lcd", "awrs", "smc"):
        for seed in range(6):
            try:
                r = run(ToyDecoder(lm), compiled, method=method, n=4, max_new_tokens=16, seed=seed)
            except ConstrainError:
                continue
            for p in r.particles:
                if p.alive and p.finished:
                    finished += 1
                    assert v.is_valid(json.loads(p.text))
    assert finished > 10


def test_validator_edge_cases():
    ev = EndValidator({"type": "array", "uniqueItems": True}, "2020-12")
    assert ev(b"[1, 2]") and not ev(b"[1, 1]")
    assert not ev(b"[1, ")  # not JSON: never valid
    back = pickle.loads(pickle.dumps(ev))
    assert back(b"[3]") and not back(b"[3,3]")
    # a schema it cannot evaluate leaves the grammar's verdict alone
    remote = EndValidator({"$ref": "https://example.invalid/none.json"}, "2020-12")
    assert remote(b"[1, 1]") and remote(b"{}")
    # the draft decides keyword meaning: draft 4's boolean exclusiveMaximum
    d4 = EndValidator({"type": "integer", "maximum": 3, "exclusiveMaximum": True}, "4")
    assert d4(b"2") and not d4(b"3")


def test_formats_are_asserted_at_the_end_when_the_schema_asserts_them():
    """``format: uri-reference`` is an unknown format to the grammar (any string, warned): with
    ``assert_format`` (the default) the end check asserts it with jsonschema's checker, without
    it the format stays an annotation."""
    schema = {"type": "string", "format": "uri-reference"}
    for assert_format, want in ((True, False), (False, True)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spec = constrain.json_schema(schema, assert_format=assert_format)
        compiled = constrain.compile(spec, BYTES)
        assert compiled.matcher().accepts_text('"a/b?c#d"')
        assert compiled.matcher().accepts_text('"a b"') == want  # (a space: not a URI reference)


def test_the_validator_is_loaded_at_compile_time():
    """Its load (and the schema's patterns compiled into ``re``'s cache) is compile work, not a
    cost of the first mask that meets an accepting state."""
    import re

    schema = {**UNIQUE, "items": {"type": "string", "pattern": "^(q[a-z]{2}z)+$"}}
    m = _compile(schema).matcher()
    assert m.compiled.end_check._validator is not None
    re.purge()
    ev = EndValidator(schema, "2020-12")
    ev.prepare()
    assert ev._validator is not None
    cache = getattr(re, "_cache", None)  # (a CPython detail: checked where it exists)
    if isinstance(cache, dict):
        assert "^(q[a-z]{2}z)+$" in {k[1] for k in cache}
    assert ev(b'["qabz"]') and not ev(b'["qabz", "qabz"]')
    # a schema the validator cannot load is left to the first check (which answers True)
    bad = EndValidator({"type": "array", "pattern": "("}, "2020-12")
    bad.prepare()
    assert bad(b"[1]")
