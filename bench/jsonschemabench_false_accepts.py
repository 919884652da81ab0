"""JSONSchemaBench false accepts, the grammar alone against the grammar with the end check.

For every schema of every split that has test instances in the data (generated instances
are all valid, so only these can be falsely accepted), compile it leniently, then decide
each instance's compact JSON text twice on a byte vocabulary: by the grammar alone (the
parser reaches an accepting state) and by the compiled matcher (``accepts_text``: the
grammar and, for an over-approximated schema, the end-of-document check).  Prints per split
how many schemas have a falsely accepted instance and how many a falsely rejected one, each
way.  No masks and no tokenizer: this is about the language, fast enough for all splits
(~6 minutes on one core).

    python bench/jsonschemabench_false_accepts.py [--split NAME ...] [--timeout 20]
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import constrain  # noqa: E402
from constrain.cli.jsb.data import list_splits, load_split, resolve_data_dir, serialize  # noqa: E402
from constrain.vocab import Vocabulary  # noqa: E402

BYTES = Vocabulary.from_token_bytes([bytes([i]) for i in range(256)] + [None], eos_token_ids=(256,))
COLUMNS = ["schemas", "warned", "fa grammar", "fa checked", "fr grammar", "fr checked", "errors", "timeouts"]


class _Timeout(Exception):
    pass


def _alarm(signum, frame):  # noqa: ARG001
    raise _Timeout()


def decide(compiled, text: str) -> tuple[bool, bool]:
    """(grammar alone accepts, compiled matcher accepts) for one instance text."""
    g = compiled.matcher()
    try:
        g.advance_bytes(text.encode())
        grammar = compiled.parser.accepting(g.pos)
    except ValueError:
        grammar = False
    return grammar, compiled.matcher().accepts_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None, help="folder of <split>.jsonl (default: the shared data)")
    ap.add_argument("--split", action="append", help="split name (repeatable; default: all)")
    ap.add_argument("--timeout", type=int, default=20, help="seconds per schema (compile and decisions)")
    args = ap.parse_args(argv)
    data = resolve_data_dir(args.data)
    splits = args.split or list_splits(data)
    warnings.simplefilter("ignore")
    signal.signal(signal.SIGALRM, _alarm)
    rows: dict[str, Counter] = {}
    listed: list[tuple[str, str]] = []
    t0 = time.time()
    for split in splits:
        c = Counter()
        cases = [case for case in load_split(data, split) if case.tests]
        for case in tqdm(cases, desc=split, leave=False):
            c["schemas"] += 1
            signal.alarm(args.timeout)
            try:
                spec = constrain.json_schema(case.schema)
                compiled = constrain.compile(spec, BYTES)
                res = [(inst.valid, *decide(compiled, serialize(inst.data))) for inst in case.tests]
            except _Timeout:
                c["timeouts"] += 1
                continue
            except Exception:  # noqa: BLE001 - a schema we cannot compile is counted, not fatal
                c["errors"] += 1
                continue
            finally:
                signal.alarm(0)
            c["warned"] += not spec.exact
            c["fa grammar"] += any(not v and g for v, g, _ in res)
            c["fa checked"] += any(not v and a for v, _, a in res)
            c["fr grammar"] += any(v and not g for v, g, _ in res)
            c["fr checked"] += any(v and not a for v, _, a in res)
            if any(not v and a for v, _, a in res) or any(v and not a for v, _, a in res):
                listed.append((case.id, "; ".join(spec.warnings[:2])))
        rows[split] = c
    total = sum(rows.values(), Counter())
    print(f"\nSchemas with test instances; fa/fr = schemas with a false accept/reject ({time.time() - t0:.0f} s)\n")
    print("| split | " + " | ".join(COLUMNS) + " |")
    print("|---|" + "---:|" * len(COLUMNS))
    for name, c in [*rows.items(), ("TOTAL", total)]:
        print(f"| {name} | " + " | ".join(str(c[k]) for k in COLUMNS) + " |")
    for sid, why in listed:
        print(f"  still wrong: {sid}  ({why})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
