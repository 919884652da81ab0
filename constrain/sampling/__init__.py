"""Samplers over any :class:`~constrain.engine.matcher.Matcher`: token masking (LCD),
adaptive weighted rejection sampling (AWRS) and sequential Monte Carlo (SMC), with
budget-aware completion and per-call statistics.  See ``docs/sampling.md``."""

from constrain.sampling.awrs import Draw, awrs_sample, greedy_sample
from constrain.sampling.budget import BudgetTooSmall, budget_mask, fits, require_budget
from constrain.sampling.core import Checker, Proposal
from constrain.sampling.lcd import batch_masks, lcd_sample
from constrain.sampling.smc import Decoder, Particle, SamplingResult, ess, run
from constrain.sampling.stats import SamplingStats

__all__ = [
    "BudgetTooSmall",
    "Checker",
    "Decoder",
    "Draw",
    "Particle",
    "Proposal",
    "SamplingResult",
    "SamplingStats",
    "awrs_sample",
    "batch_masks",
    "budget_mask",
    "ess",
    "fits",
    "greedy_sample",
    "lcd_sample",
    "require_budget",
    "run",
]
