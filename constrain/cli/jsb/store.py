"""The results file: one JSON line per (schema, engine), appended as each finishes.

Appending line by line means a killed run loses at most the line being written; on
``--resume`` a torn last line is cut off and every (split, id, engine) already present is
skipped.  The first line is a header with the run's settings so a resume with different
settings (another tokenizer, another timeout) is refused instead of mixing results.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

HEADER_KEYS = ("mode", "tokenizer", "timeout", "model", "max_new_tokens")


class StoreError(Exception):
    """The results file cannot be used as asked (exists without --resume, settings differ)."""


class ResultStore:
    """Append-only JSONL of records keyed by ``(split, id, engine)``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.records: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.header: dict[str, Any] | None = None

    def open(self, settings: dict[str, Any], *, resume: bool, overwrite: bool = False) -> None:
        """Start a fresh file, or load an existing one for ``--resume``."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        exists = self.path.exists() and self.path.stat().st_size > 0
        if exists and not resume and not overwrite:
            raise StoreError(
                f"{self.path} already holds results; pass --resume to continue that run "
                "or --overwrite to start again"
            )
        if exists and resume:
            self._load()
            want = {k: settings.get(k) for k in HEADER_KEYS}
            have = {k: (self.header or {}).get(k) for k in HEADER_KEYS}
            if self.header is not None and want != have:
                diff = ", ".join(
                    f"{k}: {have[k]!r} -> {want[k]!r}" for k in HEADER_KEYS if have[k] != want[k]
                )
                raise StoreError(f"cannot resume {self.path}: settings differ ({diff})")
            if self.header is None:
                self._append({"header": settings})
                self.header = settings
            return
        with self.path.open("w", encoding="utf-8") as fh:
            fh.write(json.dumps({"header": settings}) + "\n")
        self.header = settings

    def _load(self) -> None:
        """Read every complete line; cut a torn tail so later appends start on a fresh line."""
        good_end = 0
        with self.path.open("rb") as fh:
            data = fh.read()
        pos = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            if nl < 0:
                break  # torn last line (killed mid-write)
            line = data[pos:nl]
            pos = nl + 1
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                break
            good_end = pos
            if "header" in obj:
                self.header = obj["header"]
            else:
                self.records[(obj["split"], obj["id"], obj["engine"])] = obj
        if good_end < len(data):
            with self.path.open("r+b") as fh:
                fh.truncate(good_end)

    def load_only(self) -> None:
        """Load for reporting (no truncation of a file another run may be writing)."""
        if not self.path.exists():
            raise StoreError(f"no results at {self.path}")
        with self.path.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if "header" in obj:
                    self.header = obj["header"]
                else:
                    self.records[(obj["split"], obj["id"], obj["engine"])] = obj

    def has(self, split: str, sid: str, engine: str) -> bool:
        return (split, sid, engine) in self.records

    def add(self, record: dict[str, Any]) -> None:
        self.records[(record["split"], record["id"], record["engine"])] = record
        self._append(record)

    def _append(self, obj: dict[str, Any]) -> None:
        line = json.dumps(obj, separators=(",", ":")) + "\n"
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
