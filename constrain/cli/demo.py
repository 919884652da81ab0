"""``constrain demo``: compile a regex against a real tokenizer and show masked decoding steps.

It needs no model: "logits" come from a seeded random generator, which is the point: the
mask alone makes even random scores produce a valid string.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="compile a regex against a tokenizer and decode with random logits")
    p.add_argument("--tokenizer", default="llama3", help="tokenizer folder, or a name under the shared data")
    p.add_argument(
        "--regex",
        default=r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d",
        help="the constraint (full-match regex)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-tokens", type=int, default=64)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import constrain
    from constrain._data import tokenizer_path

    path = Path(args.tokenizer) if Path(args.tokenizer).exists() else tokenizer_path(args.tokenizer)
    t0 = time.perf_counter()
    vocab = constrain.Vocabulary.from_pretrained(path)
    t1 = time.perf_counter()
    compiled = constrain.compile(constrain.regex(args.regex), vocab)
    t2 = time.perf_counter()
    print(f"vocabulary: {path.name}, {len(vocab):,} tokens ({vocab.kind}), loaded in {t1 - t0:.2f} s")
    print(f"regex:      {args.regex}")
    print(f"compiled:   {compiled.dfa.n_states} DFA states in {1000 * (t2 - t1):.1f} ms")
    rng = np.random.default_rng(args.seed)
    m = compiled.matcher()
    bitmask = np.zeros((len(vocab) + 31) // 32, dtype=np.int32)
    text = b""
    print(f"\n{'step':>4} {'allowed':>8} {'mask µs':>8}  token")
    for step in range(args.max_tokens):
        t = time.perf_counter()
        m.fill_mask(bitmask)
        dt = (time.perf_counter() - t) * 1e6
        allowed = m.mask()
        logits = rng.standard_normal(len(vocab)).astype(np.float32)
        logits[~allowed] = -np.inf
        tok = int(np.argmax(logits))
        if tok in vocab.eos_token_ids:
            print(f"{step:>4} {int(allowed.sum()):>8} {dt:>8.0f}  <eos>")
            break
        m.advance(tok)
        text += vocab.token_bytes(tok)
        print(f"{step:>4} {int(allowed.sum()):>8} {dt:>8.0f}  {vocab.token_bytes(tok)!r}")
    print(f"\noutput: {text.decode('utf-8', 'replace')!r}  (complete match: {compiled.dfa.accepts(text)})")
    return 0
