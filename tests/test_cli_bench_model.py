"""Model mode: a tiny randomly initialised causal LM with a real tokenizer, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from constrain.cli.bench import main
from constrain.cli.jsb.data import is_valid
from constrain.cli.jsb.store import ResultStore


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("llguidance")
    torch = pytest.importorskip("torch")
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from constrain._data import tokenizer_path
    from constrain.errors import DataNotFound

    try:
        tok_dir = tokenizer_path("gpt2")
    except DataNotFound as exc:
        pytest.skip(f"shared tokenizers not available: {exc}")
    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


SCHEMAS = [
    {"id": "M---bool", "schema": {"type": "boolean"}, "tests": []},
    {"id": "M---enum", "schema": {"enum": ["red", "green", 3]}, "tests": []},
    {
        "id": "M---obj",
        "schema": {
            "type": "object",
            "properties": {"ok": {"type": "boolean"}},
            "required": ["ok"],
            "additionalProperties": False,
        },
        "tests": [],
    },
]


def test_model_mode_end_to_end(tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "M.jsonl").write_text("".join(json.dumps(s) + "\n" for s in SCHEMAS))
    out = tmp_path / "out"
    code = main(
        [
            "bench",
            "jsonschemabench",
            "--data",
            str(data),
            "--model",
            str(tiny_model),
            "--engines",
            "llguidance,constrain,constrain-awrs",
            "--max-new-tokens",
            "12",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "compliant" in printed and "ttft avg ms" in printed and "| M | llguidance | 3 |" in printed
    assert (out / "summary.png").exists()
    st = ResultStore(out / "results.jsonl")
    st.load_only()
    assert st.header["mode"] == "model"
    schemas = {s["id"]: s["schema"] for s in SCHEMAS}
    for (_, sid, engine), r in st.records.items():
        assert r["status"] in ("ok", "compile_error"), r
        if r["status"] != "ok":
            assert r["error"]  # says why (e.g. the schema layer or sampler is not there yet)
            continue
        assert r["compile_s"] >= 0 and r["out_tokens"] <= 12
        # compliance is recomputed honestly from the text
        try:
            value, parses = json.loads(r["text"]), True
        except ValueError:
            value, parses = None, False
        assert r["compliant"] == (parses and is_valid(schemas[sid], value))
        if r.get("finished"):
            # masked generation that ended with EOS must be a valid instance
            assert r["compliant"], r
        if engine == "llguidance":
            assert r["ttft_s"] > 0 and r["out_tokens"] >= 1
    # every llguidance generation of these tiny schemas is complete within 12 tokens or still a valid prefix
    ll = [r for (_, _, e), r in st.records.items() if e == "llguidance"]
    assert len(ll) == 3 and all(r["status"] == "ok" for r in ll)
