"""Shared pieces of every sampler: the model distribution after temperature/top-k/top-p, and
the per-step verdict cache.

All per-step vocabulary work is one float32 pass (scale, filter, ``exp``) plus a float64
cumulative sum for inverse-CDF draws; nothing sorts the whole vocabulary.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

# the block maxima and lazy draws in C (native/propose.c); numpy's per-row reduce and the
# numba kernel are the references and the fallback
from constrain._compiled import native as _native
from constrain.errors import InvalidTokenError
from constrain.sampling.budget import _dfa_parts, _max_distance, budget_mask, fits
from constrain.sampling.kernels import counter_uniforms, lazy_draws

if TYPE_CHECKING:
    from constrain.engine.matcher import Matcher
    from constrain.sampling.stats import SamplingStats


class Proposal:
    """The model's next-token distribution ``p`` after temperature, top-k and top-p.

    ``weights`` holds unnormalised float32 masses (``exp(logit/T - max)``, 0 for filtered
    tokens); ``p(t) = weights[t] / total``.

    Without top-p (and unless ``lazy=False``) the weights are built *lazily*: :meth:`draw` first tries an exact
    rejection sampler that needs only the logits' block maxima (one cheap pass, no
    ``exp`` over the vocabulary).  Its envelope gives each token whose logit is within
    ``HEAD`` of the maximum its exact weight, and every other token of block ``b`` the
    bound ``exp(min(max_b, max - HEAD) - max)``; a token proposed from a block's envelope is
    accepted with probability ``weight / bound``.  Every accepted draw is exactly
    distributed as ``p`` (weights in float64 ``exp`` there, float32 once materialised: the
    same distribution up to float32 rounding); after ``LAZY_TRIES`` envelope rejections (a flat distribution) the
    full weights are built and the inverse-CDF draw is used -- still exact, because failed
    rejection rounds carry no information about the eventual value.  ``weights``, ``total``
    and ``p`` build the full weights on first use (AWRS needs them only once a draw is
    rejected by the constraint: the rejected mass needs the normaliser).
    """

    __slots__ = (
        "_weights",
        "_total",
        "_blocks",
        "_padded",
        "logits",
        "_mx",
        "_env",
        "_top_p",
        "_bm",
        "_ready",
        "_head_mass",
        "_dry",
    )

    BLOCK = 1024
    HEAD = 8.0  # logits within HEAD of the maximum get their exact weight in the envelope
    # envelope rounds per draw: a round costs a few ns in the kernel, and with Gaussian-like
    # tails the block-max envelope is ~15-20x the tail mass, so a model with 10% of its mass in
    # the tail accepts only ~1/3 of rounds: 8 tries fell back to the full softmax on ~1 step
    # in 5, 32 tries on ~1 in 10^5
    LAZY_TRIES = 32
    # when more than this share of the envelope blocks hold head tokens the distribution is
    # flat: scanning them (a scalar compare, and an exp per head token) costs as much as the
    # vectorised full softmax, so the weights are materialised instead.  Measured on 128k
    # logits: lazy with 16 of 32 head blocks is still ~2x cheaper, with 32 it is not.
    LAZY_HEAD_SHARE = 0.5
    # envelope block: numpy's row max over 4096-float rows is ~2x faster than over 1024 (fewer
    # rows, same SIMD inner loop); the head scan of one block in the kernel stays ~1 us
    EBLOCK = 4096
    # envelope draws per kernel call: AWRS's two traces take one draw each, and a step with a
    # rejection or two finds its next draws queued (a draw costs a few ns in C; see awrs_queued)
    LAZY_BATCH = 8

    def __init__(
        self,
        logits: np.ndarray,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        lazy: bool = True,
        rng: np.random.Generator | None = None,
    ) -> None:
        x = prepare_logits(logits, temperature, top_k)
        # per-block maxima: the lazy sampler's envelope and the global maximum in one pass
        # (masking materialises the weights at once and needs only the global maximum)
        lazy = lazy and not (top_p is not None and 0 < top_p < 1)
        ready: list[int] = []
        head_mass = math.nan  # once a lazy draw has scanned the head
        dry = False  # the first lazy fill, made here, drew nothing
        bm = None
        if lazy:
            B = self.EBLOCK
            bm = np.empty(-(-len(x) // B), dtype=np.float32)
            if _native is not None and x.flags.c_contiguous:
                if rng is not None:
                    # block maxima and the first lazy fill in one C call, consuming the same
                    # uniforms the first draw's fill would: the same draws either way
                    out = np.empty(self.LAZY_BATCH, dtype=np.int64)
                    mx, got, head_mass = first_fill(x, rng, bm, out)
                    ready = out[:got][::-1].tolist()
                    dry = got == 0
                else:
                    mx = _native.block_max(x, B, bm)  # one vectorised pass (native/propose.c)
            else:
                mx = block_max_reference(x, B, bm)
        else:
            mx = float(x.max())
        self._setup(x, mx, bm, ready, head_mass, dry, top_p)

    @classmethod
    def after_first_fill(
        cls, x: np.ndarray, mx: float, bm: np.ndarray, out: np.ndarray, got: int, head_mass: float
    ) -> Proposal:
        """The proposal ``Proposal(x, rng=rng)`` would have built, from a :func:`first_fill` the
        caller already made (the decoding loop's fast path: it looks at the two draws before
        deciding whether it needs a proposal object at all)."""
        self = cls.__new__(cls)
        self._setup(x, mx, bm, out[:got][::-1].tolist(), head_mass, got == 0, None)
        return self

    def _setup(self, x, mx, bm, ready, head_mass, dry, top_p) -> None:
        self.logits = x
        self._bm = bm
        self._ready = ready
        self._head_mass = head_mass
        self._dry = dry
        if math.isnan(mx):
            raise ValueError("the model's logits contain NaN")
        if mx == -math.inf:
            raise ValueError("every logit is -inf: the model gives no token any probability")
        self._mx = np.float32(mx)
        self._top_p = top_p if top_p is not None and 0 < top_p < 1 else None
        self._weights = None
        self._env = None
        if bm is None:  # nucleus (and masking) need the full distribution anyway
            self._materialize()

    def _materialize(self) -> None:
        x = self.logits
        n = len(x)
        padded = _padded_buffer(n, self.BLOCK)
        w = padded[:n]
        np.subtract(x, self._mx, out=w)
        np.exp(w, out=w)
        if self._top_p is not None:
            w[:] = _top_p(w, self._top_p)
        self._weights = w
        self._padded = padded
        self._set_blocks()

    def _set_blocks(self) -> None:
        # block sums as one float32 matrix-vector product (BLAS; no float64 temporary)
        sums = self._padded.reshape(-1, self.BLOCK) @ np.ones(self.BLOCK, dtype=np.float32)
        self._blocks = np.cumsum(sums, dtype=np.float64)
        self._total = float(self._blocks[-1])

    @property
    def weights(self) -> np.ndarray:
        if self._weights is None:
            self._materialize()
        return self._weights

    @property
    def total(self) -> float:
        if self._weights is None:
            self._materialize()
        return self._total

    @property
    def materialized(self) -> bool:
        """Whether the full float32 weights have been built (statistics and tests)."""
        return self._weights is not None

    @classmethod
    def from_weights(cls, weights: np.ndarray, logits: np.ndarray) -> Proposal:
        """A proposal over given unnormalised float32 ``weights`` (e.g. masked ones)."""
        self = cls.__new__(cls)
        n = len(weights)
        self._padded = _padded_buffer(n, cls.BLOCK)
        self._padded[:n] = weights
        self._weights = self._padded[:n]
        self._set_blocks()
        self.logits = logits
        self._env = None
        self._top_p = None
        self._mx = np.float32(0)
        self._bm = None
        self._ready = []
        self._head_mass = math.nan
        self._dry = False
        return self

    @classmethod
    def masked(cls, prop: Proposal, mask: np.ndarray) -> Proposal:
        """``prop`` restricted to ``mask``, written straight into the padded buffer (one pass)."""
        self = cls.__new__(cls)
        n = len(prop.logits)
        self._padded = _padded_buffer(n, cls.BLOCK)
        np.multiply(prop.weights, mask, out=self._padded[:n])
        self._weights = self._padded[:n]
        self._set_blocks()
        self.logits = prop.logits
        self._env = None
        self._top_p = None
        self._mx = prop._mx
        self._bm = None
        self._ready = []
        self._head_mass = math.nan
        self._dry = False
        return self

    def p(self, t: int) -> float:
        return float(self.weights[t]) / self.total

    def mass(self, tokens) -> float:
        idx = np.fromiter(tokens, dtype=np.int64) if not isinstance(tokens, np.ndarray) else tokens
        return float(self.weights[idx].sum(dtype=np.float64)) / self.total if len(idx) else 0.0

    def envelope(self) -> tuple:
        """The lazy sampler's envelope in numpy (for tests and inspection): (head tokens, head
        weights, head cdf, per-block bounds, block envelope cdf, threshold)."""
        if self._env is None:
            x, B = self.logits, self.EBLOCK
            n = len(x)
            bm = self._bm
            thr = float(self._mx) - self.HEAD
            head = np.flatnonzero(x >= thr)
            hw = np.exp(x[head].astype(np.float64) - float(self._mx))
            hc = np.cumsum(hw)
            with np.errstate(invalid="ignore"):
                bound = np.exp(np.minimum(bm.astype(np.float64), thr) - float(self._mx))
            sizes = np.full(len(bm), B, dtype=np.float64)
            if n % B:
                sizes[-1] = n % B
            ec = np.cumsum(bound * sizes)
            self._env = (head, hw, hc, bound, ec, thr)
        return self._env

    @classmethod
    def _limit_for(cls, n_blocks: int) -> int:
        return max(1, int(n_blocks * cls.LAZY_HEAD_SHARE))

    def _lazy_fill(self, rng: np.random.Generator) -> None:
        """``LAZY_BATCH`` independent envelope draws (up to ``LAZY_TRIES`` rounds each) in one
        compiled call, queued in ``_ready``; stops early, leaving the queue short, at a draw whose
        rounds were all rejected.  Queued draws are i.i.d. from ``p``, so handing them out one
        by one later (even after the weights were materialised) is the same as drawing then.
        """
        k = self.LAZY_BATCH
        seed = rng.bit_generator.random_raw()  # one raw draw, expanded by counter_uniforms
        out = np.empty(k, dtype=np.int64)
        mx = float(self._mx)
        limit = self._limit_for(len(self._bm))
        if _native is not None and self.logits.flags.c_contiguous:
            us = (seed, self.LAZY_TRIES)
            got, self._head_mass = _native.lazy_draws(
                self.logits, self._bm, mx, mx - self.HEAD, self.EBLOCK, us, out, limit
            )
        else:
            us = counter_uniforms(seed, (k, self.LAZY_TRIES, 3))
            hm = np.full(1, np.nan)
            got = lazy_draws(self.logits, self._bm, mx, mx - self.HEAD, self.EBLOCK, us, out, limit, hm)
            self._head_mass = float(hm[0])
        self._ready = out[:got][::-1].tolist()  # pop() from the end hands them out in order

    @property
    def head_mass(self) -> float:
        """``S_H``, the total weight of the head tokens (logit ``>= max - HEAD``); NaN until a
        lazy draw has scanned the head.  ``S >= S_H >= 1`` (the arg-max has weight 1), and a
        draw lands in the head with probability ``S_H / S``: AWRS turns that into an unbiased
        estimate of ``1 / S`` without the full softmax."""
        return self._head_mass

    def in_head(self, t: int) -> bool:
        return float(self.logits[t]) >= float(self._mx) - self.HEAD

    def unnormalised(self, t: int) -> float:
        """``exp(logit_t - max)`` in float64, the weight the lazy sampler draws with (no
        materialisation)."""
        return math.exp(float(self.logits[t]) - float(self._mx))

    def draw(self, rng: np.random.Generator) -> int:
        """One exact draw from ``p``.

        Lazy proposals try the envelope rejection sampler first (see the class docstring);
        otherwise pick a block of 1024 by its mass, then a token inside it: two small
        float64 cumulative sums instead of one over the whole vocabulary.
        """
        if self._ready:
            return self._ready.pop()
        if self._weights is None and self._bm is not None:
            if self._dry:  # the fill made at construction drew nothing: as if made just now
                self._dry = False
            else:
                self._lazy_fill(rng)
                if self._ready:
                    return self._ready.pop()
            self._materialize()
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


def prepare_logits(logits: np.ndarray, temperature: float = 1.0, top_k: int | None = None) -> np.ndarray:
    """float32 logits after temperature and top-k (filtered tokens ``-inf``): what every
    proposal and the decoding loop's fast path draw from."""
    x = np.asarray(logits, dtype=np.float32).reshape(-1)
    if temperature <= 0:
        raise ValueError("temperature must be > 0 for sampling (use greedy=True for argmax)")
    if temperature != 1.0:
        x = x * np.float32(1.0 / temperature)
    if top_k is not None and 0 < top_k < len(x):
        kth = np.partition(x, len(x) - top_k)[len(x) - top_k]
        x = np.where(x >= kth, x, np.float32(-np.inf))
    return x


def has_first_fill() -> bool:
    """Whether :func:`first_fill` is available (the C extension is built and not turned off)."""
    return _native is not None


def first_fill(
    x: np.ndarray, rng: np.random.Generator | tuple, bm: np.ndarray, out: np.ndarray, limit: int | None = None
) -> tuple[float, int, float]:
    """Block maxima of ``x`` into ``bm`` and the first ``LAZY_BATCH`` lazy draws into ``out``
    in one C call: ``(max, draws made, head mass)``.  Consumes one raw draw of ``rng``, as the
    first :meth:`Proposal.draw`'s fill would (see ``counter_uniforms``).

    ``rng`` may be :func:`raw_source` of the generator and ``limit`` ``Proposal._limit_for(len(bm))``,
    both made once by a loop that calls this every step: the C call then takes the raw draw
    from the generator itself (the same value), and no Python runs around it."""
    us = rng if rng.__class__ is tuple else (rng.bit_generator.random_raw(), Proposal.LAZY_TRIES)
    if limit is None:
        limit = Proposal._limit_for(len(bm))
    return _native.lazy_propose(x, Proposal.EBLOCK, Proposal.HEAD, us, bm, out, limit)


def raw_source(rng: np.random.Generator) -> tuple:
    """What :func:`first_fill` takes in place of ``rng`` to draw its raw value in C: the bit
    generator's capsule (kept alive by ``rng``, which the caller holds) and the rounds per draw."""
    return (rng.bit_generator.capsule, Proposal.LAZY_TRIES)


def block_max_reference(x: np.ndarray, block: int, out: np.ndarray) -> float:
    """``out[b]`` = max of block ``b`` of ``x`` (float32); returns the overall max, NaN if any
    logit is NaN.  The reference of ``_native.block_max`` and its fallback."""
    n = len(x)
    nfull = n // block
    # (ufunc.reduce directly: np.max's dispatch wrapper costs ~1 us a call here)
    if nfull:
        np.maximum.reduce(x[: nfull * block].reshape(nfull, block), axis=1, out=out[:nfull])
    if n % block:
        out[nfull] = np.maximum.reduce(x[nfull * block :])
    return float(np.maximum.reduce(out))


def _padded_buffer(n: int, block: int) -> np.ndarray:
    """float32 buffer of whole blocks; only the padding is zeroed (the caller writes [:n])."""
    buf = np.empty(-(-n // block) * block, dtype=np.float32)
    buf[n:] = 0
    return buf


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


_UNSET = object()  # (a token not peeked yet: None is a peek's "not allowed")


class Checker:
    """``valid(t)`` = ``matcher.check(t)`` and the budget rule, cached per (state, token).

    One instance per (matcher, step); pass the same ``cache`` dict to the checkers of all
    particles in a step so equal states share verdicts.  The cache maps a state key to a
    ``{token: verdict}`` dict (looked up once per checker, so a verdict costs one int-keyed
    lookup), and whether the budget can bind at all this step is decided once here: for a
    DFA whose farthest state is within the remaining budget no token needs a budget check.

    ``keep_advanced=True`` (the decoding loop) lets a non-DFA matcher stay advanced by the
    last token it validated, and the caller must then end the step with :meth:`commit`
    (or :meth:`settle`).  A grammar matcher's ``check``, the budget's ``advance`` and the
    loop's final ``advance`` each run the parser over the token's bytes; validating by
    ``advance`` itself and keeping the result runs it once for the accepted token.  DFA
    matchers keep the plain path (their ``check`` is one bit test).
    """

    __slots__ = (
        "matcher",
        "remaining",
        "stats",
        "cache",
        "key",
        "budget_rejected",
        "_verdicts",
        "_budget_free",
        "_keep",
        "_pending",
        "_peek",
        "_next",
    )

    def __init__(
        self,
        matcher: Matcher,
        remaining: int | None = None,
        stats: SamplingStats | None = None,
        cache: dict | None = None,
        keep_advanced: bool = False,
    ) -> None:
        self.matcher = matcher
        self.remaining = remaining
        self.stats = stats
        self.cache = {} if cache is None else cache
        parts = _dfa_parts(matcher)
        if parts is not None:
            self.key = ("dfa", id(matcher.compiled), parts[1], matcher.is_terminated())
        else:
            self.key = ("obj", id(matcher))
        self.budget_rejected = 0
        got = self.cache.get(self.key)
        if got is None:
            got = self.cache[self.key] = {}
        self._verdicts: dict[int, bool] = got
        self._budget_free = remaining is None or (
            parts is not None and remaining - 1 >= _max_distance(parts[0])
        )
        # a matcher that can peek (grammars) keeps each checked token's next state instead:
        # no advance and rollback per check, and commit moves to the kept state
        self._peek = keep_advanced and parts is None and getattr(matcher, "peek", None) is not None
        self._next: dict[int, Any] = {}
        self._keep = keep_advanced and parts is None and not self._peek
        self._pending: int | None = None  # token the matcher is currently advanced by

    def settle(self) -> None:
        """Undo a kept ``advance``: the matcher is back at the step's state."""
        if self._pending is not None:
            self._pending = None
            self.matcher.rollback(1)

    def commit(self, token: int) -> None:
        """Advance the matcher by the chosen ``token`` (free if it is the one kept)."""
        if self._peek:
            nxt = self._next.get(token)
            if nxt is not None:
                self.matcher.advance_to(token, nxt)
            else:
                self.matcher.advance(token)
            return
        if self._pending == token:
            self._pending = None
            return
        self.settle()
        self.matcher.advance(token)

    def _advance_kept(self, t: int) -> bool:
        """``advance(t)`` kept as pending; False (state unchanged) if ``t`` is not allowed."""
        self.settle()
        try:
            self.matcher.advance(t)
        except InvalidTokenError:
            return False
        self._pending = t
        return True

    def _fits_kept(self, t: int) -> bool:
        """Budget rule for an allowed ``t`` with the matcher advanced by it (EOS: complete)."""
        if t in self.matcher.vocab.eos_token_ids:
            return True
        return self.matcher.shortest_completion_bytes() <= self.remaining - 1

    def __call__(self, t: int) -> bool:
        v = self._verdicts.get(t)
        if v is not None:
            if self.stats is not None:
                self.stats.cache_hits += 1
            return v
        if self._peek:
            nxt = self._peeked(t)
            v = nxt is not None
        elif self._keep:
            v = self._advance_kept(t)
        else:
            v = self.matcher.check(t)
        if self.stats is not None:
            self.stats.checks += 1
        if v and not self._budget_free:
            if self.stats is not None:
                self.stats.budget_checks += 1
            if self._peek:
                ok = self.matcher.completion_of(nxt) <= self.remaining - 1
            else:
                ok = self._fits_kept(t) if self._keep else fits(self.matcher, t, self.remaining)
            if not ok:
                v = False
                self.budget_rejected += 1
        self._verdicts[t] = v
        return v

    def _peeked(self, t: int) -> Any:
        """``matcher.peek(t)``, once per token and step (primed or peeked here)."""
        nxt = self._next.get(t, _UNSET)
        if nxt is _UNSET:
            nxt = self._next[t] = self.matcher.peek(t)
        return nxt

    def prime(self, t: int, peeked: Any) -> None:
        """Take ``matcher.peek(t)`` made elsewhere this step (not yet counted: the check, when
        the sampler makes it, is counted as usual but does not peek again)."""
        if self._peek:
            self._next[t] = peeked

    def seed(self, tokens: list[int], verdicts: list[bool], budget_rejected: int) -> None:
        """Take verdicts already reached (and counted) elsewhere for this state -- the C
        queued step's -- so the sampler's later calls for those tokens are cache hits, as
        they would be had this checker made them."""
        self._verdicts.update(zip(tokens, verdicts, strict=True))
        self.budget_rejected += budget_rejected

    def fits_budget(self, t: int) -> bool:
        """Budget rule alone, for tokens a mask already allowed."""
        if self._budget_free:
            return True
        k = (self.key, "budget")
        cache = self.cache.get(k)
        if cache is None:
            cache = self.cache[k] = {}
        v = cache.get(t)
        if v is None:
            if self.stats is not None:
                self.stats.budget_checks += 1
            if self._peek:
                nxt = self._peeked(t)
                if nxt is None:  # (not allowed: fits raises, as it always has)
                    v = fits(self.matcher, t, self.remaining)
                else:
                    v = self.matcher.completion_of(nxt) <= self.remaining - 1
            elif self._keep and self._advance_kept(t):
                v = self._fits_kept(t)
            else:
                v = fits(self.matcher, t, self.remaining)
            cache[t] = v
        return v

    def mask(self) -> np.ndarray:
        """The matcher's full mask as bool (counted in the statistics).

        For DFA matchers the budget rule is folded in exactly (one vectorised pass over the
        vocabulary); for other matchers callers still test drawn tokens with
        :meth:`fits_budget`.
        """
        self.settle()
        if self.stats is not None:
            self.stats.masks += 1
        m = self.matcher.mask()
        if self.remaining is not None and _dfa_parts(self.matcher) is not None:
            m = budget_mask(self.matcher, m, self.remaining)
        return m
