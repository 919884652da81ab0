"""Worker processes with a per-schema deadline.

An engine can hang on a schema (outlines-core builds a full index; xgrammar has compile
cliffs) or kill its process (MaskBench saw segfaults).  So every schema runs in a worker
process; the worker reports which stage it is in (tokenizer load, instance generation,
compile, match) and the parent kills it when the stage's deadline passes, records a
*timeout* (or a *crash* when the process died), starts a fresh worker and re-queues the
schema's remaining engines.  ``--workers 1`` still isolates through one such process.

Workers are started with the ``spawn`` method and pin their engines to one thread before
importing them (:func:`~constrain.cli.jsb.engines.single_thread_env`).  They load each
engine's tokenizer once and keep it for every schema they get, and call ``gc.freeze()``
after each engine's set-up (see ``_worker_main``).
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any


class BenchAborted(Exception):
    """A worker hit a problem no other schema can avoid (e.g. an engine is not installed)."""


# ---- worker side ------------------------------------------------------------------------------


def _worker_main(conn: Connection, config: dict[str, Any]) -> None:
    """Loop: receive a job, run its engines, stream phases and records back."""
    from constrain.cli.jsb.engines import single_thread_env

    single_thread_env()
    if config.get("log"):
        # engines print warnings from native code straight to fd 2: keep them out of the terminal
        import os

        fd = os.open(config["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 2)
        os.close(fd)
    from constrain.cli.jsb.data import Instance, SchemaCase
    from constrain.cli.jsb.engines import EngineUnavailable, shared_vocab

    adapters: dict[str, Any] = {}
    model_runner = None
    while True:
        job = conn.recv()
        if job is None:
            return
        case = SchemaCase.from_json(job["case"])
        try:
            if config.get("mode") == "model":
                if model_runner is None:
                    conn.send(("phase", None, "load"))
                    from constrain.cli.jsb.model import ModelRunner

                    model_runner = ModelRunner(config)
                for engine in job["engines"]:
                    conn.send(("phase", engine, "compile"))
                    rec = model_runner.run(
                        case, engine, on_phase=lambda st, e=engine: conn.send(("phase", e, st))
                    )
                    rec.update(split=case.split, id=case.id, engine=engine, mode="model")
                    conn.send(("result", rec))
                conn.send(("done",))
                continue

            from constrain.cli.jsb.runner import evaluate, prepare_instances

            vocab = None
            if "vocab" not in adapters:
                conn.send(("phase", None, "load"))
                adapters["vocab"] = shared_vocab(config["tokenizer"])
            vocab = adapters["vocab"]
            generate = job.get("generate", True)
            known = job.get("generated")
            if not case.tests and known is not None:
                case.tests = [Instance(v, True, generated=True) for v in known]
                generate = False
            elif not case.tests and generate:
                conn.send(("phase", None, "generate"))
            instances = prepare_instances(
                case,
                vocab,
                generate=generate,
                n_generate=config.get("n_generate", 2),
                time_budget=config.get("gen_budget", 20.0),
            )
            if (
                generate
                and known is None
                and all(i["generated"] for i in instances)
                and not job["case"]["tests"]
            ):
                conn.send(("generated", case.split, case.id, [i["data"] for i in instances]))
            for engine in job["engines"]:
                if engine not in adapters:
                    conn.send(("phase", engine, "load"))
                    a = _adapter_class(engine, config)(config["tokenizer"])
                    try:
                        a.load()
                    except EngineUnavailable:
                        raise
                    except Exception as exc:  # noqa: BLE001 - no schema can run without its engine
                        conn.send(("fatal", f"cannot load {engine}: {type(exc).__name__}: {exc}"))
                        return
                    conn.send(("warmup", engine, a.warm_up()))
                    adapters[engine] = a
                    # the usual setting of a Python server once its model is loaded: what is on
                    # the heap now (torch, transformers, tokenizers, the engines) leaves the
                    # cyclic GC, so a full collection triggered while matching walks only what
                    # was made since; the same for every engine (the peers are native code)
                    gc.collect()
                    gc.freeze()
                conn.send(("phase", engine, "compile"))
                rec = evaluate(
                    adapters[engine],
                    case.schema,
                    instances,
                    on_phase=lambda st, e=engine: conn.send(("phase", e, st)),
                )
                rec.update(
                    split=case.split,
                    id=case.id,
                    engine=engine,
                    mode="engine",
                    n_instances=len(instances),
                    n_generated=sum(1 for i in instances if i["generated"]),
                    n_tokens=sum(len(i["tokens"]) for i in instances),
                )
                if job.get("generate_timed_out"):
                    rec["generate"] = "timeout"
                conn.send(("result", rec))
            conn.send(("done",))
        except EngineUnavailable as exc:
            conn.send(("fatal", str(exc)))
            return


def _adapter_class(engine: str, config: dict[str, Any]) -> Any:
    """The adapter class for ``engine``; ``config["adapters"]`` may add ``name -> "module:Class"``.

    The extra table lets tests (and users with their own engine) plug in an adapter without
    editing the registry; the class is imported inside the worker process.
    """
    import importlib

    from constrain.cli.jsb.engines import ADAPTERS

    extra = config.get("adapters") or {}
    if engine in extra:
        module, _, qual = extra[engine].partition(":")
        obj: Any = importlib.import_module(module)
        for part in qual.split("."):
            obj = getattr(obj, part)
        return obj
    return ADAPTERS[engine]


# ---- parent side ------------------------------------------------------------------------------


@dataclass
class _Worker:
    proc: Any
    conn: Connection
    job: dict[str, Any] | None = None
    engine: str | None = None
    stage: str | None = None
    deadline: float = float("inf")
    done_engines: list[str] = field(default_factory=list)


@dataclass
class Limits:
    """Seconds allowed per stage: one (schema, engine) compile+match, instance generation, tokenizer load."""

    timeout: float = 60.0
    generate: float = 60.0
    load: float = 900.0


class WorkerPool:
    """Runs jobs (one schema, several engines) on ``n`` worker processes with deadlines."""

    def __init__(
        self,
        n: int,
        config: dict[str, Any],
        limits: Limits,
        on_generated: Callable[[str, str, list[Any]], None] | None = None,
        on_warmup: Callable[[str, float], None] | None = None,
    ) -> None:
        self.generated: dict[tuple[str, str], list[Any]] = {}
        self.on_generated = on_generated
        self.on_warmup = on_warmup
        if n < 1:
            raise ValueError("--workers must be at least 1")
        self.n = n
        self.config = config
        self.limits = limits
        self.ctx = mp.get_context("spawn")

    def _spawn(self) -> _Worker:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=_worker_main, args=(child, self.config), daemon=True)
        proc.start()
        child.close()
        return _Worker(proc, parent)

    def run(self, jobs: list[dict[str, Any]], on_record: Callable[[dict[str, Any]], None]) -> None:
        """Run every job; ``on_record`` gets each (schema, engine) record as soon as it exists."""
        queue: deque[dict[str, Any]] = deque(jobs)
        workers: list[_Worker] = []
        try:
            while queue or any(w.job is not None for w in workers):
                # hand out work, starting workers up to n
                for w in workers:
                    if w.job is None and queue:
                        self._assign(w, queue.popleft())
                while queue and len(workers) < self.n:
                    w = self._spawn()
                    workers.append(w)
                    self._assign(w, queue.popleft())
                busy = [w for w in workers if w.job is not None]
                ready = wait([w.conn for w in busy], timeout=0.2)
                for w in busy:
                    if w.conn in ready:
                        self._drain(w, queue, on_record, workers)
                now = time.monotonic()
                for w in list(workers):
                    if w.job is not None and now > w.deadline:
                        self._fail(w, "timeout", queue, on_record, workers)
        finally:
            for w in workers:
                self._stop(w)

    # -- helpers ------------------------------------------------------------------------------
    def _assign(self, w: _Worker, job: dict[str, Any]) -> None:
        w.job, w.engine, w.stage, w.done_engines = job, None, "start", []
        w.deadline = time.monotonic() + self.limits.load
        w.conn.send(job)

    def _drain(self, w: _Worker, queue: deque, on_record: Callable, workers: list[_Worker]) -> None:
        while True:
            try:
                if not w.conn.poll():
                    return
                msg = w.conn.recv()
            except (EOFError, OSError):
                self._fail(w, "crash", queue, on_record, workers)
                return
            kind = msg[0]
            if kind == "phase":
                _, engine, stage = msg
                w.engine, w.stage = engine, stage
                if stage == "load":
                    w.deadline = time.monotonic() + self.limits.load
                elif stage == "generate":
                    w.deadline = time.monotonic() + self.limits.generate
                elif stage == "compile":
                    w.deadline = time.monotonic() + self.limits.timeout
                # "match" and later stages keep the (schema, engine) deadline set at compile
            elif kind == "generated":
                _, split, sid, values = msg
                self.generated[(split, sid)] = values
                if w.job is not None:
                    w.job["generated"] = values
                if self.on_generated is not None:
                    self.on_generated(split, sid, values)
            elif kind == "warmup":
                if self.on_warmup is not None:
                    self.on_warmup(msg[1], msg[2])
            elif kind == "result":
                rec = msg[1]
                w.done_engines.append(rec["engine"])
                w.engine, w.stage = None, "between"
                on_record(rec)
            elif kind == "done":
                w.job, w.engine, w.stage = None, None, None
                w.deadline = float("inf")
                return
            elif kind == "fatal":
                raise BenchAborted(msg[1])

    def _fail(
        self, w: _Worker, status: str, queue: deque, on_record: Callable, workers: list[_Worker]
    ) -> None:
        """Record ``status`` for the engine in flight, replace the worker, re-queue the rest."""
        job = w.job
        assert job is not None
        engine, stage = w.engine, w.stage
        self._stop(w, kill=True)
        idx = workers.index(w)
        case = job["case"]
        remaining = [e for e in job["engines"] if e not in w.done_engines]
        if stage == "load":
            what = f"loading {engine}" if engine else "loading the tokenizer/model"
            raise BenchAborted(f"worker {status} while {what} (limit {self.limits.load:.0f}s)")
        if stage == "generate" and engine is None:
            # instance generation hung or crashed: retry the schema without generated instances
            retry = dict(job, engines=remaining, generate=False, generate_timed_out=True)
            queue.appendleft(retry)
        else:
            if engine is None:  # died between engines: blame the next one
                engine = remaining[0] if remaining else None
                stage = "compile"
            if engine is not None:
                rec = {
                    "split": case["split"],
                    "id": case["id"],
                    "engine": engine,
                    "mode": self.config.get("mode", "engine"),
                    "status": status,
                    "phase": stage,
                    "error": f"{status} during {stage}"
                    + (
                        f" (limit {self.limits.timeout:.0f}s)"
                        if status == "timeout"
                        else f" (exit code {w.proc.exitcode})"
                    ),
                }
                if stage == "compile":
                    rec["compile_s"] = self.limits.timeout if status == "timeout" else None
                on_record(rec)
                rest = [e for e in remaining if e != engine]
                if rest:
                    queue.appendleft(dict(job, engines=rest))
        workers[idx] = self._spawn()

    def _stop(self, w: _Worker, kill: bool = False) -> None:
        if w.proc.is_alive():
            if kill:
                w.proc.kill()
            else:
                try:
                    w.conn.send(None)
                except (BrokenPipeError, OSError):
                    pass
                w.proc.join(timeout=5)
                if w.proc.is_alive():
                    w.proc.kill()
        w.proc.join(timeout=5)
        w.conn.close()
