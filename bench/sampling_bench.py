"""AWRS vs full token masking (and genlm-control's AWRS where installed), Llama 3 vocabulary.

Two toy language models over the real 128k Llama 3 vocabulary, no weights needed:

* **agrees** -- puts most of its mass (``--agree-mass``, default 0.9) on the next token of a
  valid target text, the rest on random noise: a good model that mostly wants valid text;
* **fights** -- random logits with extra mass on tokens the constraint rejects (letters
  where the constraint wants digits and punctuation): every step needs many rejections.

For each (constraint, model) the same number of tokens is decoded with AWRS and with full
masking; we report constraint checks per token, masks per token and *engine* time per
token.  Both go through the same ``run`` loop and its one timer, which stops only around
the decoder's ``start``/``step``/``reorder``: engine time is the distribution work (AWRS:
block maxima, its lazy draws, the full softmax when a rejection needs the normaliser;
masking: the full softmax, the masked copy and its draw), the constraint work (AWRS: its
checks; masking: the batch mask fill and unpack), the budget rule (AWRS: per checked token;
masking: the vectorised budget mask of the whole vocabulary on steps where the budget can
bind), advancing the matcher, and the loop's bookkeeping.
Full masking is shown twice: with the DFA's per-state mask cache (the best case for a
regex, each state's mask computed once) and "cold" (the mask recomputed each step, what a
grammar or a fresh state costs).  genlm-control's AWRS runs on the same toy model and our
matcher's ``check`` as its condition, so only the sampler differs.

Run:  python bench/sampling_bench.py [--tokens 64] [--reps 6]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import constrain  # noqa: E402
from constrain._data import tokenizer_path  # noqa: E402
from constrain.sampling import run  # noqa: E402

try:  # (absent in checkouts before the per-state budget cache: the bench runs on those too)
    from constrain.sampling.budget import clear_target_cache
except ImportError:  # pragma: no cover

    def clear_target_cache() -> None:
        pass


REGEX = r'\{"id": [0-9]+, "name": "[a-z ]+", "tags": \[("[a-z]+"(, "[a-z]+")*)?\]\}'
TARGET = (
    '{"id": 48213, "name": "ada lovelace and charles babbage designed the analytical engine", '
    '"tags": ["math", "history", "computing", "engines", "notes"]}'
)
SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["id", "name", "tags"],
    "additionalProperties": False,
}
SCHEMA_TARGET = '{"id":48213,"name":"ada lovelace and charles babbage designed the analytical engine","tags":["math","history","computing"]}'


class AgreeingDecoder:
    """Most mass on a valid token: the next target token while on the target's path, else
    EOS when the text is complete, else a byte that shortens the completion (the model
    steers back to a valid ending)."""

    def __init__(self, vocab, target: str, mass: float, seed: int, compiled=None) -> None:
        self.vocab_size = len(vocab)
        self.vocab = vocab
        self.compiled = compiled
        self.target = vocab.encode(target)
        self.eos = vocab.eos_token_ids[0]
        self.bytes_tokens = {}
        for i in range(len(vocab)):
            b = vocab.token_bytes(i)
            if len(b) == 1:
                self.bytes_tokens.setdefault(b, i)
        rng = np.random.default_rng(seed)
        self.noise = rng.normal(0, 1, size=(64, self.vocab_size)).astype(np.float32)
        # boost so that the favoured token gets `mass` of the probability
        lse = np.log(np.exp(self.noise.astype(np.float64)).sum(axis=1))
        self.boost = (lse + np.log(mass / (1 - mass))).astype(np.float32)
        self.rows: list[list[int]] = []
        self.matchers: list = []

    def _favoured(self, i: int) -> int:
        r = self.rows[i]
        k = len(r)
        if k < len(self.target) and r == self.target[:k]:
            return self.target[k]
        m = self.matchers[i] if self.matchers else None
        if m is None or m.is_terminated() or m.is_accepting():
            return self.eos
        from constrain.sampling.budget import completion_after

        best, arg = None, self.eos
        for tid in self.bytes_tokens.values():
            if m.check(tid):
                d = completion_after(m, tid)
                if best is None or d < best:
                    best, arg = d, tid
        return arg

    def _logits(self) -> np.ndarray:
        out = np.empty((len(self.rows), self.vocab_size), dtype=np.float32)
        for i, r in enumerate(self.rows):
            k = len(r)
            out[i] = self.noise[k % 64]
            out[i, self._favoured(i)] = self.boost[k % 64]
        return out

    def start(self, n: int) -> np.ndarray:
        self.rows = [[] for _ in range(n)]
        self.matchers = [self.compiled.matcher() for _ in range(n)] if self.compiled is not None else []
        return self._logits()

    def step(self, tokens: np.ndarray) -> np.ndarray:
        for i, (r, t) in enumerate(zip(self.rows, tokens, strict=True)):
            if self.matchers and not self.matchers[i].is_terminated():
                self.matchers[i].advance(int(t))
            r.append(int(t))
        return self._logits()

    def reorder(self, index) -> None:
        self.rows = [list(self.rows[i]) for i in index]
        self.matchers = [self.matchers[i].copy() for i in index] if self.matchers else []


class FightingDecoder(AgreeingDecoder):
    """Random logits, with +4 on every token containing a letter (mostly invalid)."""

    def __init__(self, vocab, seed: int) -> None:
        self.vocab_size = len(vocab)
        rng = np.random.default_rng(seed)
        letters = np.array([any(chr(c).isalpha() for c in vocab.token_bytes(i)) for i in range(len(vocab))])
        self.noise = rng.normal(0, 1, size=(64, self.vocab_size)).astype(np.float32) + 4.0 * letters
        self.compiled = None
        self.rows = []
        self.matchers = []

    def _logits(self) -> np.ndarray:
        return np.stack([self.noise[len(r) % 64] for r in self.rows])


class ColdCache:
    """Clear the DFA's per-state mask caches before each step (mask recomputed every step).

    ``CompiledDFA.clear_cache`` drops every per-state copy ``fill_mask`` reads; clearing one
    dict by name once left "cold" masking served warm from another.  (Older checkouts, without
    the method, have their dicts cleared by name.)
    """

    def __init__(self, decoder, compiled) -> None:
        self.d = decoder
        self.c = compiled
        self.vocab_size = decoder.vocab_size

    def _clear(self):
        if hasattr(self.c, "clear_cache"):
            self.c.clear_cache()
        else:
            for name in ("_cache", "_cache_i32", "_sparse"):
                cache = getattr(self.c, name, None)
                if cache is not None:
                    cache.clear()
        clear_target_cache()  # the budget mask's per-state distances too

    def start(self, n):
        self._clear()
        return self.d.start(n)

    def step(self, t):
        self._clear()
        return self.d.step(t)

    def reorder(self, i):
        self.d.reorder(i)


def bench_ours(make_decoder, compiled, method: str, tokens: int, reps: int, cold: bool = False, budget: bool = True):
    """One sampler alone (see :func:`bench_interleaved`)."""
    return bench_interleaved(make_decoder, compiled, [method], tokens, reps, cold=cold, budget=budget)[method]


def bench_interleaved(
    make_decoder, compiled, methods: list[str], tokens: int, reps: int, cold: bool = False, budget: bool = True
) -> dict[str, dict]:
    """Per-token figures of each sampler in ``methods``, their timed runs interleaved.

    An untimed first pass over the ``reps`` runs fills every per-state cache on exactly
    these trajectories (DFA masks, budget distances), so "warm" means warm for every
    sampler; ``cold`` clears them every step.  The timed pass then runs rep 0 of each
    method, rep 1 of each, ...: a slow spell of this shared machine (timings move by
    +-20% over seconds) lands on all samplers alike instead of on whichever ran then, so
    the ratios between them are steadier than the absolute figures.
    """
    wrap = (lambda d: ColdCache(d, compiled)) if cold else (lambda d: d)
    for method in methods:
        for rep in range(reps):
            run(wrap(make_decoder()), compiled, method=method, max_new_tokens=tokens, seed=rep,
                budget=budget, raise_on_dead=budget)
    acc = {m: {"engine": 0.0, "checks": 0.0, "masks": 0.0, "tokens": 0, "valid": True} for m in methods}
    for rep in range(reps):
        for method in methods:
            # without the budget rule a run may stop incomplete at max_new_tokens: shown as valid=NO
            r = run(wrap(make_decoder()), compiled, method=method, max_new_tokens=tokens, seed=rep,
                    budget=budget, raise_on_dead=budget)
            a = acc[method]
            a["engine"] += r.stats.engine_time
            a["checks"] += r.stats.checks
            a["masks"] += r.stats.masks
            a["tokens"] += r.stats.tokens
            a["valid"] &= compiled.matcher().accepts_text(r.text)
    return {
        m: {"checks": a["checks"] / a["tokens"], "masks": a["masks"] / a["tokens"],
            "ms": 1000 * a["engine"] / a["tokens"], "valid": a["valid"]}
        for m, a in acc.items()
    }


def bench_genlm(make_decoder, compiled, vocab, tokens: int, reps: int):
    """genlm-control's AWRS token sampler with our toy model and our matcher as the condition."""
    try:
        from genlm.control.potential.base import Potential
        from genlm.control.sampler.token import AWRS
    except Exception as exc:  # noqa: BLE001 - any import problem means "not available"
        return {"error": f"genlm-control not importable ({type(exc).__name__}: {exc})"}

    token_bytes = [vocab.token_bytes(i) for i in range(len(vocab))]
    eos_ids = set(vocab.eos_token_ids)
    text_ids = [i for i in range(len(vocab)) if i not in eos_ids and token_bytes[i]]
    text_vocab = [token_bytes[i] for i in text_ids]
    pos = {b: j for j, b in enumerate(text_vocab)}

    class ToyLM(Potential):
        def __init__(self, dec):
            super().__init__(vocabulary=text_vocab)
            self.dec = dec
            self.cache: dict = {}

        def _lp(self, context):
            key = tuple(context)
            got = self.cache.get(key)
            if got is None:
                ids = [text_ids[pos[b]] for b in context]
                self.dec.rows = [ids]
                lg = self.dec._logits()[0].astype(np.float64)
                lg = lg - np.logaddexp.reduce(lg)
                got = np.concatenate([lg[text_ids], [np.logaddexp.reduce(lg[list(eos_ids)])]])
                self.cache[key] = got
            return got

        async def prefix(self, context):
            return 0.0

        async def complete(self, context):
            return 0.0

        async def logw_next(self, context):
            return self.make_lazy_weights(self._lp(context))

    class Condition(Potential):
        def __init__(self):
            super().__init__(vocabulary=text_vocab)
            self.checks = 0

        def _m(self, context):
            m = compiled.matcher()
            for b in context:
                m.advance(text_ids[pos[b]])
            return m

        async def prefix(self, context):
            self.checks += 1
            m = compiled.matcher()
            return 0.0 if m.accepts_prefix_bytes(b"".join(context)) else float("-inf")

        async def complete(self, context):
            self.checks += 1
            return 0.0 if compiled.matcher().accepts_text(b"".join(context)) else float("-inf")

    cond = Condition()

    async def loop() -> tuple[float, int]:
        engine, n_tok = 0.0, 0
        for rep in range(reps):
            np.random.seed(rep)
            lm = ToyLM(make_decoder())
            lm.dec.start(1)
            sampler = AWRS(lm, cond, seed=rep)
            ctx: list = []
            for _ in range(tokens):
                lm._lp(ctx)  # model time excluded: logits are cached before the timer
                t = time.perf_counter()
                tok, _, _ = await sampler.sample(ctx)
                engine += time.perf_counter() - t
                n_tok += 1
                if not isinstance(tok, bytes | bytearray):
                    break
                ctx.append(bytes(tok))
        return engine, n_tok

    try:
        engine, n_tok = asyncio.run(loop())
    except Exception as exc:  # noqa: BLE001 - report, do not hide, a peer failure
        return {"error": f"genlm-control AWRS failed: {type(exc).__name__}: {exc}"}
    return {"checks": cond.checks / max(n_tok, 1), "masks": 0.0, "ms": 1000 * engine / max(n_tok, 1), "valid": None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=6)
    ap.add_argument("--agree-mass", type=float, default=0.9)
    ap.add_argument("--no-genlm", action="store_true")
    ap.add_argument("--no-schema", action="store_true")
    ap.add_argument(
        "--no-budget",
        action="store_true",
        help="decode without the max_new_tokens completion rule (default: on, as run() does); "
        "masking then skips its vectorised budget mask and AWRS its per-token budget check",
    )
    args = ap.parse_args()

    budget = not args.no_budget
    path = tokenizer_path("llama3")
    t = time.perf_counter()
    vocab = constrain.Vocabulary.from_pretrained(path)
    print(f"Llama 3 vocabulary: {len(vocab)} tokens (loaded in {time.perf_counter() - t:.1f}s)")
    cases = [("regex", constrain.regex(REGEX), TARGET)]
    if not args.no_schema:
        try:
            cases.append(("json-schema", constrain.json_schema(SCHEMA), SCHEMA_TARGET))
        except Exception as exc:  # noqa: BLE001
            print(f"(JSON schema case skipped: {exc})")
    rows = []
    for cname, spec, target in cases:
        t = time.perf_counter()
        compiled = constrain.compile(spec, vocab)
        # first-call costs (numba compile or cache load, first masks) paid here, reported
        # separately: one full untimed run per method with the bench's own settings, so every
        # kernel either timed sampler touches (the budget mask's target-state kernel included:
        # it only runs once the budget binds) is loaded before the clock starts
        for method in ("lcd", "awrs"):
            run(
                AgreeingDecoder(vocab, target, args.agree_mass, 0, compiled),
                compiled,
                method=method,
                max_new_tokens=args.tokens,
                seed=0,
                budget=budget,
                raise_on_dead=False,
            )
        print(f"{cname}: compile + warm-up {time.perf_counter() - t:.2f}s")
        for mname, make in (
            ("agrees", lambda target=target, compiled=compiled: AgreeingDecoder(vocab, target, args.agree_mass, 1, compiled)),
            ("fights", lambda: FightingDecoder(vocab, 2)),
        ):
            # AWRS and warm masking interleaved run by run; cold masking (which clears the
            # caches the warm runs rely on) after them
            both = bench_interleaved(make, compiled, ["awrs", "lcd"], args.tokens, args.reps, budget=budget)
            res = {"AWRS (ours)": both["awrs"], "full mask, warm cache (ours)": both["lcd"]}
            if hasattr(compiled, "_cache"):
                res["full mask, cold (ours)"] = bench_ours(
                    make, compiled, "lcd", args.tokens, args.reps, cold=True, budget=budget
                )
            if not args.no_genlm and cname == "regex":
                res["AWRS (genlm-control)"] = bench_genlm(make, compiled, vocab, min(args.tokens, 24), 1)
            for k, v in res.items():
                rows.append((cname, mname, k, v))

    print()
    print(
        f"Engine time per token (model excluded), {args.tokens} tokens x {args.reps} runs, Llama 3 vocabulary, "
        f"budget rule {'on' if budget else 'off'}"
    )
    hdr = f"| {'constraint':11s} | {'model':6s} | {'sampler':30s} | {'checks/tok':>10s} | {'masks/tok':>9s} | {'ms/tok':>8s} | {'vs AWRS':>8s} | valid |"
    print(hdr)
    print("|" + "|".join("-" * (len(c)) for c in hdr.split("|")[1:-1]) + "|")
    base: dict = {}
    for cname, mname, k, v in rows:
        if k == "AWRS (ours)":
            base[(cname, mname)] = v["ms"]
    for cname, mname, k, v in rows:
        if "error" in v:
            print(f"| {cname:11s} | {mname:6s} | {k:30s} | {v['error']} |")
            continue
        ratio = v["ms"] / base[(cname, mname)]
        valid = "-" if v["valid"] is None else ("yes" if v["valid"] else "NO")
        print(f"| {cname:11s} | {mname:6s} | {k:30s} | {v['checks']:10.1f} | {v['masks']:9.2f} | {v['ms']:8.3f} | {ratio:7.1f}x | {valid:5s} |")
    # the full softmax pass over the vocabulary (max, exp, block sums): masking pays it every
    # step; AWRS only when a rejection needs the normaliser (its first draws are lazy)
    from constrain.sampling.core import Proposal

    lg = np.random.default_rng(0).normal(size=len(vocab)).astype(np.float32)
    Proposal(lg, lazy=False)
    t = time.perf_counter()
    for _ in range(50):
        Proposal(lg, lazy=False)
    full = 1000 * (time.perf_counter() - t) / 50
    print()
    print(f"full softmax pass over {len(vocab)} logits (every masking step; AWRS only after a rejection): {full:.3f} ms")
    for cname in dict.fromkeys(c for c, *_ in rows):
        a = base.get((cname, "agrees"))
        for label in ("full mask, cold (ours)", "full mask, warm cache (ours)"):
            m = next((v["ms"] for c, mm, k, v in rows if c == cname and mm == "agrees" and k == label), None)
            if a and m:
                goal = "meets" if a <= m / 10 else "misses"
                print(f"{cname}, agreeing model: AWRS engine time is 1/{m / a:.1f} of {label} ({goal} the 1/10 goal)")


if __name__ == "__main__":
    main()
