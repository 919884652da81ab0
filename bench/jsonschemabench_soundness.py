"""JSONSchemaBench soundness check: every valid instance of every schema we compile is accepted.

Takes the first ``--per-split`` schemas with test instances from each split of
``jsonschemabench`` (shared data), compiles each leniently (flexible whitespace, any property
order) and checks that each valid instance is accepted both as compact JSON and with
``json.dumps`` default spacing; where the schema also compiles in strict mode, each invalid
instance must be rejected.  Decisions go through ``constrain.compile`` when the CFG engine
handles grammars, else through the Earley oracle.  Prints a table per split and lists every
false reject (there must be none).

    python bench/jsonschemabench_soundness.py --per-split 100
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import time
from collections import defaultdict

from tqdm import tqdm

from constrain._data import shared_path
from constrain.cli.conformance import Ours
from constrain.errors import ConstrainError
from constrain.schema import json_schema


class _Timeout(Exception):
    pass


def _alarm(signum, frame):  # noqa: ARG001
    raise _Timeout()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-split", type=int, default=100)
    ap.add_argument("--timeout", type=int, default=20, help="seconds per schema (compile + checks)")
    ap.add_argument("--no-format", action="store_true", help="treat format as annotation")
    args = ap.parse_args(argv)
    folder = shared_path("jsonschemabench")
    ours = Ours(lambda uri: (_ for _ in ()).throw(LookupError(uri)))
    engine = "constrain.compile" if ours._engine_ok() else "Earley oracle (constrain.schema.oracle)"
    print(f"decisions via {engine}")
    signal.signal(signal.SIGALRM, _alarm)
    rows = {}
    false_rejects = []
    times = []
    for path in sorted(folder.glob("*.jsonl")):
        split = path.stem
        recs = []
        with path.open() as fh:
            for line in fh:
                r = json.loads(line)
                if r.get("tests"):
                    recs.append(r)
                if len(recs) >= args.per_split:
                    break
        c = defaultdict(int)
        for r in tqdm(recs, desc=split, leave=False):
            c["schemas"] += 1
            signal.alarm(args.timeout)
            try:
                t0 = time.perf_counter()
                try:
                    comp = json_schema(r["schema"], property_order="any", assert_format=not args.no_format)
                except ConstrainError as e:
                    c["compile_error"] += 1
                    c["err:" + type(e).__name__] += 1
                    continue
                times.append(time.perf_counter() - t0)
                try:
                    json_schema(r["schema"], property_order="any", assert_format=not args.no_format, strict=True)
                    strict = True
                except ConstrainError:
                    strict = False
                c["compiled"] += 1
                c["strict"] += strict
                if ours._engine_ok():
                    import constrain

                    cc = constrain.compile(comp, ours.vocab)

                    def accepts(t: str, cc=cc) -> bool:
                        return cc.matcher().accepts_text(t)
                else:
                    from constrain.schema.oracle import EarleyRecognizer

                    accepts = EarleyRecognizer(comp.grammar).accepts
                for tc in r["tests"]:
                    data = tc["data"]
                    if tc["valid"]:
                        for text in (json.dumps(data, separators=(",", ":")), json.dumps(data)):
                            c["valid_texts"] += 1
                            if accepts(text):
                                c["valid_accepted"] += 1
                            else:
                                false_rejects.append((split, r.get("description", ""), text[:200]))
                    elif strict:
                        c["invalid_strict"] += 1
                        if not accepts(json.dumps(data)):
                            c["invalid_rejected"] += 1
                    else:
                        c["invalid_lenient"] += 1
                        c["invalid_lenient_rejected"] += not accepts(json.dumps(data))
            except _Timeout:
                c["timeout"] += 1
            finally:
                signal.alarm(0)
        rows[split] = c
    cols = ["schemas", "compiled", "strict", "compile_error", "timeout", "valid_texts", "valid_accepted",
            "invalid_strict", "invalid_rejected", "invalid_lenient", "invalid_lenient_rejected"]
    print("| split | " + " | ".join(cols) + " |")
    print("|" + "---|" * (len(cols) + 1))
    tot = defaultdict(int)
    for split, c in rows.items():
        for k in cols:
            tot[k] += c[k]
        print(f"| {split} | " + " | ".join(str(c[k]) for k in cols) + " |")
    print("| **total** | " + " | ".join(str(tot[k]) for k in cols) + " |")
    errs = defaultdict(int)
    for c in rows.values():
        for k, v in c.items():
            if k.startswith("err:"):
                errs[k[4:]] += v
    if errs:
        print("compile errors by type:", dict(errs))
    if times:
        ts = sorted(times)
        print(f"compile time (lenient) p50 {statistics.median(ts) * 1e3:.1f} ms, "
              f"p99 {ts[int(0.99 * (len(ts) - 1))] * 1e3:.1f} ms, max {ts[-1] * 1e3:.1f} ms")
    print(f"false rejects: {len(false_rejects)}")
    for fr in false_rejects[:50]:
        print("  ", fr)
    return 1 if false_rejects else 0


if __name__ == "__main__":
    sys.exit(main())
