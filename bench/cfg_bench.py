r"""CFG masks on JSON: constrain vs llguidance (same Lark grammar) vs xgrammar (its JSON grammar).

    python bench/cfg_bench.py [--instances 500] [--max-tokens 400] [--seed 0]

Walks valid instances from ``jsonschemabench`` (each schema's ``tests`` with ``valid: true``,
serialised with ``json.dumps``), tokenised with the exact Llama 3 encoder, through the JSON
grammar: before every token each engine computes the full vocabulary mask (timed) and the
token must be allowed; EOS must be allowed at the end.  Compile time is grammar text ->
ready matcher.  All engines run single-threaded in this process, on the same token ids, and
keep their caches across instances (as a server would reuse one compiled grammar).  The
engines take turns instance by instance (order rotated), so drifts in machine speed during the
run do not bias the ratios.
Numba's first call (JIT or on-disk cache load) is measured once, on a warm-up instance that
is not part of the timing, and reported on its own.  By default ``gc.freeze()`` runs after
set-up, the warm-up included (the usual latency setting for Python servers, and what the
JSONSchemaBench workers do): otherwise the parser's allocations trigger full collections
that walk the whole torch/transformers heap and Numba's loaded kernels; ``--no-gc-freeze``
shows the difference.
"""

from __future__ import annotations

import argparse
import gc
import glob
import json
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

for _v in ("RAYON_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import constrain  # noqa: E402
from constrain._data import shared_path, tokenizer_path  # noqa: E402
from constrain.engine.cfg_matcher import CompiledGrammar  # noqa: E402
from constrain.engine.matcher import allocate_bitmask  # noqa: E402

JSON_LARK = Path(__file__).resolve().parent.parent / "grammars" / "json.lark"


def load_instances(n: int, seed: int) -> list[str]:
    files = sorted(glob.glob(str(shared_path("jsonschemabench") / "*.jsonl")))
    if not files:
        raise SystemExit("no jsonschemabench data (set CONSTRAIN_SHARED)")
    per_file: list[list[str]] = []
    for f in files:
        docs = []
        with open(f) as fh:
            for line in fh:
                rec = json.loads(line)
                for t in rec.get("tests", []) or []:
                    if t.get("valid") is True:
                        docs.append(json.dumps(t["data"]))
        per_file.append(docs)
    rng = random.Random(seed)
    for d in per_file:
        rng.shuffle(d)
    out: list[str] = []
    i = 0
    while len(out) < n and any(per_file):
        d = per_file[i % len(per_file)]
        if d:
            out.append(d.pop())
        i += 1
    return out


def stats(xs: list[float]) -> dict[str, float]:
    a = np.array(xs) * 1e6
    return {"mean": a.mean(), "p50": np.percentile(a, 50), "p99": np.percentile(a, 99), "max": a.max()}


def bit(words: np.ndarray, t: int) -> bool:
    return bool((int(words[t >> 5]) >> (t & 31)) & 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, default=500)
    ap.add_argument("--max-tokens", type=int, default=400, help="skip instances longer than this")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--engines", default="constrain,llguidance,xgrammar")
    ap.add_argument(
        "--no-gc-freeze",
        action="store_true",
        help="keep the interpreter's start-up heap in the cyclic GC (default: gc.freeze() after set-up)",
    )
    args = ap.parse_args()
    from tqdm import tqdm
    from transformers import AutoTokenizer

    engines = args.engines.split(",")
    tok_dir = tokenizer_path("llama3")
    hf = AutoTokenizer.from_pretrained(str(tok_dir))
    vocab = constrain.Vocabulary.from_hf(hf)
    text = JSON_LARK.read_text()

    pool = load_instances(args.instances * 3, args.seed)
    seqs: list[list[int]] = []
    for d in pool:
        ids = vocab.encode(d)
        if 0 < len(ids) <= args.max_tokens:
            seqs.append(ids)
        if len(seqs) == args.instances + 1:
            break
    warm, seqs = seqs[0], seqs[1:]
    n_tok = sum(len(s) for s in seqs)
    print(
        f"{len(seqs)} instances, {n_tok} tokens (llama3, {len(vocab)} ids); warm-up instance of {len(warm)} tokens"
    )

    results: dict[str, dict] = {}
    walkers: dict[str, Callable[[list[int]], tuple[list[float], int]]] = {}
    constrain.grammar('start: "a"')  # import lark's loader outside the timed compile
    if not args.no_gc_freeze:
        # torch/transformers leave millions of objects on the heap; without this, each full
        # collection triggered by the parser's allocations traverses them all (~100 ms pauses)
        gc.collect()
        gc.freeze()

    # ---- set-up: compile (timed), then a walker per engine ---------------------------------
    if "constrain" in engines:
        from constrain.automata import clear_cache

        cts = []
        for _ in range(5):
            clear_cache()
            t0 = time.perf_counter()
            cg = CompiledGrammar(constrain.grammar(text), vocab)
            cts.append(time.perf_counter() - t0)
        bm = allocate_bitmask(len(vocab))
        t0 = time.perf_counter()
        m = cg.matcher()
        m.fill_mask(bm)
        first_call = time.perf_counter() - t0
        for t in warm:
            m.advance(t)
        cg2 = CompiledGrammar(constrain.grammar(text), vocab)  # cold caches for the timed run
        results["constrain"] = {"compile": float(np.median(cts)), "first": first_call}

        def walk_constrain(ids: list[int]) -> tuple[list[float], int]:
            times: list[float] = []
            m = cg2.matcher()
            for t in ids:
                a = time.perf_counter()
                m.fill_mask(bm)
                times.append(time.perf_counter() - a)
                if not bit(bm.view(np.uint32), t):
                    return times, 1
                m.advance(t)
            m.fill_mask(bm)
            return times, int(not bit(bm.view(np.uint32), vocab.eos_token_ids[0]))

        walkers["constrain"] = walk_constrain

    if "llguidance" in engines:
        import llguidance
        import llguidance.hf

        lt = llguidance.hf.from_tokenizer(hf)
        lwords = np.zeros((lt.vocab_size + 31) // 32, dtype=np.int32)
        cts = []
        for _ in range(5):
            t0 = time.perf_counter()
            g = llguidance.LLMatcher.grammar_from_lark(text)
            tmpl = llguidance.LLMatcher(lt, g, log_level=0)
            cts.append(time.perf_counter() - t0)
        assert not tmpl.is_error(), tmpl.get_error()
        results["llguidance"] = {"compile": float(np.median(cts)), "first": float("nan")}

        def walk_llguidance(ids: list[int]) -> tuple[list[float], int]:
            times: list[float] = []
            m = tmpl.deep_copy()
            for t in ids:
                a = time.perf_counter()
                m.unsafe_compute_mask_ptr(lwords.ctypes.data, lwords.nbytes)
                times.append(time.perf_counter() - a)
                if not bit(lwords.view(np.uint32), t):
                    return times, 1
                m.consume_token(t)
            m.unsafe_compute_mask_ptr(lwords.ctypes.data, lwords.nbytes)
            return times, int(not bit(lwords.view(np.uint32), int(lt.eos_token)))

        walkers["llguidance"] = walk_llguidance

    if "xgrammar" in engines:
        import xgrammar

        info = xgrammar.TokenizerInfo.from_huggingface(hf)
        compiler = xgrammar.GrammarCompiler(info, max_threads=1, cache_enabled=False)
        tensor = xgrammar.allocate_token_bitmask(1, info.vocab_size)
        xwords = tensor[0].numpy()
        cts = []
        for _ in range(5):
            t0 = time.perf_counter()
            cj = compiler.compile_builtin_json_grammar()
            cts.append(time.perf_counter() - t0)
        results["xgrammar"] = {"compile": float(np.median(cts)), "first": float("nan")}

        def walk_xgrammar(ids: list[int]) -> tuple[list[float], int]:
            times: list[float] = []
            m = xgrammar.GrammarMatcher(cj)
            for t in ids:
                a = time.perf_counter()
                m.fill_next_token_bitmask(tensor, 0)
                times.append(time.perf_counter() - a)
                if not bit(xwords.view(np.uint32), t):
                    return times, 1
                m.accept_token(t)
            m.fill_next_token_bitmask(tensor, 0)
            return times, int(not bit(xwords.view(np.uint32), int(info.stop_token_ids[0])))

        walkers["xgrammar"] = walk_xgrammar

    if not args.no_gc_freeze:
        # set-up ends after the warm-up, as in the JSONSchemaBench workers: Numba's first
        # call (cache load) leaves ~60k objects on the heap that every later full
        # collection would walk (measured: GC inside masks 6.4 -> 3.0 us per token)
        gc.collect()
        gc.freeze()

    # ---- the timed walk: instance by instance, every engine in turn --------------------------
    # The engines take turns on each instance, in an order rotated per instance, so a change of
    # machine speed during the run (seen here: up to 50% within minutes) falls on all of them
    # alike and the ratios stay comparable; each engine still keeps its caches across instances.
    names = list(walkers)
    all_times: dict[str, list[float]] = {n: [] for n in names}
    bad = dict.fromkeys(names, 0)
    for i, ids in enumerate(tqdm(seqs, desc="instances", leave=False)):
        for k in range(len(names)):
            n = names[(i + k) % len(names)]
            ts, b = walkers[n](ids)
            all_times[n] += ts
            bad[n] += b
    for n in names:
        results[n].update(bad=bad[n], **stats(all_times[n]))
    if "constrain" in results:
        results["constrain"]["stats"] = dict(cg2.stats)

    # ---- table -----------------------------------------------------------------------------------
    print()
    print("| engine | compile ms | mask mean µs | p50 µs | p99 µs | max µs | rejected valid |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['compile'] * 1e3:.2f} | {r['mean']:.1f} | {r['p50']:.1f} | {r['p99']:.1f} | "
            f"{r['max']:.0f} | {r['bad']} |"
        )
    if "constrain" in results:
        c = results["constrain"]
        print()
        print("| constrain / peer | compile | mask mean | p50 | p99 |")
        print("|---|---|---|---|---|")
        for peer in ("llguidance", "xgrammar"):
            if peer in results:
                p = results[peer]
                print(
                    f"| vs {peer} | {c['compile'] / p['compile']:.2f}x | {c['mean'] / p['mean']:.2f}x | "
                    f"{c['p50'] / p['p50']:.2f}x | {c['p99'] / p['p99']:.2f}x |"
                )
        print()
        print(
            f"constrain first mask incl. Numba JIT/cache load: {c['first'] * 1e3:.1f} ms (not in the table)"
        )
        print(f"constrain cache stats: {c['stats']}")
    print(f"gc.freeze() after set-up: {not args.no_gc_freeze}; compile = median of 5 (regex cache cleared)")


if __name__ == "__main__":
    main()
