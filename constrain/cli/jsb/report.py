"""Summaries of a results file: per split and engine, a Markdown table and a PNG plot.

Counts are per schema, as in MaskBench: a schema is *passing* when it compiled and every
instance was decided correctly; *false reject* when at least one valid instance was
refused; *false accept* when at least one invalid instance got to the end with EOS allowed.
Compile-time percentiles are over schemas that compiled, with time-outs during compile
counted at the limit; mask times are over every mask computed (one per token plus the final
EOS check), in microseconds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

TOTAL = "TOTAL"

ENGINE_COUNT_COLS = [
    "schemas",
    "passing",
    "compile_error",
    "false_reject",
    "false_accept",
    "crash",
    "timeout",
]
ENGINE_TIME_COLS = [
    "compile_p50_ms",
    "compile_p90_ms",
    "compile_p99_ms",
    "compile_max_ms",
    "mask_avg_us",
    "mask_p25_us",
    "mask_p50_us",
    "mask_p75_us",
    "mask_p90_us",
    "mask_p99_us",
    "mask_max_us",
]
MODEL_COUNT_COLS = ["schemas", "compiled", "compliant", "compile_error", "crash", "timeout", "out_tokens"]
MODEL_TIME_COLS = [
    "compile_p50_ms",
    "compile_max_ms",
    "ttft_avg_ms",
    "ttft_p50_ms",
    "tpot_avg_ms",
    "tpot_p50_ms",
]


def _pct(xs: list[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(xs, dtype=float), q)) if xs else None


def summarize(
    records: Iterable[dict[str, Any]], engines_order: list[str] | None = None
) -> list[dict[str, Any]]:
    """One row per (split, engine) plus a TOTAL row per engine, sorted by split then engine order."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(r["split"], r["engine"])].append(r)
        groups[(TOTAL, r["engine"])].append(r)
    engines = list(engines_order or [])
    for _, e in groups:
        if e not in engines:
            engines.append(e)
    rows = []
    splits = sorted({s for s, _ in groups if s != TOTAL}) + [TOTAL]
    for s in splits:
        for e in engines:
            if (s, e) in groups:
                rs = groups[(s, e)]
                is_model = any(r.get("mode") == "model" for r in rs)
                row = _model_row(rs) if is_model else _engine_row(rs)
                rows.append({"split": s, "engine": e, **row})
    return rows


def _engine_row(rs: list[dict[str, Any]]) -> dict[str, Any]:
    st = [r.get("status") for r in rs]
    ok = [r for r in rs if r.get("status") == "ok"]
    compile_ms = [
        r["compile_s"] * 1e3 for r in rs if r.get("status") == "ok" and r.get("compile_s") is not None
    ]
    compile_ms += [
        r["compile_s"] * 1e3
        for r in rs
        if r.get("status") == "timeout" and r.get("phase") == "compile" and r.get("compile_s") is not None
    ]
    mask = [x for r in rs for x in r.get("mask_us") or []] if rs else []
    row: dict[str, Any] = {
        "schemas": len(rs),
        "passing": sum(1 for r in ok if r.get("passed")),
        "compile_error": st.count("compile_error"),
        "false_reject": sum(1 for r in ok if r.get("false_rejects", 0) > 0),
        "false_accept": sum(1 for r in ok if r.get("false_accepts", 0) > 0),
        "crash": st.count("crash"),
        "timeout": st.count("timeout"),
        "instances": sum(len(r.get("instances") or []) for r in ok),
        "masks": len(mask),
        "compile_p50_ms": _pct(compile_ms, 50),
        "compile_p90_ms": _pct(compile_ms, 90),
        "compile_p99_ms": _pct(compile_ms, 99),
        "compile_max_ms": max(compile_ms) if compile_ms else None,
        "mask_avg_us": float(np.mean(mask)) if mask else None,
        "mask_p25_us": _pct(mask, 25),
        "mask_p50_us": _pct(mask, 50),
        "mask_p75_us": _pct(mask, 75),
        "mask_p90_us": _pct(mask, 90),
        "mask_p99_us": _pct(mask, 99),
        "mask_max_us": max(mask) if mask else None,
    }
    return row


def _model_row(rs: list[dict[str, Any]]) -> dict[str, Any]:
    st = [r.get("status") for r in rs]
    ok = [r for r in rs if r.get("status") == "ok"]
    compile_ms = [r["compile_s"] * 1e3 for r in ok if r.get("compile_s") is not None]
    ttft = [r["ttft_s"] * 1e3 for r in ok if r.get("ttft_s") is not None]
    tpot = [r["tpot_s"] * 1e3 for r in ok if r.get("tpot_s") is not None]
    return {
        "schemas": len(rs),
        "compiled": len(ok),
        "compliant": sum(1 for r in ok if r.get("compliant")),
        "compile_error": st.count("compile_error"),
        "crash": st.count("crash"),
        "timeout": st.count("timeout"),
        "out_tokens": sum(r.get("out_tokens", 0) for r in ok),
        "compile_p50_ms": _pct(compile_ms, 50),
        "compile_max_ms": max(compile_ms) if compile_ms else None,
        "ttft_avg_ms": float(np.mean(ttft)) if ttft else None,
        "ttft_p50_ms": _pct(ttft, 50),
        "tpot_avg_ms": float(np.mean(tpot)) if tpot else None,
        "tpot_p50_ms": _pct(tpot, 50),
    }


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v >= 100:
            return f"{v:,.0f}"
        if v >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    return str(v)


def markdown(rows: list[dict[str, Any]], *, timing: bool = True) -> str:
    """The summary as a Markdown table; ``timing=False`` leaves out the (run-dependent) times."""
    if not rows:
        return "(no results)\n"
    is_model = "compliant" in rows[0]
    counts = MODEL_COUNT_COLS if is_model else ENGINE_COUNT_COLS
    times = (MODEL_TIME_COLS if is_model else ENGINE_TIME_COLS) if timing else []
    cols = ["split", "engine", *counts, *times]
    head = "| " + " | ".join(c.replace("_", " ") for c in cols) + " |"
    sep = "|" + "|".join(":---" if c in ("split", "engine") else "---:" for c in cols) + "|"
    lines = [head, sep]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            if c == "passing" and r.get("schemas"):
                cells.append(f"{v} ({100 * v / r['schemas']:.0f}%)")
            elif c == "compliant" and r.get("schemas"):
                cells.append(f"{v} ({100 * v / r['schemas']:.0f}%)")
            else:
                cells.append(_fmt(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """PNG: coverage (passing or compliant %) and per-token time, by split and engine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    is_model = bool(rows) and "compliant" in rows[0]
    cov_key, time_key = ("compliant", "tpot_avg_ms") if is_model else ("passing", "mask_avg_us")
    splits = list(dict.fromkeys(r["split"] for r in rows))
    engines = list(dict.fromkeys(r["engine"] for r in rows))
    by = {(r["split"], r["engine"]): r for r in rows}
    x = np.arange(len(splits))
    width = 0.8 / max(1, len(engines))
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 1.1 * len(splits) + 3), 8), constrained_layout=True)
    for i, e in enumerate(engines):
        cov = []
        tim = []
        for s in splits:
            r = by.get((s, e))
            cov.append(100 * r[cov_key] / r["schemas"] if r and r["schemas"] else 0.0)
            tim.append(r[time_key] if r and r.get(time_key) is not None else np.nan)
        axes[0].bar(x + i * width, cov, width, label=e)
        axes[1].bar(x + i * width, tim, width, label=e)
    for ax in axes:
        ax.set_xticks(x + width * (len(engines) - 1) / 2)
        ax.set_xticklabels(splits, rotation=30, ha="right")
        ax.legend()
    axes[0].set_ylabel(f"{cov_key} schemas (%)")
    axes[0].set_ylim(0, 100)
    axes[0].set_title("JSONSchemaBench coverage by split and engine")
    axes[1].set_ylabel("avg time per output token (ms)" if is_model else "avg mask time per token (µs)")
    axes[1].set_yscale("log")
    axes[1].set_title("Per-token time (log scale)")
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def comparison(rows: list[dict[str, Any]], baseline: str = "llguidance") -> str:
    """TOTAL of every engine against ``baseline`` in the same run, times as ratios (engine mode).

    The acceptance goals of the benchmark are phrased against llguidance (more schemas
    passing, zero false accepts, no more false rejects, lower average mask time), so this
    puts exactly those numbers next to each other; ratios < 1 mean faster than the baseline.
    """
    totals = {r["engine"]: r for r in rows if r["split"] == TOTAL and "passing" in r}
    base = totals.get(baseline)
    if base is None or len(totals) < 2:
        return ""

    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:.2f}x" if a is not None and b not in (None, 0) else "-"

    lines = [
        f"Against {baseline} (TOTAL; time ratios < 1 are faster):",
        "",
        "| engine | passing | vs base | false accept | false reject | mask avg | mask p50 | mask p99 | compile p50 |",
        "|:---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e, r in totals.items():
        lines.append(
            f"| {e} | {r['passing']} | {r['passing'] - base['passing']:+d} | {r['false_accept']} | {r['false_reject']} | "
            f"{ratio(r['mask_avg_us'], base['mask_avg_us'])} | {ratio(r['mask_p50_us'], base['mask_p50_us'])} | "
            f"{ratio(r['mask_p99_us'], base['mask_p99_us'])} | {ratio(r['compile_p50_ms'], base['compile_p50_ms'])} |"
        )
    return "\n".join(lines) + "\n"
