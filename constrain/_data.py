"""Where the shared data sets live: one setting, ``CONSTRAIN_SHARED``.

Tests, benchmarks and the CLI find tokenizers, JSONSchemaBench and the JSON Schema test
suite through :func:`shared_dir`, so a checkout without the data skips cleanly instead
of failing, and a user can point everything elsewhere with one environment variable.
"""

from __future__ import annotations

import os
from pathlib import Path

from constrain.errors import DataNotFound

ENV_VAR = "CONSTRAIN_SHARED"


def shared_dir() -> Path:
    """The shared data folder: ``$CONSTRAIN_SHARED``, else ``../shared`` beside the repo."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parent.parent
    return repo.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path inside the shared folder; raises :class:`DataNotFound` saying how to fix it."""
    p = shared_dir().joinpath(*parts)
    if not p.exists():
        raise DataNotFound(
            f"{p} does not exist; set {ENV_VAR} to the folder holding tokenizers/, "
            "jsonschemabench/ and json-schema-test-suite/"
        )
    return p


def tokenizer_path(name: str) -> Path:
    """Folder of a bundled Hugging Face tokenizer (gpt2, llama3, qwen2, llama2, phi3)."""
    return shared_path("tokenizers", name)
