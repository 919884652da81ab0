"""The runnable examples in README.md and docs/*.md run (```python blocks; ```py ones are illustrative)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from constrain._data import shared_dir

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("doc", [d for d in DOCS if _blocks(d)], ids=lambda d: d.name)
def test_doc_examples_run(doc, monkeypatch):
    if not (shared_dir() / "tokenizers").exists():
        pytest.skip(f"examples use the shared tokenizers; none under {shared_dir()}")
    monkeypatch.chdir(ROOT)
    namespace: dict = {}
    for i, code in enumerate(_blocks(doc)):
        code = code.replace("../shared", str(shared_dir()))
        try:
            exec(compile(code, f"{doc.name}[block {i}]", "exec"), namespace)
        except Exception as exc:  # report which block failed
            raise AssertionError(f"{doc.name} block {i} failed: {exc!r}\n{code}") from exc
    assert os.getcwd() == str(ROOT)
