"""Per-call statistics every sampler reports (checks, masks, time split engine vs model)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class SamplingStats:
    """Counters accumulated over one generation call.

    ``checks`` counts calls to ``Matcher.check`` (cache misses only), ``budget_checks`` the
    extra budget look-ups, ``masks`` the full-vocabulary masks computed and
    ``masks_avoided`` the steps where a sampler chose a token without one: the saving AWRS
    exists for.  ``fallbacks`` counts AWRS steps that used a mask, ``masked_steps`` those of
    them taken by plain masking because the row's previous step needed the mask too (see
    :func:`constrain.sampling.smc.run`).  Times are seconds; ``engine_time`` is everything the sampler does outside
    the model forward pass.
    """

    tokens: int = 0
    steps: int = 0
    checks: int = 0
    cache_hits: int = 0
    budget_checks: int = 0
    masks: int = 0
    masks_avoided: int = 0
    fallbacks: int = 0
    masked_steps: int = 0
    rejections: int = 0
    resamples: int = 0
    dead_particles: int = 0
    engine_time: float = 0.0
    model_time: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def checks_per_token(self) -> float:
        return self.checks / max(self.tokens, 1)

    @property
    def engine_time_per_token(self) -> float:
        return self.engine_time / max(self.tokens, 1)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["checks_per_token"] = self.checks_per_token
        d["engine_time_per_token"] = self.engine_time_per_token
        return d
