"""Locally constrained decoding (token masking): mask, renormalise, sample or arg-max.

The baseline every mask engine implements.  It samples ``g(x) = p(x) c(x) / Z`` exactly
(same target as AWRS per step) but evaluates the constraint on the whole vocabulary each
step; its product of ``Z`` s is *not* a correct weight for the global posterior unless used
inside SMC.  The budget rule is applied lazily to the drawn token (over-budget tokens are
removed and the draw repeated), so the draw is exact for ``c`` and the budget together;
the reported ``log_z`` then excludes only the over-budget tokens that were drawn.
"""

from __future__ import annotations

import math

import numpy as np

from constrain.engine.matcher import allocate_bitmask
from constrain.sampling.awrs import Draw
from constrain.sampling.core import Checker, Proposal


def lcd_sample(
    prop: Proposal,
    chk: Checker,
    rng: np.random.Generator,
    *,
    greedy: bool = False,
    mask: np.ndarray | None = None,
) -> Draw:
    """One masked draw (``mask`` may be precomputed, e.g. by :func:`batch_masks`)."""
    if mask is None:
        mask = chk.mask()
    w = np.where(mask, prop.weights, np.float32(0))
    rejected = 0
    while True:
        s = float(w.sum(dtype=np.float64))
        if s <= 0:
            return Draw(None, -math.inf, rejected, True)
        if greedy:
            x = int(np.argmax(np.where(w > 0, prop.logits, np.float32(-np.inf))))
        else:
            c = np.cumsum(w, dtype=np.float64)
            x = min(int(np.searchsorted(c, rng.random() * c[-1], side="right")), len(w) - 1)
            while w[x] == 0:
                x -= 1
        if chk.fits_budget(x):
            return Draw(x, math.log(s / prop.total), rejected, True)
        w[x] = 0
        rejected += 1


def batch_masks(matchers, vocab_size: int) -> np.ndarray:
    """Bool masks ``(B, V)`` for a batch of matchers: one bitmask buffer, one unpack."""
    bm = allocate_bitmask(vocab_size, len(matchers))
    for i, m in enumerate(matchers):
        m.fill_mask(bm[i])
    bits = np.unpackbits(bm.view(np.uint8), axis=1, bitorder="little")
    return bits[:, :vocab_size].astype(bool)
