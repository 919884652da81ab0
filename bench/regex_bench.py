r"""Regex constraints: compile time and per-token mask time, constrain vs outlines-core, one run.

    python bench/regex_bench.py [--tokenizer llama3] [--strings 8] [--seed 0]

For each regex, both engines compile against the same vocabulary; then the same token
sequences (random members of the language, tokenised with the exact encoder) are fed
through both, timing a full mask before every token and checking the masks agree.
constrain precomputes every state's mask for DFAs of up to 512 states (the default) and
fills larger ones lazily; the "lazy" column shows the compile cost without any mask.
Regexes use [0-9], not \d: outlines-core's \d is Unicode (Rust regex), ours ECMA/ASCII.
Numba's first-call (JIT/cache load) cost is measured once and reported on its own.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import constrain  # noqa: E402
from constrain._data import tokenizer_path  # noqa: E402
from constrain.automata import clear_cache  # noqa: E402
from constrain.engine.matcher import bitmask_to_bool  # noqa: E402

REGEXES = {
    "integer": r"-?(0|[1-9][0-9]*)",
    "float": r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?",
    "date": r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])",
    "phone": r"\([0-9]{3}\) [0-9]{3}-[0-9]{4}",
    "email": r"[a-z0-9._%+-]{1,20}@[a-z0-9-]{1,15}\.(com|org|net|io)",
    "ipv4": r"((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])",
    "uuid": r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    "json-string": r'"([^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4}){0,40}"',
    "identifier-list": r"[A-Za-z_][A-Za-z0-9_]{0,15}(, [A-Za-z_][A-Za-z0-9_]{0,15}){0,5}",
    "small-json": r'\{"name": "[A-Za-z ]{1,20}", "age": (0|[1-9][0-9]?), "tags": \[("[a-z]{1,8}"(, "[a-z]{1,8}"){0,3})?\]\}',
}


def _oc_probe(pattern: str, tokenizer: str, q) -> None:
    """Child process: build the outlines-core index once (so a blow-up cannot stall the run)."""
    import outlines_core as oc

    vocab = constrain.Vocabulary.from_pretrained(tokenizer_path(tokenizer))
    table: dict[bytes, list[int]] = {}
    for i, b in enumerate(vocab.all_token_bytes):
        if b:
            table.setdefault(b, []).append(i)
    try:
        oc.Index(pattern, oc.Vocabulary(vocab.eos_token_ids[0], table))
        q.put("ok")
    except ValueError as exc:
        q.put(f"error: {exc}")


def oc_compiles_in_time(pattern: str, tokenizer: str, timeout_s: float) -> str:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_oc_probe, args=(pattern, tokenizer, q))
    p.start()
    p.join(timeout_s)
    if p.is_alive():
        p.kill()
        p.join()
        return f"timeout (> {timeout_s:.0f} s)"
    return q.get() if not q.empty() else "crashed"


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q / 100 * len(xs)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", default="llama3")
    ap.add_argument("--strings", type=int, default=8, help="sampled strings per regex")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="+", metavar="NAME", choices=sorted(REGEXES), help="run just these regexes")
    ap.add_argument("--peer-timeout", type=float, default=60.0, help="outlines-core compile limit (s)")
    args = ap.parse_args()

    try:
        import outlines_core as oc
        import torch
    except ImportError:
        oc = None
        print("outlines-core not installed (pip install -e '.[peers]'): constrain columns only")

    vocab = constrain.Vocabulary.from_pretrained(tokenizer_path(args.tokenizer))
    V = len(vocab)
    words = (V + 31) // 32
    rng = random.Random(args.seed)

    # first-call cost of the Numba kernels (JIT or on-disk cache load), reported separately
    t = time.perf_counter()
    warm = constrain.compile(constrain.regex("x"), vocab).matcher()
    warm.fill_mask(np.zeros(words, np.int32))
    jit_ms = (time.perf_counter() - t) * 1e3

    oc_vocab = None
    if oc is not None:
        table: dict[bytes, list[int]] = {}
        for i, b in enumerate(vocab.all_token_bytes):
            if b:
                table.setdefault(b, []).append(i)
        oc_vocab = oc.Vocabulary(vocab.eos_token_ids[0], table)

    rows = []
    failures: dict[str, str] = {}
    for name, pattern in REGEXES.items():
        if args.only and name not in args.only:
            continue
        print(f"{name} ...", file=sys.stderr, flush=True)
        clear_cache()
        t = time.perf_counter()
        compiled = constrain.compile(constrain.regex(pattern), vocab)
        c_compile = (time.perf_counter() - t) * 1e3
        clear_cache()
        t = time.perf_counter()
        constrain.compile(constrain.regex(pattern), vocab, precompute=False)
        c_lazy = (time.perf_counter() - t) * 1e3

        o_compile = float("nan")
        index = None
        probe = oc_compiles_in_time(pattern, args.tokenizer, args.peer_timeout) if oc_vocab else "n/a"
        if probe != "ok":
            print(f"outlines-core on {name}: {probe}", file=sys.stderr)
            failures[name] = probe
        if oc_vocab is not None and probe == "ok":
            t = time.perf_counter()
            try:
                index = oc.Index(pattern, oc_vocab)
                o_compile = (time.perf_counter() - t) * 1e3
            except ValueError as exc:  # outlines-core could not compile this regex
                print(f"outlines-core failed on {name}: {exc}", file=sys.stderr)

        texts = [compiled.dfa.random_string(rng, max_len=60, stop=0.2).decode() for _ in range(args.strings)]
        c_times: list[float] = []
        o_times: list[float] = []
        mismatches = 0
        oc_rejects = 0  # valid strings outlines-core refused somewhere
        bm = np.zeros(words, dtype=np.int32)
        ot = torch.zeros(words, dtype=torch.int32) if index is not None else None
        for text in texts:
            ids = vocab.encode(text) + [vocab.eos_token_ids[0]]
            m = compiled.matcher()
            guide = oc.Guide(index) if index is not None else None
            for tok in ids:
                if guide is not None and tok in vocab.eos_token_ids and not guide.is_finished():
                    oc_rejects += 1
                    guide = None
                t = time.perf_counter()
                m.fill_mask(bm)
                c_times.append((time.perf_counter() - t) * 1e6)
                if guide is not None:
                    t = time.perf_counter()
                    guide.write_mask_into(ot.data_ptr(), ot.numel(), ot.element_size())
                    o_times.append((time.perf_counter() - t) * 1e6)
                    if not np.array_equal(
                        bitmask_to_bool(bm, V), bitmask_to_bool(ot.numpy(), V)
                    ):
                        mismatches += 1
                assert (int(bm.view(np.uint32)[tok >> 5]) >> (tok & 31)) & 1, (name, text, tok)
                m.advance(tok)
                if guide is not None and tok not in vocab.eos_token_ids:
                    try:
                        guide.advance(tok)
                    except ValueError:
                        oc_rejects += 1  # outlines-core refused a token of a valid string
                        guide = None
        rows.append(
            (name, compiled.dfa.n_states, c_compile, c_lazy, o_compile, c_times, o_times, mismatches, oc_rejects)
        )

    print(f"\nRegex benchmark — vocabulary {args.tokenizer} ({V:,} tokens), {args.strings} strings/regex")
    print(f"Numba first call (JIT or cache load, excluded below): {jit_ms:.0f} ms\n")
    print(
        "| regex | DFA states | constrain compile ms | constrain lazy-mask compile ms | outlines-core compile ms | "
        "compile speed-up (oc/ours) | constrain mask mean µs | p50 | p99 | outlines-core mask mean µs "
        "| p50 | p99 | mask ratio (ours/oc) | masks differing | valid strings outlines-core rejected |"
    )
    print("|" + "---|" * 15)
    for name, n, cc, ce, oc_ms, ct, ot_, mm, orj in rows:
        cm, om = statistics.mean(ct), (statistics.mean(ot_) if ot_ else float("nan"))
        print(
            f"| {name} | {n} | {cc:.1f} | {ce:.1f} | {oc_ms:.1f} | {oc_ms / cc:.0f}x | {cm:.1f} | "
            f"{pct(ct, 50):.1f} | {pct(ct, 99):.1f} | {om:.1f} | "
            f"{pct(ot_, 50) if ot_ else float('nan'):.1f} | {pct(ot_, 99) if ot_ else float('nan'):.1f} | "
            f"{cm / om:.2f} | {mm} | {orj}/{args.strings} |"
        )
    for name, why in failures.items():
        print(f"outlines-core could not compile {name}: {why}")
    both = [r for r in rows if r[4] == r[4]]  # regexes both engines compiled
    tc = sum(r[2] for r in both)
    to = sum(r[4] for r in both)
    allc = [x for r in both for x in r[5]]
    allo = [x for r in both for x in r[6]]
    print(
        f"\nOn the {len(both)} regexes both compiled — total compile: constrain {tc:.0f} ms vs outlines-core {to:.0f} ms ({to / tc:.0f}x faster); "
        f"mean mask: constrain {statistics.mean(allc):.1f} µs vs outlines-core "
        f"{statistics.mean(allo) if allo else float('nan'):.1f} µs"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
