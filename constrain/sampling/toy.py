"""Toy language models whose distributions can be enumerated exactly (tests, benchmarks).

An :class:`NGramLM` maps the last ``order - 1`` tokens to a next-token distribution (a
default distribution covers unseen contexts).  :func:`enumerate_language` walks every
token sequence the constraint allows up to a length, giving the exact global posterior
``p(x | x in language)`` and the exact distribution token masking produces, so samplers can
be compared against the truth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from constrain.sampling.smc import Decoder


class NGramLM:
    """Next-token probabilities from an n-gram table over a small vocabulary."""

    def __init__(
        self,
        vocab_size: int,
        table: dict[tuple[int, ...], Sequence[float]],
        default: Sequence[float] | None = None,
        order: int = 2,
    ) -> None:
        self.vocab_size = vocab_size
        self.order = order
        self.table = {tuple(k): self._norm(v) for k, v in table.items()}
        self.default = self._norm(default) if default is not None else np.full(vocab_size, 1.0 / vocab_size)

    def _norm(self, v: Sequence[float]) -> np.ndarray:
        a = np.asarray(v, dtype=np.float64)
        if a.shape != (self.vocab_size,) or (a < 0).any() or a.sum() <= 0:
            raise ValueError(f"a distribution needs {self.vocab_size} non-negative entries with a positive sum")
        return a / a.sum()

    def probs(self, context: Sequence[int]) -> np.ndarray:
        k = self.order - 1
        key = tuple(context[-k:]) if k > 0 else ()
        if len(context) < k:
            key = tuple(context)
        return self.table.get(key, self.default)

    def logits(self, context: Sequence[int]) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self.probs(context)).astype(np.float32)

    def seq_prob(self, tokens: Sequence[int]) -> float:
        p = 1.0
        for i, t in enumerate(tokens):
            p *= float(self.probs(tokens[:i])[t])
        return p

    @classmethod
    def random(cls, vocab_size: int, rng: np.random.Generator, order: int = 2, alpha: float = 0.5) -> NGramLM:
        """Dirichlet-random bigram (order 2) table over every context token."""
        table = {(t,): rng.dirichlet(np.full(vocab_size, alpha)) for t in range(vocab_size)}
        table[()] = rng.dirichlet(np.full(vocab_size, alpha))
        return cls(vocab_size, table, order=order)


class ToyDecoder(Decoder):
    """:class:`Decoder` over an :class:`NGramLM` (counts forward calls for benchmarks)."""

    def __init__(self, lm: NGramLM, prompt: Sequence[int] = ()) -> None:
        self.lm = lm
        self.vocab_size = lm.vocab_size
        self.prompt = list(prompt)
        self.rows: list[list[int]] = []
        self.calls = 0

    def _logits(self) -> np.ndarray:
        self.calls += 1
        return np.stack([self.lm.logits(r) for r in self.rows])

    def start(self, n: int) -> np.ndarray:
        self.rows = [list(self.prompt) for _ in range(n)]
        return self._logits()

    def step(self, tokens: np.ndarray) -> np.ndarray:
        for r, t in zip(self.rows, tokens, strict=True):
            r.append(int(t))
        return self._logits()

    def reorder(self, index: np.ndarray) -> None:
        self.rows = [list(self.rows[int(i)]) for i in index]


def enumerate_language(lm: NGramLM, compiled, max_len: int) -> tuple[dict, dict, float]:
    """Exact distributions over complete outputs of at most ``max_len`` tokens (EOS included).

    Returns ``(posterior, lcd, z)``: the global posterior ``p(x)/Z`` over the valid
    sequences that end with EOS, the distribution token masking (LCD) samples (sequences it
    cannot finish within ``max_len`` are dropped and the rest renormalised), and ``Z``, the
    model's probability of producing a member of the language within ``max_len`` tokens.
    """
    eos = set(compiled.vocab.eos_token_ids)
    joint: dict[tuple[int, ...], float] = {}
    lcd: dict[tuple[int, ...], float] = {}

    def walk(m, seq: list[int], p_joint: float, p_lcd: float) -> None:
        if len(seq) >= max_len:
            return
        probs = lm.probs(seq)
        allowed = [t for t in range(lm.vocab_size) if probs[t] > 0 and m.check(t)]
        zloc = sum(probs[t] for t in allowed)
        for t in allowed:
            s2 = [*seq, t]
            if t in eos:
                joint[tuple(s2)] = p_joint * probs[t]
                lcd[tuple(s2)] = p_lcd * probs[t] / zloc
                continue
            m.advance(t)
            walk(m, s2, p_joint * probs[t], p_lcd * probs[t] / zloc)
            m.rollback(1)

    walk(compiled.matcher(), [], 1.0, 1.0)
    z = sum(joint.values())
    post = {k: v / z for k, v in joint.items()} if z > 0 else {}
    lz = sum(lcd.values())
    lcd_n = {k: v / lz for k, v in lcd.items()} if lz > 0 else {}
    return post, lcd_n, z


def total_variation(p: dict, q: dict) -> float:
    keys = set(p) | set(q)
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in keys)


def weighted_distribution(result) -> dict:
    """The weighted-particle distribution of an SMC :class:`SamplingResult` (keys: token tuples)."""
    lw = np.array([p.log_weight for p in result.particles])
    out: dict[tuple[int, ...], float] = {}
    if not np.isfinite(lw).any():
        return out
    w = np.exp(lw - lw[np.isfinite(lw)].max())
    w /= w.sum()
    for p, wi in zip(result.particles, w, strict=True):
        if wi > 0 and not math.isnan(wi):
            out[tuple(p.tokens)] = out.get(tuple(p.tokens), 0.0) + float(wi)
    return out
