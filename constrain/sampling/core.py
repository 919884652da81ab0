"""Shared pieces of every sampler: the model distribution after temperature/top-k/top-p, and
the per-step verdict cache.

All per-step vocabulary work is one float32 pass (scale, filter, ``exp``) plus a float64
cumulative sum for inverse-CDF draws; nothing sorts the whole vocabulary.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from constrain.sampling.budget import _dfa_parts, budget_mask, fits

if TYPE_CHECKING:
    from constrain.engine.matcher import Matcher
    from constrain.sampling.stats import SamplingStats


class Proposal:
    """The model's next-token distribution ``p`` after temperature, top-k and top-p.

    ``weights`` holds unnormalised float32 masses (``exp(logit/T - max)``, 0 for filtered
    tokens); ``p(t) = weights[t] / total``.  Draws use a lazily built float64 CDF.
    """

    __slots__ = ("weights", "total", "_blocks", "_padded", "logits")

    BLOCK = 1024

    def __init__(
        self,
        logits: np.ndarray,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
    ) -> None:
        x = np.asarray(logits, dtype=np.float32).reshape(-1)
        if temperature <= 0:
            raise ValueError("temperature must be > 0 for sampling (use greedy=True for argmax)")
        if temperature != 1.0:
            x = x * np.float32(1.0 / temperature)
        if top_k is not None and 0 < top_k < len(x):
            kth = np.partition(x, len(x) - top_k)[len(x) - top_k]
            x = np.where(x >= kth, x, np.float32(-np.inf))
        self.logits = x
        mx = float(x.max())
        if math.isnan(mx):
            raise ValueError("the model's logits contain NaN")
        if mx == -math.inf:
            raise ValueError("every logit is -inf: the model gives no token any probability")
        n = len(x)
        padded = np.zeros(-(-n // self.BLOCK) * self.BLOCK, dtype=np.float32)
        w = padded[:n]
        np.subtract(x, np.float32(mx), out=w)
        np.exp(w, out=w)
        if top_p is not None and 0 < top_p < 1:
            w[:] = _top_p(w, top_p)
        self.weights = w
        self._padded = padded
        self._blocks = np.cumsum(padded.reshape(-1, self.BLOCK).sum(axis=1), dtype=np.float64)
        self.total = float(self._blocks[-1])

    @classmethod
    def from_weights(cls, weights: np.ndarray, logits: np.ndarray) -> Proposal:
        """A proposal over given unnormalised float32 ``weights`` (e.g. masked ones)."""
        self = cls.__new__(cls)
        n = len(weights)
        self._padded = np.zeros(-(-n // cls.BLOCK) * cls.BLOCK, dtype=np.float32)
        self._padded[:n] = weights
        self.weights = self._padded[:n]
        self._blocks = np.cumsum(self._padded.reshape(-1, cls.BLOCK).sum(axis=1), dtype=np.float64)
        self.total = float(self._blocks[-1])
        self.logits = logits
        return self

    def p(self, t: int) -> float:
        return float(self.weights[t]) / self.total

    def mass(self, tokens) -> float:
        idx = np.fromiter(tokens, dtype=np.int64) if not isinstance(tokens, np.ndarray) else tokens
        return float(self.weights[idx].sum(dtype=np.float64)) / self.total if len(idx) else 0.0

    def draw(self, rng: np.random.Generator) -> int:
        """One exact draw from ``p``: pick a block of 1024 by its mass, then a token inside it.

        Two small float64 cumulative sums instead of one over the whole vocabulary.
        """
        blocks = self._blocks
        while True:
            b = min(int(np.searchsorted(blocks, rng.random() * blocks[-1], side="right")), len(blocks) - 1)
            inner = np.cumsum(self._padded[b * self.BLOCK : (b + 1) * self.BLOCK], dtype=np.float64)
            if inner[-1] > 0:
                break
        j = min(int(np.searchsorted(inner, rng.random() * inner[-1], side="right")), self.BLOCK - 1)
        while inner[j] == (inner[j - 1] if j else 0.0):  # a zero-mass token: step back to a real one
            j -= 1
        return b * self.BLOCK + j

    def log_p(self) -> np.ndarray:
        """Normalised float32 log-probabilities (``-inf`` for filtered tokens)."""
        with np.errstate(divide="ignore"):
            return np.log(self.weights) - np.float32(np.log(self.total))


def _top_p(w: np.ndarray, top_p: float) -> np.ndarray:
    """Keep the smallest high-probability set with mass >= top_p (nucleus); one partial sort."""
    total = float(w.sum(dtype=np.float64))
    k = 64
    n = len(w)
    while True:
        k = min(k, n)
        idx = np.argpartition(w, n - k)[n - k :]
        idx = idx[np.argsort(-w[idx], kind="stable")]
        c = np.cumsum(w[idx], dtype=np.float64)
        hit = np.searchsorted(c, top_p * total, side="left")
        if hit < k or k == n:
            keep = idx[: min(hit + 1, k)]
            out = np.zeros_like(w)
            out[keep] = w[keep]
            return out
        k *= 8


def state_key(matcher: Matcher):
    """A hashable key for the matcher's state, shared by equal states where cheap to know."""
    s = getattr(matcher, "state", None)
    if isinstance(s, int | np.integer):
        return ("dfa", id(matcher.compiled), int(s), matcher.is_terminated())
    return ("obj", id(matcher))


class Checker:
    """``valid(t)`` = ``matcher.check(t)`` and the budget rule, cached per (state, token).

    One instance per (matcher, step); pass the same ``cache`` dict to the checkers of all
    particles in a step so equal states share verdicts.
    """

    __slots__ = ("matcher", "remaining", "stats", "cache", "key", "budget_rejected")

    def __init__(
        self,
        matcher: Matcher,
        remaining: int | None = None,
        stats: SamplingStats | None = None,
        cache: dict | None = None,
    ) -> None:
        self.matcher = matcher
        self.remaining = remaining
        self.stats = stats
        self.cache = {} if cache is None else cache
        self.key = state_key(matcher)
        self.budget_rejected = 0

    def __call__(self, t: int) -> bool:
        k = (self.key, t)
        v = self.cache.get(k)
        if v is not None:
            if self.stats is not None:
                self.stats.cache_hits += 1
            return v
        v = self.matcher.check(t)
        if self.stats is not None:
            self.stats.checks += 1
        if v and self.remaining is not None:
            if self.stats is not None:
                self.stats.budget_checks += 1
            if not fits(self.matcher, t, self.remaining):
                v = False
                self.budget_rejected += 1
        self.cache[k] = v
        return v

    def fits_budget(self, t: int) -> bool:
        """Budget rule alone, for tokens a mask already allowed."""
        if self.remaining is None:
            return True
        k = (self.key, t, "budget")
        v = self.cache.get(k)
        if v is None:
            if self.stats is not None:
                self.stats.budget_checks += 1
            v = fits(self.matcher, t, self.remaining)
            self.cache[k] = v
        return v

    def mask(self) -> np.ndarray:
        """The matcher's full mask as bool (counted in the statistics).

        For DFA matchers the budget rule is folded in exactly (one vectorised pass over the
        vocabulary); for other matchers callers still test drawn tokens with
        :meth:`fits_budget`.
        """
        if self.stats is not None:
            self.stats.masks += 1
        m = self.matcher.mask()
        if self.remaining is not None and _dfa_parts(self.matcher) is not None:
            m = budget_mask(self.matcher, m, self.remaining)
        return m
