"""``constrain bench jsonschemabench``: coverage, compliance and speed of every engine, one table.

Engine mode (default) runs the MaskBench protocol (see :mod:`constrain.cli.jsb.runner`) on
JSONSchemaBench with the Llama 3 tokenizer; model mode (``--model``) runs constrained
generation with a Hugging Face causal LM.  Results go to ``OUT/results.jsonl`` one line per
(schema, engine) as they finish, so ``--resume`` continues an interrupted run; the summary
goes to ``OUT/summary.md`` and ``OUT/summary.png`` and is printed.

Typical use::

    constrain bench jsonschemabench --split Github_easy --limit 50 --engines constrain,llguidance,xgrammar
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
from pathlib import Path
from typing import Any

PEER_PACKAGES = {"llguidance": "llguidance", "xgrammar": "xgrammar", "outlines": "outlines_core"}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``bench`` (with its ``jsonschemabench`` sub-command) on a subparsers object."""
    bench = subparsers.add_parser("bench", help="benchmarks: engines side by side on real data")
    sub = bench.add_subparsers(dest="bench_command", metavar="BENCHMARK")
    sub.required = True
    p = sub.add_parser(
        "jsonschemabench",
        help="JSONSchemaBench: coverage, correctness and mask/generation speed per split and engine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data", metavar="DIR", help="folder of <split>.jsonl files (default: <shared>/jsonschemabench)"
    )
    p.add_argument(
        "--split",
        metavar="NAME",
        nargs="+",
        action="extend",
        help="split(s) to run (default: every split in the data)",
    )
    p.add_argument(
        "--engines",
        default="constrain,llguidance,xgrammar",
        help="comma-separated: constrain, llguidance, xgrammar, outlines "
        "(model mode also: constrain-lcd, constrain-awrs) [%(default)s]",
    )
    p.add_argument(
        "--tokenizer", metavar="PATH", help="Hugging Face tokenizer folder (default: shared llama3)"
    )
    p.add_argument(
        "--model", metavar="PATH", help="Hugging Face causal LM folder: run constrained generation"
    )
    p.add_argument("--limit", type=int, metavar="N", help="first N schemas of each split")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes [%(default)s]")
    p.add_argument("--out", metavar="DIR", default="jsb-results", help="results folder [%(default)s]")
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds per schema and engine (compile + all instances) [%(default)s]",
    )
    p.add_argument(
        "--gen-timeout",
        type=float,
        default=20.0,
        metavar="S",
        help="seconds to generate valid instances for a schema without tests [%(default)s]",
    )
    p.add_argument(
        "--max-new-tokens", type=int, default=64, help="model mode: tokens per generation [%(default)s]"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in OUT, skipping finished (schema, engine) pairs",
    )
    p.add_argument("--overwrite", action="store_true", help="discard existing results in OUT")
    p.add_argument("--report", action="store_true", help="only summarise the existing results in OUT")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run, run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the benchmark described by ``args``; returns the process exit code."""
    from constrain.cli.jsb.data import list_splits, load_split, resolve_data_dir
    from constrain.cli.jsb.engines import parse_engines
    from constrain.cli.jsb.model import MODEL_ENGINES
    from constrain.cli.jsb.pool import BenchAborted, Limits, WorkerPool
    from constrain.cli.jsb.report import markdown, plot, summarize
    from constrain.cli.jsb.store import ResultStore, StoreError
    from constrain.errors import DataNotFound

    out = Path(args.out)
    store = ResultStore(out / "results.jsonl")
    if args.report:
        try:
            store.load_only()
        except StoreError as exc:
            return _fail(str(exc))
        return _finish(args, store, list(store.records.values()), None, markdown, plot, summarize)

    try:
        data_dir = resolve_data_dir(args.data)
    except DataNotFound as exc:
        return _fail(str(exc))
    available = list_splits(data_dir)
    splits = args.split or available
    unknown = [s for s in splits if s not in available]
    if unknown:
        return _fail(
            f"unknown split(s) {', '.join(unknown)} in {data_dir}; available: {', '.join(available)}"
        )
    model_mode = args.model is not None
    try:
        if model_mode:
            engines = [e.strip() for e in args.engines.split(",") if e.strip()]
            bad = [e for e in engines if e not in MODEL_ENGINES]
            if bad or not engines:
                raise ValueError(
                    f"unknown engine(s) {', '.join(bad) or '(none)'}; choose from {', '.join(MODEL_ENGINES)}"
                )
        else:
            engines = parse_engines(args.engines)
    except ValueError as exc:
        return _fail(str(exc))
    missing = [
        e for e in engines if e in PEER_PACKAGES and importlib.util.find_spec(PEER_PACKAGES[e]) is None
    ]
    if missing:
        return _fail(f"engine(s) {', '.join(missing)} not installed: pip install 'constrain[peers]'")
    if args.limit is not None and args.limit < 1:
        return _fail("--limit must be at least 1")
    if args.workers < 1:
        return _fail("--workers must be at least 1")
    if model_mode and not Path(args.model).is_dir():
        return _fail(f"--model {args.model}: no such model folder")

    try:
        tokenizer = Path(args.tokenizer) if args.tokenizer else _default_tokenizer(model_mode, args.model)
    except DataNotFound as exc:
        return _fail(f"{exc}\nPass --tokenizer PATH (a Hugging Face tokenizer folder).")
    if not tokenizer.is_dir():
        return _fail(f"--tokenizer {tokenizer}: no such tokenizer folder")

    settings = {
        "mode": "model" if model_mode else "engine",
        "tokenizer": str(tokenizer.resolve()),
        "timeout": args.timeout,
        "model": str(Path(args.model).resolve()) if model_mode else None,
        "max_new_tokens": args.max_new_tokens if model_mode else None,
    }
    try:
        store.open(settings, resume=args.resume, overwrite=args.overwrite)
    except StoreError as exc:
        return _fail(str(exc))
    if not args.resume:
        (out / WARMUP_FILE).unlink(missing_ok=True)  # a fresh run reports its own worker starts

    gen_path = out / "generated.jsonl"
    generated = _load_generated(gen_path)
    jobs: list[dict[str, Any]] = []
    wanted: set[tuple[str, str, str]] = set()
    try:
        for split in splits:
            for case in load_split(data_dir, split, args.limit):
                todo = [e for e in engines if not store.has(split, case.id, e)]
                wanted.update((split, case.id, e) for e in engines)
                if todo:
                    job = {"case": case.to_json(), "engines": todo, "generate": True}
                    if not case.tests and (split, case.id) in generated:
                        job["generated"] = generated[(split, case.id)]
                    jobs.append(job)
    except DataNotFound as exc:
        return _fail(str(exc))

    total = sum(len(j["engines"]) for j in jobs)
    done_before = len(wanted) - total
    if done_before:
        print(
            f"resuming: {done_before} of {len(wanted)} (schema, engine) results already in {store.path}",
            file=sys.stderr,
        )
    config = {
        "mode": settings["mode"],
        "tokenizer": str(tokenizer),
        "model": args.model,
        "max_new_tokens": args.max_new_tokens,
        "log": str(out / "workers.log"),
        "gen_budget": args.gen_timeout,
    }

    def on_generated(split: str, sid: str, values: list[Any]) -> None:
        # shared by every engine of the schema and by later runs in OUT (hypothesis is slow)
        with gen_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"split": split, "id": sid, "values": values}) + "\n")

    def on_warmup(engine: str, seconds: float) -> None:
        with (out / WARMUP_FILE).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"engine": engine, "seconds": seconds}) + "\n")

    pool = WorkerPool(
        args.workers,
        config,
        Limits(timeout=args.timeout, generate=args.gen_timeout + 30),
        on_generated=on_generated,
        on_warmup=on_warmup,
    )
    bar = _progress(total, args.no_progress)

    def on_record(rec: dict[str, Any]) -> None:
        store.add(rec)
        bar.update(1)
        bar.set_postfix_str(f"{rec['split']} {rec['engine']}: {rec.get('status')}", refresh=False)

    try:
        pool.run(jobs, on_record)
    except BenchAborted as exc:
        bar.close()
        return _fail(f"aborted: {exc}")
    except KeyboardInterrupt:
        bar.close()
        print(f"\ninterrupted; results so far are in {store.path} (continue with --resume)", file=sys.stderr)
        return 130
    bar.close()
    records = [r for k, r in store.records.items() if k in wanted]
    return _finish(args, store, records, engines, markdown, plot, summarize)


def _finish(args, store, records, engines, markdown, plot, summarize) -> int:
    from constrain.cli.jsb.report import comparison

    rows = summarize(records, engines)
    table = markdown(rows)
    versus = comparison(rows)
    if versus:
        table += "\n" + versus
    out = store.path.parent
    first = warmup_line(out / WARMUP_FILE)
    if first:
        table += "\n" + first
    (out / "summary.md").write_text(table, encoding="utf-8")
    print(table, end="")
    if not args.no_plot and rows:
        try:
            png = plot(rows, out / "summary.png")
            print(f"\nplot: {png}\nresults: {store.path}")
        except ImportError:
            print("\n(matplotlib not installed: no plot; pip install 'constrain[plot]')", file=sys.stderr)
    return 0


WARMUP_FILE = "warmup.jsonl"


def warmup_line(path: Path) -> str:
    """One line on the engines' first-call costs, paid once per worker before any timing."""
    per: dict[str, list[float]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                d = json.loads(line)
                per.setdefault(str(d["engine"]), []).append(float(d["seconds"]))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
    if not per:
        return ""
    parts = [
        f"{e} {statistics.median(v):.2f} s (max {max(v):.2f} s, {len(v)} worker start{'s' if len(v) > 1 else ''})"
        for e, v in per.items()
    ]
    return (
        "First-call cost per worker (Numba JIT or cache load, lazy imports; paid on a warm-up schema "
        "and excluded from the compile and mask times above): " + "; ".join(parts) + ". "
        "Workers call gc.freeze() after that set-up, as a Python server does once its model is loaded.\n"
    )


def _load_generated(path: Path) -> dict[tuple[str, str], list[Any]]:
    """Valid instances generated by earlier runs in the same OUT (torn lines ignored)."""
    out: dict[tuple[str, str], list[Any]] = {}
    if path.exists():
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    d = json.loads(line)
                    out[(d["split"], d["id"])] = d["values"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
    return out


def _default_tokenizer(model_mode: bool, model: str | None) -> Path:
    if model_mode and model and (Path(model) / "tokenizer.json").exists():
        return Path(model)
    from constrain._data import tokenizer_path

    return tokenizer_path("llama3")


def _progress(total: int, disabled: bool) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        disabled = True
    if disabled:

        class _Null:
            def update(self, n: int) -> None: ...
            def set_postfix_str(self, s: str, refresh: bool = True) -> None: ...
            def close(self) -> None: ...

        return _Null()
    return tqdm(total=total, unit="run", desc="jsonschemabench", dynamic_ncols=True)


def _fail(msg: str) -> int:
    print(f"constrain bench: error: {msg}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m constrain.cli.bench ...``); the ``constrain`` script wires the same parser."""
    parser = argparse.ArgumentParser(prog="constrain")
    subs = parser.add_subparsers(dest="command", required=True)
    add_parser(subs)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
