"""Numba kernel for the lazy exact draw of :class:`constrain.sampling.core.Proposal`, and its
pure-Python reference (:func:`lazy_draw_reference`; a hypothesis test compares them).

The draw is rejection sampling under an envelope built from per-block logit maxima ``bm``:
tokens with ``x >= thr`` (``thr = max - HEAD``) carry their exact weight ``exp(x - max)``;
every token of block ``b`` carries ``bound_b = exp(min(bm_b, thr) - max)``.  A round picks
head-vs-envelope by mass, then a head token by its weight, or a uniform token of an
envelope block accepted with probability ``exp(x_t - max) / bound_b`` (head tokens are
rejected there: their mass is all in the head part).  Accepted draws are exactly
distributed as ``softmax(x)``.  ``us`` holds three uniforms per round; ``-1`` means every
round was rejected (the caller falls back to the full distribution).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


def lazy_draw_reference(x, bm, mx: float, thr: float, block: int, us) -> int:
    """Obviously-correct pure-Python version of :func:`lazy_draw` (same arithmetic)."""
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


@njit(cache=True)
def lazy_draw(x, bm, mx, thr, block, us):  # pragma: no cover - compiled
    """Numba version of :func:`lazy_draw_reference`: O(head blocks x block + blocks) per call."""
    n = x.shape[0]
    nb = bm.shape[0]
    sh = 0.0
    for b in range(nb):
        if bm[b] >= thr:
            for i in range(b * block, min(n, (b + 1) * block)):
                if x[i] >= thr:
                    sh += math.exp(np.float64(x[i]) - mx)
    se = 0.0
    for b in range(nb):
        if bm[b] != -np.inf:
            se += math.exp(min(np.float64(bm[b]), thr) - mx) * min(block, n - b * block)
    for k in range(us.shape[0]):
        u = us[k, 0] * (sh + se)
        if u < sh:
            acc = 0.0
            last = -1
            for b in range(nb):
                if bm[b] >= thr:
                    for i in range(b * block, min(n, (b + 1) * block)):
                        if x[i] >= thr:
                            w = math.exp(np.float64(x[i]) - mx)
                            if w > 0:
                                last = i
                            acc += w
                            if acc > u and w > 0:
                                return i
            return last
        u -= sh
        acc = 0.0
        b = nb - 1
        bound = 0.0
        for j in range(nb):
            bd = 0.0 if bm[j] == -np.inf else math.exp(min(np.float64(bm[j]), thr) - mx)
            acc += bd * min(block, n - j * block)
            if acc > u:
                b = j
                break
        bound = 0.0 if bm[b] == -np.inf else math.exp(min(np.float64(bm[b]), thr) - mx)
        if bound == 0.0:
            continue
        size = min(block, n - b * block)
        t = b * block + min(int(us[k, 1] * size), size - 1)
        xt = np.float64(x[t])
        if xt < thr and us[k, 2] * bound < math.exp(xt - mx):
            return t
    return -1
