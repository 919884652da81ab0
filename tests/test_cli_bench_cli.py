"""``constrain bench jsonschemabench`` end to end: table, plot, clear errors, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from constrain.cli.bench import main
from constrain.cli.jsb.report import markdown, summarize
from constrain.cli.jsb.store import ResultStore

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def gpt2_dir() -> str:
    pytest.importorskip("llguidance")
    from constrain._data import tokenizer_path
    from constrain.errors import DataNotFound

    try:
        return str(tokenizer_path("gpt2"))
    except DataNotFound as exc:
        pytest.skip(f"shared tokenizers not available: {exc}")


def obj(props: dict, required: list[str]) -> dict:
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


def make_data(folder: Path, n_untested: int = 0) -> Path:
    """Two small splits; schemas without tests get generated instances (the slow part)."""
    folder.mkdir(parents=True, exist_ok=True)
    a = [
        {
            "id": "A---int",
            "schema": {"type": "integer", "minimum": 0},
            "tests": [
                {"valid": True, "data": 7},
                {"valid": False, "data": -2},
                {"valid": False, "data": "7"},
            ],
        },
        {
            "id": "A---obj",
            "schema": obj({"x": {"type": "boolean"}, "y": {"enum": ["a", "b"]}}, ["x"]),
            "tests": [{"valid": True, "data": {"x": True, "y": "b"}}, {"valid": False, "data": {"y": "a"}}],
        },
        {
            "id": "A---unsupported",
            "schema": {"not": {"type": "string"}},
            "tests": [{"valid": True, "data": 1}],
        },
    ]
    b = [
        {
            "id": f"B---gen{i}",
            "schema": obj(
                {"k": {"type": "string", "maxLength": 3 + i}, "n": {"type": "integer"}}, ["k", "n"]
            ),
            "tests": [],
        }
        for i in range(n_untested)
    ]
    for name, recs in (("A", a), ("B", b)):
        with (folder / f"{name}.jsonl").open("w") as fh:
            for r in recs:
                fh.write(json.dumps(r) + "\n")
    return folder


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "constrain.cli.bench", "bench", "jsonschemabench", *args]


def test_end_to_end_table_plot_and_records(
    tmp_path: Path, gpt2_dir: str, capsys: pytest.CaptureFixture
) -> None:
    data = make_data(tmp_path / "data", n_untested=1)
    out = tmp_path / "out"
    args = [
        "--data",
        str(data),
        "--tokenizer",
        gpt2_dir,
        "--engines",
        "llguidance,constrain",
        "--out",
        str(out),
    ]
    code = main(["bench", "jsonschemabench", *args, "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "| A | llguidance | 3 | 2 (67%) | 1 |" in printed  # `not` is unsupported by llguidance
    assert "| B | llguidance | 1 | 1 (100%) |" in printed
    assert "| TOTAL | constrain | 4 |" in printed
    assert (out / "summary.md").read_text() in printed
    # each engine warmed up once in the one worker, reported apart from the timed columns
    warm = [json.loads(line) for line in (out / "warmup.jsonl").read_text().splitlines()]
    assert sorted(w["engine"] for w in warm) == ["constrain", "llguidance"]
    assert all(w["seconds"] > 0 for w in warm)
    assert "First-call cost per worker" in printed and "constrain " in printed.split("First-call cost")[1]
    assert (out / "summary.png").read_bytes()[:4] == b"\x89PNG"
    st = ResultStore(out / "results.jsonl")
    st.load_only()
    assert len(st.records) == 8
    gen = st.records[("B", "B---gen0", "llguidance")]
    assert gen["n_generated"] == gen["n_instances"] >= 1 and gen["passed"]
    # constrain either passes or says why it could not compile; it never crashes the run
    for (_, _, engine), r in st.records.items():
        if engine == "constrain":
            assert r["status"] in ("ok", "compile_error"), r
    # a second run into the same folder refuses to mix results unless told
    assert main(["bench", "jsonschemabench", *args, "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err
    # --resume with nothing left to do reproduces the table without running anything
    assert main(["bench", "jsonschemabench", *args, "--no-progress", "--resume", "--no-plot"]) == 0
    again = capsys.readouterr()
    assert "resuming: 8 of 8" in again.err
    assert markdown(summarize(st.records.values(), ["llguidance", "constrain"]), timing=False) == markdown(
        summarize(_load(out).values(), ["llguidance", "constrain"]), timing=False
    )


def test_clear_errors_for_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert (
        main(["bench", "jsonschemabench", "--data", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    )
    err = capsys.readouterr().err
    assert "does not exist" in err and "jsonschemabench" in err and "--data" in err
    data = make_data(tmp_path / "d")
    assert (
        main(["bench", "jsonschemabench", "--data", str(data), "--split", "Nope", "--out", str(tmp_path)])
        == 2
    )
    assert "unknown split(s) Nope" in capsys.readouterr().err
    assert (
        main(["bench", "jsonschemabench", "--data", str(data), "--engines", "vllm", "--out", str(tmp_path)])
        == 2
    )
    assert "unknown engine" in capsys.readouterr().err


def _load(out: Path) -> dict:
    st = ResultStore(out / "results.jsonl")
    st.load_only()
    return st.records


def test_killed_run_resumes_to_the_same_table(tmp_path: Path, gpt2_dir: str) -> None:
    data = make_data(tmp_path / "data", n_untested=8)
    common = [
        "--data",
        str(data),
        "--tokenizer",
        gpt2_dir,
        "--engines",
        "llguidance",
        "--no-progress",
        "--no-plot",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    # uninterrupted reference run
    ref = tmp_path / "ref"
    subprocess.run(cli(*common, "--out", str(ref)), check=True, env=env, capture_output=True, timeout=300)

    # the same run, killed (parent and workers) once some but not all results are in
    out = tmp_path / "killed"
    results = out / "results.jsonl"
    proc = subprocess.Popen(
        cli(*common, "--out", str(out)),
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    total = 11
    deadline = time.monotonic() + 240
    n = 0
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            n = len(results.read_text().splitlines()) - 1 if results.exists() else 0
            if n >= 4:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    partial = _load(out)
    assert 4 <= len(partial) < total, len(partial)

    res = subprocess.run(
        cli(*common, "--out", str(out), "--resume"), env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr
    assert f"resuming: {len(partial)} of {total}" in res.stderr
    final, reference = _load(out), _load(ref)
    assert set(final) == set(reference) and len(final) == total
    assert markdown(summarize(final.values()), timing=False) == markdown(
        summarize(reference.values()), timing=False
    )
    for k, r in reference.items():
        assert (final[k]["status"], final[k].get("passed"), final[k].get("n_instances")) == (
            r["status"],
            r.get("passed"),
            r.get("n_instances"),
        ), k
    # every record of the killed run appears once: no duplicate written by the resume
    lines = [json.loads(x) for x in results.read_text().splitlines()[1:]]
    assert len(lines) == total
