"""The MaskBench protocol (runner) on toy engines, and the peer adapters on a real tokenizer."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pytest

from constrain.cli.jsb.data import Instance, SchemaCase
from constrain.cli.jsb.engines import Adapter, CompileError, bit, parse_engines
from constrain.cli.jsb.runner import evaluate, prepare_instances

# a toy vocabulary: every printable ASCII byte, a few multi-byte tokens, EOS last
TOY_TOKENS = [bytes([b]) for b in range(32, 127)] + [b'{"', b'":', b"true", b"null", b"12"]


def toy_vocab():
    from constrain.vocab import Vocabulary

    return Vocabulary.from_token_bytes([*TOY_TOKENS, None], eos_token_ids=[len(TOY_TOKENS)])


class RegexEnumAdapter(Adapter):
    """constrain's DFA engine on schemas that are an ``enum`` (turned into an exact regex)."""

    name = "toy"

    def __init__(self, vocab: Any) -> None:
        self._vocab = vocab

    @property
    def vocab(self) -> Any:  # type: ignore[override]
        return self._vocab

    def load(self) -> None:
        from constrain.engine.matcher import allocate_bitmask

        self._bitmask = allocate_bitmask(len(self._vocab))

    def compile(self, schema: Any) -> Any:
        import constrain

        if "enum" not in schema:
            raise CompileError("only enum schemas")
        alts = "|".join(re.escape(json.dumps(v, separators=(",", ":"))) for v in schema["enum"])
        return constrain.compile(constrain.regex(f"({alts})"), self._vocab)

    def matcher(self, compiled: Any) -> Any:
        return compiled.matcher()

    def fill(self, m: Any) -> np.ndarray:
        m.fill_mask(self._bitmask)
        return self._bitmask

    def advance(self, m: Any, token: int) -> bool:
        from constrain.errors import InvalidTokenError

        try:
            m.advance(token)
        except InvalidTokenError:
            return False
        return True


def run_case(adapter: Adapter, schema: Any, tests: list[tuple[Any, bool]]) -> dict:
    case = SchemaCase("S", "x", schema, [Instance(d, v) for d, v in tests])
    return evaluate(adapter, schema, prepare_instances(case, adapter.vocab))


@pytest.fixture(scope="module")
def toy() -> RegexEnumAdapter:
    a = RegexEnumAdapter(toy_vocab())
    a.load()
    return a


def test_correct_decisions_pass(toy: RegexEnumAdapter) -> None:
    schema = {"enum": [{"a": True}, 12, "hi"]}
    rec = run_case(
        toy, schema, [({"a": True}, True), (12, True), (1, False), ({"a": None}, False), ("hi!", False)]
    )
    assert rec["status"] == "ok" and rec["passed"], rec
    # a strict prefix of a member ("1" of "12") is refused at the end: EOS not allowed
    assert rec["instances"][2] == {"accepted": False, "at": 1, "why": "eos not allowed"}
    assert rec["instances"][4]["why"] == "masked"
    # one mask per token plus the final EOS check, for each instance decided at the end
    assert len(rec["mask_us"]) >= sum(
        len(toy.vocab.encode(json.dumps(v, separators=(",", ":")))) for v in [12, "hi"]
    )


def test_wrong_decisions_are_counted(toy: RegexEnumAdapter) -> None:
    # labels deliberately contradict the engine: a valid instance it refuses, an invalid one it accepts
    rec = run_case(toy, {"enum": ["x", "y"]}, [("z", True), ("y", False), ("x", True)])
    assert rec["status"] == "ok" and not rec["passed"]
    assert (rec["false_rejects"], rec["false_accepts"]) == (1, 1)


def test_compile_error_and_crash_are_recorded(toy: RegexEnumAdapter) -> None:
    rec = run_case(toy, {"type": "string"}, [("a", True)])
    assert rec["status"] == "compile_error" and "only enum" in rec["error"]

    class Broken(RegexEnumAdapter):
        def fill(self, m: Any) -> np.ndarray:
            raise KeyError("engine bug")

    b = Broken(toy.vocab)
    b.load()
    rec = run_case(b, {"enum": [1]}, [(1, True)])
    assert rec["status"] == "crash" and "engine bug" in rec["error"]


def test_constrain_adapter_reports_missing_layer_as_compile_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import constrain
    from constrain.cli.jsb.engines import ConstrainAdapter

    a = ConstrainAdapter.__new__(ConstrainAdapter)  # no tokenizer needed for this path
    a.__dict__["vocab"] = toy_vocab()

    def missing(schema: Any, **options: Any) -> Any:
        raise ModuleNotFoundError("No module named 'constrain.schema.compiler'")

    monkeypatch.setattr(constrain, "json_schema", missing, raising=False)
    with pytest.raises(CompileError, match="layer missing: ModuleNotFoundError"):
        a.compile({"type": "integer"})


def test_strict_adapter_declines_what_it_would_approximate() -> None:
    """constrain-strict: declared coverage -- a schema compiled loosely by 'constrain' (uniqueItems
    over free strings) is a compile error naming the keyword, an exact one compiles."""
    from constrain.cli.jsb.engines import ConstrainAdapter, ConstrainStrictAdapter, parse_engines

    loose = {"type": "array", "items": {"type": "string"}, "uniqueItems": True}
    for cls in (ConstrainAdapter, ConstrainStrictAdapter):
        a = cls.__new__(cls)
        a.__dict__["vocab"] = toy_vocab()
        a.compile({"type": "integer"})
        if cls is ConstrainStrictAdapter:
            with pytest.raises(CompileError, match="uniqueItems"):
                a.compile(loose)
        else:
            a.compile(loose)
    assert parse_engines("constrain,constrain-strict") == ["constrain", "constrain-strict"]


def test_parse_engines() -> None:
    assert parse_engines("llguidance, constrain,llguidance") == ["llguidance", "constrain"]
    with pytest.raises(ValueError, match="unknown engine"):
        parse_engines("constrain,vllm")


def test_bit_reads_int32_layout() -> None:
    words = np.zeros(2, dtype=np.int32)
    words[1] = np.int32(-(2**31))  # bit 31 of word 1 = token 63
    assert bit(words, 63) and not bit(words, 62) and not bit(words, 31)


# ---- peers on a real tokenizer -------------------------------------------------------------


@pytest.fixture(scope="module")
def gpt2_dir():
    from constrain._data import tokenizer_path
    from constrain.errors import DataNotFound

    try:
        return tokenizer_path("gpt2")
    except DataNotFound as exc:
        pytest.skip(f"shared tokenizers not available: {exc}")


SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
TESTS = [
    ({"name": "Ann", "age": 3}, True),
    ({"name": "Bob", "age": 1.5}, False),
    ({"name": "Ann"}, False),
    ({"name": 5, "age": 3}, False),
]


@pytest.mark.parametrize("engine", ["llguidance", "xgrammar", "outlines"])
def test_peer_adapters_follow_the_protocol(engine: str, gpt2_dir) -> None:
    pytest.importorskip(
        {"llguidance": "llguidance", "xgrammar": "xgrammar", "outlines": "outlines_core"}[engine]
    )
    from constrain.cli.jsb.engines import ADAPTERS

    a = ADAPTERS[engine](gpt2_dir)
    a.load()
    rec = run_case(a, SCHEMA, TESTS)
    assert rec["status"] == "ok", rec
    assert rec["passed"], rec["instances"]
    assert rec["compile_s"] > 0 and all(x >= 0 for x in rec["mask_us"])
    with pytest.raises(CompileError):
        a.compile({"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}, "required": ["a"]})


def test_an_unsatisfiable_schema_rejects_everything_rather_than_failing_to_compile() -> None:
    """Every required key makes every oneOf branch hold, so no object is valid (JSONSchemaBench
    Glaiveai2K calculate_area_*): constrain proves the language empty, and the runner scores it
    as a matcher that rejects all -- passing when the data has no valid instance, a false
    reject for each valid one otherwise; never a compile error."""
    from constrain.cli.jsb.engines import ConstrainAdapter

    a = ConstrainAdapter.__new__(ConstrainAdapter)
    a.__dict__["vocab"] = toy_vocab()
    a.load()
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
        "oneOf": [{"required": ["a"]}, {"required": ["b"]}],
    }
    rec = run_case(a, schema, [({"a": 1, "b": 2}, False)])
    assert rec["status"] == "ok" and rec["passed"] and rec["instances"][0]["why"] == "empty language"
    rec = run_case(a, schema, [({"a": 1, "b": 2}, True)])  # a (wrong) valid label: counted against us
    assert rec["status"] == "ok" and rec["false_rejects"] == 1 and not rec["passed"]
