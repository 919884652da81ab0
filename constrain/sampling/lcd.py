"""Locally constrained decoding (token masking): mask, renormalise, sample or arg-max.

The baseline every mask engine implements.  It samples ``g(x) = p(x) c(x) / Z`` exactly
(same target as AWRS per step) but evaluates the constraint on the whole vocabulary each
step.  Its ``log_z`` (log of the masked mass) is the correct incremental importance weight
when masking is used as an SMC proposal.  The budget rule is folded into the mask exactly
for DFA matchers; for other matchers it is applied to the drawn token (over-budget tokens
are skipped in Gumbel order, which keeps the draw exact) and ``log_z`` then excludes only
the over-budget tokens that were drawn.
"""

from __future__ import annotations

import math

import numpy as np

from constrain.engine.matcher import allocate_bitmask
from constrain.sampling.awrs import Draw, gumbel_keys, lazy_order
from constrain.sampling.budget import budget_mask
from constrain.sampling.core import Checker, Proposal, _dfa_parts


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
    elif chk.remaining is not None and _dfa_parts(chk.matcher) is not None:
        mask = budget_mask(chk.matcher, mask, chk.remaining)
    masked = Proposal.masked(prop, mask)
    w = masked.weights
    s = masked.total
    if s <= 0:
        return Draw(None, -math.inf, 0, True)
    if greedy:
        x = int(np.argmax(np.where(w > 0, prop.logits, np.float32(-np.inf))))
    else:
        x = masked.draw(rng)  # the common case: one block draw, no keys
    if chk.fits_budget(x):
        return Draw(x, math.log(s / prop.total), 0, True)
    # over budget (generic matchers only): continue in exact without-replacement order
    s -= float(w[x])
    rejected = 1
    if greedy:
        keys = np.where(w > 0, prop.logits, np.float32(-np.inf))
    else:
        keys = gumbel_keys(masked, rng)
    keys[x] = -np.inf
    for x in lazy_order(keys, first_block=1):
        if chk.fits_budget(x):
            return Draw(x, math.log(s / prop.total), rejected, True)
        s -= float(w[x])
        rejected += 1
    return Draw(None, -math.inf, rejected, True)


def batch_masks(matchers, vocab_size: int) -> np.ndarray:
    """Bool masks ``(B, V)`` for a batch of matchers: one bitmask buffer, one unpack."""
    bm = allocate_bitmask(vocab_size, len(matchers))
    for i, m in enumerate(matchers):
        m.fill_mask(bm[i])
    bits = np.unpackbits(bm.view(np.uint8), axis=1, bitorder="little")
    return bits[:, :vocab_size].view(bool)  # 0/1 bytes are valid bools: no copy
