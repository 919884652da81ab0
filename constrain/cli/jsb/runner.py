"""The MaskBench protocol for one schema and one engine.

Compile (timed; a declined schema is a *compile error*), then feed each instance token by
token: before every token compute the full mask (timed) and check the token's bit; at the
end compute the mask once more and check an EOS id is allowed.  A valid instance must get
to the end with EOS allowed; an invalid one must be refused somewhere (a cleared bit, an
``advance`` refusal, or EOS disallowed at the end).  A schema *passes* when it compiles and
every instance is decided correctly.  An unexpected exception is a *crash* (recorded, the
run goes on); a hang is handled one level up, by the worker pool's deadline.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from typing import Any

from constrain.cli.jsb.data import SchemaCase, is_valid, serialize
from constrain.cli.jsb.engines import Adapter, CompileError, EmptyLanguage, bit


def prepare_instances(
    case: SchemaCase, vocab: Any, *, generate: bool = True, n_generate: int = 2, time_budget: float = 20.0
) -> list[dict]:
    """Instances of ``case`` as ``{"valid", "generated", "tokens"}``, tokenised once for all engines.

    Schemas without tests get valid instances from hypothesis-jsonschema (when ``generate``).
    Test instances whose label ``jsonschema`` contradicts are kept with the data's label (the
    data was checked by two validators); the record says how many were generated.
    """
    from constrain.cli.jsb.data import Instance, generate_valid

    tests = list(case.tests)
    if not tests and generate:
        tests = [
            Instance(v, True, generated=True)
            for v in generate_valid(case.schema, n=n_generate, time_budget=time_budget)
        ]
    out = []
    for t in tests:
        try:
            tokens = vocab.encode(serialize(t.data))
        except (ValueError, UnicodeEncodeError):  # NaN/Infinity or lone surrogates: not UTF-8 JSON
            continue
        out.append({"valid": t.valid, "generated": t.generated, "data": t.data, "tokens": tokens})
    return out


def evaluate(
    adapter: Adapter,
    schema: Any,
    instances: list[dict],
    on_phase: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the protocol; returns the JSON-able record body (status, times, per-instance outcomes)."""
    rec: dict[str, Any] = {"engine": adapter.name}
    phase = on_phase or (lambda p: None)
    phase("compile")
    t0 = time.perf_counter()
    try:
        compiled = adapter.compile(schema)
    except CompileError as exc:
        rec.update(status="compile_error", compile_s=time.perf_counter() - t0, error=str(exc)[:500])
        return rec
    except EmptyLanguage as exc:
        # the engine proved no output satisfies the schema: as if its matcher masked every
        # token at once -- right for every invalid instance, a false reject of any valid one
        outcomes = [{"accepted": False, "at": 0, "why": "empty language"} for _ in instances]
        wrong_reject = sum(1 for inst in instances if inst["valid"])
        rec.update(status="ok", compile_s=time.perf_counter() - t0, false_rejects=wrong_reject,
                   false_accepts=0, passed=wrong_reject == 0, instances=outcomes, mask_us=[],
                   note=f"empty language: {str(exc)[:200]}")
        return rec
    except Exception as exc:  # noqa: BLE001 - an engine bug must not stop the run
        rec.update(status="crash", compile_s=time.perf_counter() - t0, error=_tb(exc))
        return rec
    rec["compile_s"] = time.perf_counter() - t0
    phase("match")
    outcomes = []
    mask_us: list[float] = []
    try:
        for inst in instances:
            outcomes.append(_run_instance(adapter, compiled, inst["tokens"], mask_us))
    except Exception as exc:  # noqa: BLE001
        rec.update(status="crash", error=_tb(exc), instances=outcomes, mask_us=_round(mask_us))
        return rec
    wrong_reject = sum(1 for inst, o in zip(instances, outcomes) if inst["valid"] and not o["accepted"])
    wrong_accept = sum(1 for inst, o in zip(instances, outcomes) if not inst["valid"] and o["accepted"])
    rec.update(
        status="ok",
        false_rejects=wrong_reject,
        false_accepts=wrong_accept,
        passed=wrong_reject == 0 and wrong_accept == 0,
        instances=outcomes,
        mask_us=_round(mask_us),
    )
    return rec


def _run_instance(adapter: Adapter, compiled: Any, tokens: list[int], mask_us: list[float]) -> dict[str, Any]:
    m = adapter.matcher(compiled)
    clock = time.perf_counter
    for i, tok in enumerate(tokens):
        t0 = clock()
        words = adapter.fill(m)
        mask_us.append((clock() - t0) * 1e6)
        if not bit(words, tok):
            return {"accepted": False, "at": i, "why": "masked"}
        if not adapter.advance(m, tok):
            # the mask allowed it but the engine refused: an engine inconsistency worth seeing
            return {"accepted": False, "at": i, "why": "advance refused"}
    t0 = clock()
    words = adapter.fill(m)
    mask_us.append((clock() - t0) * 1e6)
    if not any(bit(words, e) for e in adapter.eos_ids):
        return {"accepted": False, "at": len(tokens), "why": "eos not allowed"}
    return {"accepted": True, "at": len(tokens)}


def _round(xs: list[float]) -> list[float]:
    return [round(x, 2) for x in xs]


def _tb(exc: BaseException) -> str:
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return "".join(lines[-4:])[-1500:]


def check_labels(case: SchemaCase) -> list[bool]:
    """Whether ``jsonschema`` agrees with each test's label (used by tests and ``--check-data``)."""
    return [is_valid(case.schema, t.data) == t.valid for t in case.tests]
