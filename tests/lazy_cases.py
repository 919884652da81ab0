"""Random inputs of the lazy AWRS draws, shared by the numba kernel's test (test_sampling) and
the C twin's (test_native): peaked float32 logits with -inf holes, their block maxima, and
a batch of uniforms."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class LazyCase:
    x: np.ndarray
    bm: np.ndarray
    mx: float
    us: np.ndarray  # (k, tries, 3)
    limit: int  # max head blocks
    rng: np.random.Generator  # for anything else the test draws


def lazy_case(n: int, block: int, peak: float, seed: int) -> LazyCase:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 2, size=n).astype(np.float32)
    x[rng.integers(n)] += np.float32(peak)
    x[rng.random(n) < 0.2] = -np.inf
    if not np.isfinite(x).any():
        x[-1] = 1.5
    nb = -(-n // block)
    bm = np.array([x[b * block : (b + 1) * block].max() for b in range(nb)], dtype=np.float32)
    k = int(rng.integers(1, 5))
    us = rng.random((k, int(rng.integers(1, 9)), 3))
    return LazyCase(x, bm, float(bm.max()), us, int(rng.integers(1, nb + 2)), rng)
