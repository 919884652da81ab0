"""Numba kernel for the lazy exact draws of :class:`constrain.sampling.core.Proposal`, and its
pure-Python reference (:func:`lazy_draws_reference`, built on the one-draw
:func:`lazy_draw_reference`; a hypothesis test compares them).

The draw is rejection sampling under an envelope built from per-block logit maxima ``bm``:
tokens with ``x >= thr`` (``thr = max - HEAD``) carry their exact weight ``exp(x - max)``;
every token of block ``b`` carries ``bound_b = exp(min(bm_b, thr) - max)``.  A round picks
head-vs-envelope by mass, then a head token by its weight, or a uniform token of an
envelope block accepted with probability ``exp(x_t - max) / bound_b`` (head tokens are
rejected there: their mass is all in the head part).  Accepted draws are exactly
distributed as ``softmax(x)``.  ``us`` holds three uniforms per round; a draw whose rounds
were all rejected ends the batch early (the caller falls back to the full distribution:
failed rounds carry no information about the value, so that stays exact).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def counter_uniforms(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """float64 uniforms in [0, 1): SplitMix64 of ``seed + (i + 1) * golden`` (top 53 bits).

    The lazy draws take one raw 64-bit draw from the caller's numpy Generator per fill and
    expand it with this counter-based stream (the C path computes only the entries it uses:
    ~1 us of uniforms instead of a (2, 32, 3) ``rng.random`` array, which costs ~10 us
    in a decoding loop with cold caches).  Any uniform stream keeps the draws exact; this
    one is seeded, so decoding stays reproducible.
    """
    n = math.prod(shape)
    z = np.uint64(seed) + np.arange(1, n + 1, dtype=np.uint64) * _GOLDEN  # (uint64 arrays wrap mod 2^64)
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    z ^= z >> np.uint64(31)
    return ((z >> np.uint64(11)).astype(np.float64) * 2.0**-53).reshape(shape)


def lazy_draw_reference(x, bm, mx: float, thr: float, block: int, us) -> int:
    """One draw, obviously-correct pure Python: ``us`` is ``(tries, 3)``; ``-1`` if every round
    was rejected.  :func:`lazy_draws` must return exactly these values (same arithmetic)."""
    n = len(x)
    head = [i for i in range(n) if x[i] >= thr]
    hw = [math.exp(float(x[i]) - mx) for i in head]
    sh = sum(hw)
    sizes = [min(block, n - b * block) for b in range(len(bm))]
    bounds = [0.0 if bm[b] == -math.inf else math.exp(min(float(bm[b]), thr) - mx) for b in range(len(bm))]
    se = sum(bd * sz for bd, sz in zip(bounds, sizes, strict=True))
    for k in range(len(us)):
        u = us[k][0] * (sh + se)
        if u < sh:
            acc = 0.0
            last = -1
            for i, w in zip(head, hw, strict=True):
                if w > 0:
                    last = i
                acc += w
                if acc > u and w > 0:
                    return i
            return last
        u -= sh
        acc = 0.0
        b = len(bm) - 1
        for j in range(len(bm)):
            acc += bounds[j] * sizes[j]
            if acc > u:
                b = j
                break
        if bounds[b] == 0.0:
            continue
        t = b * block + min(int(us[k][1] * sizes[b]), sizes[b] - 1)
        xt = float(x[t])
        if xt < thr and us[k][2] * bounds[b] < math.exp(xt - mx):
            return t
    return -1


def lazy_draws_reference(x, bm, mx: float, thr: float, block: int, us, max_head_blocks: int) -> list[int]:
    """Pure-Python reference of :func:`lazy_draws`: independent :func:`lazy_draw_reference`
    draws, one per ``us[j]``, stopping at the first draw whose rounds were all rejected; no
    draw at all when more than ``max_head_blocks`` blocks hold head tokens."""
    if sum(1 for b in bm if b >= thr) > max_head_blocks:
        return []
    out = []
    for j in range(len(us)):
        t = lazy_draw_reference(x, bm, mx, thr, block, us[j])
        if t < 0:
            break
        out.append(t)
    return out


@njit(cache=True)
def lazy_draws(x, bm, mx, thr, block, us, out, max_head_blocks, head_mass):  # pragma: no cover - compiled
    """Several independent draws (each :func:`lazy_draw_reference`) with the envelope built once.

    ``head_mass[0]`` gets the head's total weight ``sum exp(x_i - mx)`` over ``x_i >= thr``
    (when the head is scanned at all): AWRS's normaliser-free estimate of rejected mass needs
    it, and it is a by-product of the envelope.

    ``us`` is ``(k, tries, 3)``; ``out[j]`` gets draw ``j``.  Returns how many draws were
    made: fewer than ``k`` when draw ``j`` had every round rejected (``out[j:]`` unset), and 0
    without drawing when more than ``max_head_blocks`` blocks hold head tokens (a flat
    distribution: the head would need an ``exp`` per token, the caller's vectorised full
    softmax is cheaper).  The head tokens, their weights and the envelope's cumulative
    masses are computed once per call instead of once per draw (AWRS wants two draws per
    step: one per trace), with the same arithmetic, so each draw equals
    :func:`lazy_draw_reference` on its ``us[j]``.
    """
    n = x.shape[0]
    nb = bm.shape[0]
    nhb = 0
    for b in range(nb):
        if bm[b] >= thr:
            nhb += 1
    if nhb > max_head_blocks:
        return 0
    hidx = np.empty(nhb * block, dtype=np.int64)
    hw = np.empty(nhb * block, dtype=np.float64)
    sh = 0.0
    h = 0
    for b in range(nb):
        if bm[b] >= thr:
            for i in range(b * block, min(n, (b + 1) * block)):
                if x[i] >= thr:
                    w = math.exp(np.float64(x[i]) - mx)
                    hidx[h] = i
                    hw[h] = w
                    sh += w
                    h += 1
    nh = h
    head_mass[0] = sh
    bounds = np.empty(nb, dtype=np.float64)
    ecum = np.empty(nb, dtype=np.float64)
    se = 0.0
    for b in range(nb):
        bd = 0.0 if bm[b] == -np.inf else math.exp(min(np.float64(bm[b]), thr) - mx)
        bounds[b] = bd
        se += bd * min(block, n - b * block)
        ecum[b] = se
    for j in range(us.shape[0]):
        got = -1
        for k in range(us.shape[1]):
            u = us[j, k, 0] * (sh + se)
            if u < sh:
                acc = 0.0
                last = -1
                for h in range(nh):
                    w = hw[h]
                    if w > 0:
                        last = hidx[h]
                    acc += w
                    if acc > u and w > 0:
                        got = hidx[h]
                        break
                if got < 0:
                    got = last
                break
            u -= sh
            b = nb - 1
            for c in range(nb):
                if ecum[c] > u:
                    b = c
                    break
            bound = bounds[b]
            if bound == 0.0:
                continue
            size = min(block, n - b * block)
            t = b * block + min(int(us[j, k, 1] * size), size - 1)
            xt = np.float64(x[t])
            if xt < thr and us[j, k, 2] * bound < math.exp(xt - mx):
                got = t
                break
        if got < 0:
            return j
        out[j] = got
    return us.shape[0]
