"""The optional C extension (``native/``, built as ``constrain._native``), or ``None``.

One place decides whether it is used: a compiler-less install has no extension, and
``CONSTRAIN_NO_NATIVE=1`` turns it off (the pure-Python/numpy/numba paths, which are also
the references the tests compare it with).  The mask engine (``fill_mask``) and the AWRS
proposal (block maxima, lazy draws) both import it from here.
"""

from __future__ import annotations

import os
from types import ModuleType

native: ModuleType | None
try:
    from constrain import _native as native
except ImportError:  # pragma: no cover - exercised only where the extension was not built
    native = None
if os.environ.get("CONSTRAIN_NO_NATIVE", "") not in ("", "0"):
    native = None
