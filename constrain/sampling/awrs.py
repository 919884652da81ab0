"""Adaptive weighted rejection sampling (AWRS) for one step.

Draw tokens from the model's distribution ``p`` *without replacement*, test each with the
constraint (``Matcher.check`` plus the budget rule), stop at the first valid one: an exact
sample from ``g(x) = p(x) c(x) / Z``.  A second, independent trace gives the unbiased,
properly weighted estimate of ``Z`` from Lipkin et al. (2025)::

    trace 0: rejections n0 of total mass psi0, accept x0
    trace 1: fresh randomness, the rejected set kept (x0 stays eligible), n1 more rejections
    Z_hat = (1 - psi0) / (n0 + n1 + 1)

Three regimes per trace, all drawing from the same without-replacement process (it is
memoryless, so switching mid-trace is exact):

* *inverse-CDF redraws* while the rejected mass is small (a draw that hits a rejected token
  is simply redrawn) -- one O(V) cumulative sum per step, O(1) per draw;
* *Gumbel keys, lazily ordered* in growing ``argpartition`` blocks once the rejected mass
  passes one half;
* *mask mode* after ``max_rejects`` rejections: the full mask is computed once and the rest
  of the trace is evaluated in closed form (first valid token = arg-max key among valid
  tokens; rejections = invalid tokens with a larger key), so the (token, weight) pair has
  exactly the distribution the unbounded walk would have had.  (Returning the exact ``Z``
  at that point instead would bias the two-trace estimator: it is only unbiased averaged
  over all split points.)

Dead ends (no valid token) return ``token=None`` and ``log_z=-inf``: a weight of zero,
never an exception.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from constrain.sampling.core import Checker, Proposal

# largest bound ``wr / S_H`` on trace 0's rejected mass for which ``1 - psi0`` is estimated
# instead of computed (see ``_Trace.one_minus_psi``); must stay below 1 (positive factor)
PSI_ESTIMATE_MAX = 0.5


@dataclass
class Draw:
    """Result of one constrained draw."""

    token: int | None
    log_z: float  # log of the (estimated or exact) local normaliser; -inf for a dead end
    rejections: int = 0
    used_mask: bool = False


def gumbel_keys(prop: Proposal, rng: np.random.Generator) -> np.ndarray:
    """float32 race keys ``p(x) / E_x`` with ``E_x ~ Exp(1)`` (``-inf`` for zero-mass tokens).

    Ordering by ``p / E`` is ordering by ``log p + Gumbel`` (``-log E`` is Gumbel), so the
    decreasing order is a draw without replacement from ``p``; this form needs no logarithm,
    one ziggurat exponential draw and one division per token.
    """
    e = rng.standard_exponential(len(prop.weights), dtype=np.float32)
    w = prop.weights
    with np.errstate(divide="ignore", invalid="ignore"):
        keys = w / e
    keys[w == 0] = -np.inf
    return keys


def lazy_order(work: np.ndarray, first_block: int = 16) -> Iterator[int]:
    """Indices of ``work`` in decreasing order, found block by block with ``argpartition``.

    Each yielded index is set to ``-inf`` in ``work`` *before* it is yielded, so a caller that
    stops early sees the not-yet-visited keys intact.  ``-inf`` keys are never yielded.  The
    finite keys are gathered once (partitioning arrays full of equal ``-inf`` keys degrades
    introselect badly), and a first block of one is a plain ``argmax``.
    """
    if first_block == 1:
        i = int(np.argmax(work))
        if work[i] == -np.inf:
            return
        work[i] = -np.inf
        yield i
        first_block = 16
    idxs = np.flatnonzero(work > -np.inf)
    sub = work[idxs]
    n = len(sub)
    b = first_block
    done = 0
    while done < n:
        k = min(b, n - done)
        part = np.argpartition(sub, n - k)[n - k :] if k < n else np.arange(n)
        part = part[np.argsort(-sub[part], kind="stable")]
        for j in part:
            if sub[j] == -np.inf:
                return
            i = int(idxs[j])
            sub[j] = -np.inf
            work[i] = -np.inf
            done += 1
            yield i
        b *= 8


class _Trace:
    """One walk to the first valid token; keeps the rejected set for the next trace."""

    def __init__(self, prop: Proposal, chk: Checker, rng: np.random.Generator, max_rejects: int) -> None:
        self.prop = prop
        self.chk = chk
        self.rng = rng
        self.max_rejects = max_rejects
        self.rej: set[int] = set()
        self.rej_arr: np.ndarray | None = None  # bool, once in mask mode
        self.mask: np.ndarray | None = None  # the constraint's mask (budget failures cleared)
        self.psi = 0.0
        # Z_hat needs the rejected mass of trace 0 only; in trace 1 psi just steers the switch
        # to Gumbel keys (any rule that looks only at the past is exact), so there it is summed
        # only once the weights exist: a rejection in trace 1 alone never pays the full softmax
        self.psi_needed = True
        # trace 0's rejected weight sum(exp(x_t - max)) while the full weights are not built:
        # psi0 = wr / S needs the normaliser S, which only the full softmax gives exactly
        self.wr = 0.0

    def _rejected(self, t: int) -> None:
        self.rej.add(t)
        prop = self.prop
        if prop.materialized:
            self.psi += prop.p(t)
        elif self.psi_needed:
            hm = prop.head_mass
            if hm != hm:  # (NaN: no lazy draw scanned the head; cannot happen unmaterialised)
                self.psi += prop.p(t)
                return
            self.wr += prop.unnormalised(t)
            # psi0 <= wr / S_H (S >= S_H): the bound steers the switch to Gumbel keys, and
            # any rule that looks only at the past keeps the walk exact
            self.psi = self.wr / hm

    def one_minus_psi(self) -> float:
        """``1 - psi0`` for ``Z_hat``: exact once the weights exist, else an unbiased estimate.

        Without the full softmax, ``psi0 = wr / S`` with ``wr`` known and ``S`` not.  One fresh
        draw ``X ~ p``, independent of both traces, gives ``E[1{X in head}] / S_H = 1 / S``,
        so ``1 - (wr / S_H) 1{X in head}`` has expectation ``1 - psi0`` and ``Z_hat`` stays
        unbiased (it is linear in this factor and the factor is independent of ``n0 + n1``).
        Used only when ``wr / S_H <= PSI_ESTIMATE_MAX``: the factor then stays positive, and
        its extra variance ``psi0^2 (S / S_H - 1)`` is tiny where it applies -- an agreeing
        model's rejected draws are tail noise of mass ~1e-5.  Otherwise the full softmax is
        built and ``psi0`` is exact.
        """
        prop = self.prop
        if self.rej_arr is not None:
            return float(prop.weights[~self.rej_arr].sum(dtype=np.float64)) / prop.total
        if not self.rej:
            return 1.0
        if not prop.materialized:
            b = self.wr / prop.head_mass
            if b <= PSI_ESTIMATE_MAX:
                return 1.0 - b if prop.in_head(prop.draw(self.rng)) else 1.0
        idx = np.fromiter(self.rej, dtype=np.int64)
        return max(0.0, 1.0 - float(prop.weights[idx].sum(dtype=np.float64)) / prop.total)

    def walk(self, first: int | None = None) -> tuple[int | None, int]:
        """Returns (accepted token or None, new rejections in this walk).

        ``first``: the walk's first inverse-CDF draw, already made and found invalid by the
        caller (:func:`awrs_sample`'s fast path); only valid where the walk would have drawn
        it, i.e. with ``psi <= 0.5``, no mask mode and ``max_rejects >= 1``.
        """
        if self.rej_arr is not None:
            return self._mask_mode(gumbel_keys(self.prop, self.rng))
        prop, chk = self.prop, self.chk
        n = 0
        redraws = 0
        while True:
            if n >= self.max_rejects:
                return self._after_lazy(n, gumbel_keys(self.prop, self.rng))
            if self.psi > 0.5 or redraws > 32:
                break
            if first is not None:
                t, first = first, None
            else:
                t = prop.draw(self.rng)
            if t in self.rej:
                redraws += 1
                continue
            if chk(t):
                return t, n
            self._rejected(t)
            n += 1
        # Gumbel phase: the rest of the order, lazily
        work = gumbel_keys(prop, self.rng)
        if self.rej:
            work[np.fromiter(self.rej, dtype=np.int64)] = -np.inf
        for t in lazy_order(work):
            if chk(t):
                return t, n
            self._rejected(t)
            n += 1
            if n >= self.max_rejects:
                return self._after_lazy(n, work)
        return None, n

    def _after_lazy(self, n: int, keys: np.ndarray) -> tuple[int | None, int]:
        """Switch to mask mode; ``keys`` are valid keys for the not-yet-visited tokens."""
        arr = np.zeros(len(self.prop.weights), dtype=bool)
        if self.rej:
            arr[np.fromiter(self.rej, dtype=np.int64)] = True
        self.rej_arr = arr
        x, m = self._mask_mode(keys)
        return x, n + m

    def _mask_mode(self, keys: np.ndarray) -> tuple[int | None, int]:
        assert self.rej_arr is not None
        if self.mask is None:
            self.mask = self.chk.mask()
        keys = keys.copy()
        keys[self.rej_arr] = -np.inf
        mask = self.mask
        cand = np.where(mask, keys, np.float32(-np.inf))
        x = -1
        for t in lazy_order(cand, first_block=1):
            if self.chk.fits_budget(t):
                x = t
                break
            mask[t] = False  # over budget: a rejection like any other
        if x < 0:  # nothing valid left: every remaining token is a rejection
            newly = np.isfinite(keys)
            self.rej_arr |= newly
            return None, int(newly.sum())
        newly = (keys > keys[x]) & ~mask
        self.rej_arr |= newly
        return x, int(newly.sum())


def awrs_sample(
    prop: Proposal,
    chk: Checker,
    rng: np.random.Generator,
    *,
    max_rejects: int = 32,
    estimate: bool = True,
) -> Draw:
    """One AWRS step: an exact draw from the constrained distribution and ``log Z_hat``.

    ``estimate=False`` skips trace 1 (plain adaptive rejection sampling; ``log_z`` is then
    NaN), for callers that only need the token.
    """
    if max_rejects >= 1:
        # fast path, the agreeing model's usual step: each trace's first draw is valid.  This
        # is exactly the first iteration of ``_Trace.walk`` (nothing rejected yet: psi = 0,
        # no redraw, no mask), so Z_hat = (1 - 0) / (0 + 0 + 1) = 1 and log_z = 0.
        x0 = prop.draw(rng)
        if chk(x0):
            if not estimate:
                return Draw(x0, math.nan, 0, False)
            x1 = prop.draw(rng)
            if chk(x1):
                return Draw(x0, 0.0, 0, False)
            t0 = _Trace(prop, chk, rng, max_rejects)  # trace 0 rejected nothing
            t0.psi_needed = False
            _, n1 = t0.walk(first=x1)
            return Draw(x0, -math.log(n1 + 1), n1, t0.rej_arr is not None)
        t0 = _Trace(prop, chk, rng, max_rejects)
        x0, n0 = t0.walk(first=x0)
    else:
        t0 = _Trace(prop, chk, rng, max_rejects)
        x0, n0 = t0.walk()
    if x0 is None:
        return Draw(None, -math.inf, n0, t0.rej_arr is not None)
    if not estimate:
        return Draw(x0, math.nan, n0, t0.rej_arr is not None)
    one_minus_psi0 = t0.one_minus_psi()
    t0.psi_needed = False
    # trace 1 continues from trace 0's rejected set with fresh randomness
    _, n1 = t0.walk()
    log_z = math.log(one_minus_psi0) - math.log(n0 + n1 + 1) if one_minus_psi0 > 0 else -math.inf
    return Draw(x0, log_z, n0 + n1, t0.rej_arr is not None)


def awrs_queued(
    queue: list[int], logits: np.ndarray, mx: float, head_mass: float, chk: Checker, max_rejects: int
) -> tuple[int, float, int] | None:
    """:func:`awrs_sample`'s ``(token, log_z, rejections)`` for a step whose draws all come from
    ``queue`` -- the lazy draws a :class:`Proposal` holds right after its first fill -- or None
    where awrs_sample would need anything else (another fill, the full weights, Gumbel keys or
    mask mode).

    It is awrs_sample specialised to that case, with the proposal's and the traces' objects
    replaced by locals: the same draws in the same order, the same ``chk`` calls (so the same
    statistics and the same kept advance), the same float64 arithmetic for the rejected mass
    and its estimate.  A step with a rejection or two, the usual non-trivial step of a model
    that agrees, costs a few microseconds instead of a few dozen.  None consumes nothing the
    caller cannot replay: the caller rebuilds the proposal from the same queue and calls
    awrs_sample, whose verdicts for the tokens already checked come from ``chk``'s cache.
    """
    nq = len(queue)
    if max_rejects < 1 or nq < 2 or head_mass != head_mass:
        return None
    x0 = queue[0]
    if chk(x0):
        x1 = queue[1]
        if chk(x1):
            return x0, 0.0, 0
        # trace 1 after a trace 0 that rejected nothing (psi stays 0): walk(first=x1)
        chk(x1)  # (awrs_sample's walk checks it again: a cache hit)
        n = _walk_queue(queue, 2, {x1}, 1, chk, max_rejects)
        return None if n is None else (x0, -math.log(n + 1), n)
    # trace 0 from the rejected x0: the rejected weight and its bound psi = wr / S_H
    mxf = float(np.float32(mx))
    rej = set()
    n0 = 0
    redraws = 0
    wr = psi = 0.0
    t = x0
    qi = 1
    while True:
        if n0 >= max_rejects or psi > 0.5 or redraws > 32:
            return None
        if t < 0:
            if qi >= nq:
                return None
            t = queue[qi]
            qi += 1
        if t in rej:
            redraws += 1
            t = -1
            continue
        if chk(t):
            x = t
            break
        rej.add(t)
        wr += math.exp(float(logits[t]) - mxf)
        psi = wr / head_mass
        n0 += 1
        t = -1
    # 1 - psi0 from one fresh draw (_Trace.one_minus_psi): exact needs the full weights
    b = wr / head_mass
    if b > PSI_ESTIMATE_MAX or qi >= nq:
        return None
    one_minus_psi0 = 1.0 - b if float(logits[queue[qi]]) >= mxf - Proposal.HEAD else 1.0
    qi += 1
    # trace 1: fresh draws, the rejected set kept, psi no longer updated (so checked once)
    n1 = None if psi > 0.5 else _walk_queue(queue, qi, rej, 0, chk, max_rejects)
    if n1 is None:
        return None
    log_z = math.log(one_minus_psi0) - math.log(n0 + n1 + 1) if one_minus_psi0 > 0 else -math.inf
    return x, log_z, n0 + n1


def _walk_queue(queue: list[int], qi: int, rej: set[int], n: int, chk: Checker, max_rejects: int) -> int | None:
    """Rejections after walking ``queue`` from ``qi`` to its first valid draw, counted from
    ``n`` as :meth:`_Trace.walk` counts them while ``psi`` does not move (``rej`` grows in
    place; already rejected draws are redrawn); None where the walk would leave the queue."""
    redraws = 0
    while True:
        if n >= max_rejects or redraws > 32 or qi >= len(queue):
            return None
        t = queue[qi]
        qi += 1
        if t in rej:
            redraws += 1
            continue
        if chk(t):
            return n
        rej.add(t)
        n += 1


def greedy_sample(prop: Proposal, chk: Checker, *, max_rejects: int = 32) -> Draw:
    """The most likely valid token (temperature 0): walk the logits in order, mask after a while."""
    work = prop.logits.astype(np.float32, copy=True)
    work[prop.weights == 0] = -np.inf
    n = 0
    for t in lazy_order(work):
        if chk(t):
            return Draw(t, 0.0, n)
        n += 1
        if n >= max_rejects:
            mask = chk.mask()
            for x in lazy_order(np.where(mask, work, np.float32(-np.inf)), first_block=1):
                if chk.fits_budget(x):
                    return Draw(x, 0.0, n, True)
            return Draw(None, -math.inf, n, True)
    return Draw(None, -math.inf, n)
