"""Worker pool: a hanging engine becomes a time-out, a dying one a crash, and the run goes on."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from constrain.cli.jsb.data import SchemaCase
from constrain.cli.jsb.engines import LLGuidanceAdapter
from constrain.cli.jsb.pool import BenchAborted, Limits, WorkerPool


class MisbehavingAdapter(LLGuidanceAdapter):
    """llguidance, except it hangs or kills its process on schemas titled so (imported in workers)."""

    def compile(self, schema: Any) -> Any:
        if schema.get("title") == "hang":
            time.sleep(3600)
        if schema.get("title") == "die":
            os._exit(3)
        return super().compile(schema)


@pytest.fixture(scope="module")
def gpt2_dir():
    pytest.importorskip("llguidance")
    from constrain._data import tokenizer_path
    from constrain.errors import DataNotFound

    try:
        return str(tokenizer_path("gpt2"))
    except DataNotFound as exc:
        pytest.skip(f"shared tokenizers not available: {exc}")


def job(sid: str, title: str, engines: list[str]) -> dict:
    schema = {"title": title, "type": "integer"}
    case = SchemaCase("S", sid, schema, [])
    case.tests = []
    d = case.to_json()
    d["tests"] = [{"data": 5, "valid": True}, {"data": "x", "valid": False}]
    return {"case": d, "engines": engines, "generate": False}


def test_timeout_and_crash_are_recorded_and_the_run_continues(gpt2_dir) -> None:
    config = {
        "mode": "engine",
        "tokenizer": gpt2_dir,
        "adapters": {"bad": f"{__name__}:MisbehavingAdapter"},
    }
    pool = WorkerPool(1, config, Limits(timeout=4.0, generate=5.0, load=120.0))
    records: list[dict] = []
    jobs = [
        job("ok1", "fine", ["bad", "llguidance"]),
        job("hang", "hang", ["bad", "llguidance"]),
        job("die", "die", ["bad", "llguidance"]),
        job("ok2", "fine", ["bad"]),
    ]
    t0 = time.monotonic()
    pool.run(jobs, records.append)
    assert time.monotonic() - t0 < 100
    got = {(r["id"], r["engine"]): r for r in records}
    assert len(got) == len(records) == 7
    assert got[("ok1", "bad")]["status"] == "ok" and got[("ok1", "bad")]["passed"]
    assert got[("hang", "bad")]["status"] == "timeout" and got[("hang", "bad")]["phase"] == "compile"
    assert got[("hang", "bad")]["compile_s"] == 4.0  # counted at the limit
    assert got[("die", "bad")]["status"] == "crash" and "exit code 3" in got[("die", "bad")]["error"]
    # the schema's other engine still ran, on a fresh worker, and so did the next schema
    for sid in ("ok1", "hang", "die"):
        assert got[(sid, "llguidance")]["status"] == "ok" and got[(sid, "llguidance")]["passed"]
    assert got[("ok2", "bad")]["status"] == "ok"


def test_missing_engine_package_aborts_with_a_clear_message(gpt2_dir) -> None:
    config = {"mode": "engine", "tokenizer": gpt2_dir, "adapters": {"ghost": f"{__name__}:GhostAdapter"}}
    pool = WorkerPool(1, config, Limits(timeout=10.0, load=120.0))
    with pytest.raises(BenchAborted, match="ghostlib is not installed"):
        pool.run([job("a", "fine", ["ghost"])], lambda r: None)


class GhostAdapter(LLGuidanceAdapter):
    def load(self) -> None:
        from constrain.cli.jsb.engines import EngineUnavailable

        raise EngineUnavailable("ghostlib is not installed")
