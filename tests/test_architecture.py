"""The package's folders follow the data flow: each imports only from the folders before it."""

from __future__ import annotations

import re
from pathlib import Path

import constrain

ORDER = {
    "vocab": 0,
    "automata": 1,
    "cfg": 2,
    "schema": 3,
    "engine": 4,
    "sampling": 5,
    "integrations": 6,
    "diffusion": 6,
    "lang": 6,
    "cli": 7,
}
IMPORT = re.compile(r"^\s*(?:from|import)\s+constrain\.(\w+)")


def test_layers_import_only_earlier_layers():
    root = Path(constrain.__file__).parent
    violations = []
    for f in root.rglob("*.py"):
        rel = f.relative_to(root).parts
        if len(rel) < 2 or rel[0] not in ORDER:
            continue
        me = rel[0]
        for n, line in enumerate(f.read_text().splitlines(), 1):
            m = IMPORT.match(line)
            if m and m.group(1) in ORDER and ORDER[m.group(1)] > ORDER[me]:
                violations.append(f"{f.relative_to(root)}:{n}: {line.strip()}")
    assert not violations, "layer violations:\n" + "\n".join(violations)


def test_import_constrain_is_light():
    """``import constrain`` must not pull numba or torch (names resolve lazily)."""
    import subprocess
    import sys

    code = "import sys, constrain; print('numba' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
