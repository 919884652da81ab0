"""JSONSchemaBench data: splits, schemas, test instances and generated valid instances.

The data is one JSONL file per split (``Github_easy.jsonl`` ...), one schema a line with
``id``, ``schema`` and ``tests`` (``{"valid": bool, "data": ...}``), as in MaskBench.  Every
engine must see the same token ids, so instances are serialised once, compactly, with
:func:`serialize` and tokenised with the exact-bytes encoding of one vocabulary.

About a quarter of the schemas have no tests; for those we generate valid instances with
hypothesis-jsonschema, derandomised so an interrupted and a resumed run (and every engine)
see the same instances, and keep only those ``jsonschema`` (with format checks) accepts.
"""

from __future__ import annotations

import json
import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from constrain.errors import DataNotFound

DATA_HINT = (
    "JSONSchemaBench data is one JSONL file per split (Github_easy.jsonl, ...), one schema a line "
    'with "id", "schema" and "tests". Get the schemas and test instances from the public '
    "guidance-ai/jsonschemabench repository (folder maskbench/data, MIT license), put them in a folder "
    "and pass it with --data DIR, or set CONSTRAIN_SHARED to a folder holding jsonschemabench/."
)


@dataclass
class Instance:
    """One test instance: the JSON value and whether the schema accepts it."""

    data: Any
    valid: bool
    generated: bool = False


@dataclass
class SchemaCase:
    """One schema of one split with its instances (as stored in the data)."""

    split: str
    id: str
    schema: Any
    tests: list[Instance] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "id": self.id,
            "schema": self.schema,
            "tests": [{"data": t.data, "valid": t.valid, "generated": t.generated} for t in self.tests],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SchemaCase:
        tests = [Instance(t["data"], bool(t["valid"]), bool(t.get("generated", False))) for t in d["tests"]]
        return cls(d["split"], d["id"], d["schema"], tests)


def default_data_dir() -> Path:
    """``<shared>/jsonschemabench``; raises :class:`DataNotFound` with a hint when absent."""
    from constrain._data import shared_path

    try:
        return shared_path("jsonschemabench")
    except DataNotFound as exc:
        raise DataNotFound(f"{exc}\n{DATA_HINT}") from None


def resolve_data_dir(data: str | Path | None) -> Path:
    """The data folder the user asked for (or the default), checked to hold split files."""
    path = default_data_dir() if data is None else Path(data)
    if not path.is_dir():
        raise DataNotFound(f"JSONSchemaBench data folder {path} does not exist.\n{DATA_HINT}")
    if not list_splits(path):
        raise DataNotFound(f"{path} holds no *.jsonl split files.\n{DATA_HINT}")
    return path


def list_splits(data_dir: Path) -> list[str]:
    """Split names (file stems) in ``data_dir``, sorted."""
    return sorted(p.stem for p in Path(data_dir).glob("*.jsonl"))


def load_split(data_dir: Path, split: str, limit: int | None = None) -> Iterator[SchemaCase]:
    """Schemas of ``split`` in file order (the first ``limit`` when given).

    A malformed line raises :class:`DataNotFound` naming the file and line, since a silently
    skipped schema would change every coverage number.
    """
    path = Path(data_dir) / f"{split}.jsonl"
    if not path.exists():
        avail = ", ".join(list_splits(Path(data_dir))) or "none"
        raise DataNotFound(f"no split {split!r} in {data_dir} (available: {avail})")
    n = 0
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if limit is not None and n >= limit:
                return
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                sid = str(d.get("id") or f"{split}---{lineno}")
                tests = [Instance(t["data"], bool(t["valid"])) for t in d.get("tests") or []]
                schema = d["schema"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DataNotFound(f"{path}:{lineno}: not a JSONSchemaBench record ({exc})") from None
            n += 1
            yield SchemaCase(split, sid, schema, tests)


def serialize(value: Any) -> str:
    """Compact JSON text of an instance: the form every engine is fed (no optional whitespace)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# ---- validation and generated instances -------------------------------------------------------


def validator_for(schema: Any, *, all_formats: bool = False) -> Any:
    """A ``jsonschema`` validator for ``schema`` (draft from ``$schema``) with format checks on.

    ``all_formats`` checks every format jsonschema knows, not just the draft's own: engines
    assert ``uuid`` in a draft-04 schema too, so an instance generated as valid must have a
    real UUID there (``"0"`` passed the draft-04 checker and every engine rejected it).
    """
    import jsonschema

    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema, format_checker=jsonschema.FormatChecker() if all_formats else cls.FORMAT_CHECKER)


def _ascii_search(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text, re.ASCII) is not None
    except re.error:
        return False  # not a Python regex: we cannot vouch for the instance


def ecma_validator_for(schema: Any) -> Any:
    """Like :func:`validator_for`, but ``pattern``/``patternProperties`` use ASCII ``\\d``/``\\w``/``\\b``.

    JSON Schema patterns are ECMA-262 regexes, where ``\\d`` is ``[0-9]`` and ``\\w`` is ASCII;
    ``jsonschema`` runs them with Python's Unicode classes, so hypothesis-jsonschema's
    ``"\u0f26000-00-00"`` passes it for ``^\\d{4}-...`` although it is invalid (ASCII-only
    ``\\s`` is stricter than ECMA, which only drops candidates).  Generated instances must pass both.
    """
    import jsonschema
    from jsonschema import ValidationError

    base = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)

    def pattern(validator: Any, patrn: str, instance: Any, _schema: Any) -> Iterator[Any]:
        if validator.is_type(instance, "string") and not _ascii_search(patrn, instance):
            yield ValidationError(f"{instance!r} does not match {patrn!r} (ECMA classes)")

    def pattern_properties(validator: Any, pats: dict, instance: Any, _schema: Any) -> Iterator[Any]:
        if not validator.is_type(instance, "object"):
            return
        for patrn, sub in pats.items():
            for k, v in instance.items():
                if _ascii_search(patrn, k):
                    yield from validator.descend(v, sub, path=k, schema_path=patrn)

    cls = jsonschema.validators.extend(base, {"pattern": pattern, "patternProperties": pattern_properties})
    return cls(schema, format_checker=jsonschema.FormatChecker())  # every format (see validator_for)


def is_valid(schema: Any, value: Any) -> bool:
    """Whether ``value`` validates against ``schema``; a schema jsonschema cannot handle gives False."""
    try:
        return bool(validator_for(schema).is_valid(value))
    except Exception:  # noqa: BLE001 - broken $ref, bad regex...: we cannot vouch for the instance
        return False


def generate_valid(schema: Any, n: int = 2, max_examples: int = 25, time_budget: float = 20.0) -> list[Any]:
    """Up to ``n`` distinct valid instances of ``schema`` from hypothesis-jsonschema.

    Derandomised (same schema, same instances on every run) and checked with ``jsonschema``
    (formats included), so a generator bug cannot turn into a false reject.  Returns ``[]``
    when the schema is outside what the generator supports.  Generation stops as soon as
    ``n`` are found, and after ``time_budget`` seconds (some real schemas take minutes to
    canonicalise) it returns what it has; the worker pool's deadline is only the backstop.
    """
    try:
        from hypothesis_jsonschema import from_schema
    except ImportError:  # pragma: no cover - dev dependency
        return []
    found: list[Any] = []
    seen: set[str] = set()
    with _time_limit(time_budget):
        try:
            validators = (validator_for(schema, all_formats=True), ecma_validator_for(schema))
            strategy = from_schema(schema)
        except BaseException as exc:  # noqa: BLE001 - unsupported by the generator, or out of time
            if isinstance(exc, KeyboardInterrupt):
                raise
            return []
        _collect(strategy, validators, found, seen, n, max_examples)
    return [order_like_schema(schema, v) for v in found]


class _OutOfTime(BaseException):
    """Raised by the alarm inside generation (a BaseException so no library swallows it)."""


class _Enough(Exception):
    """Raised inside the hypothesis test once enough instances are found."""


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise _OutOfTime

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _OutOfTime:
        pass
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _collect(
    strategy: Any, validators: tuple[Any, ...], found: list[Any], seen: set[str], n: int, max_examples: int
) -> None:
    from hypothesis import HealthCheck, Phase, given, settings

    @settings(
        database=None,
        derandomize=True,
        max_examples=max_examples,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value: Any) -> None:
        if len(found) >= n:
            return
        try:
            text = serialize(value)
            text.encode("utf-8")  # lone surrogates cannot be fed as UTF-8 bytes
            ok = all(v.is_valid(value) for v in validators)
        except Exception:  # noqa: BLE001 - NaN, unserialisable, validator error
            return
        if ok and text not in seen:
            seen.add(text)
            found.append(value)
        if len(found) >= n:
            raise _Enough

    try:
        collect()
    except Exception:  # noqa: BLE001 - _Enough, or hypothesis gave up (unsatisfiable, too slow, ...)
        pass


def order_like_schema(schema: Any, value: Any, _root: Any = None, _depth: int = 0) -> Any:
    """``value`` with object keys in the schema's ``properties`` order (others after, sorted).

    Engines emit properties in definition order (MaskBench's instances were reordered the
    same way), so a generated instance in random key order would be a spurious false reject.
    Follows local ``$ref``, ``allOf``, ``items``/``prefixItems`` and ``additionalProperties``.
    """
    root = schema if _root is None else _root
    if _depth > 50:
        return value
    sub = _resolve(schema, root)
    if isinstance(value, dict):
        order: list[str] = []
        props: dict[str, Any] = {}
        for s in _conjuncts(sub, root):
            p = s.get("properties")
            if isinstance(p, dict):
                for k, v in p.items():
                    if k not in props:
                        props[k] = v
                        order.append(k)
        extra = sub.get("additionalProperties") if isinstance(sub, dict) else None
        keys = [k for k in order if k in value] + sorted(k for k in value if k not in props)
        out = {}
        for k in keys:
            child = props.get(k, extra if isinstance(extra, dict) else None)
            out[k] = order_like_schema(child, value[k], root, _depth + 1) if child is not None else value[k]
        return out
    if isinstance(value, list) and isinstance(sub, dict):
        prefix = sub.get("prefixItems")
        items = sub.get("items")
        if isinstance(items, list):  # draft-04..2019 tuple form
            prefix, items = items, sub.get("additionalItems")
        res = []
        for i, v in enumerate(value):
            child = prefix[i] if isinstance(prefix, list) and i < len(prefix) else items
            res.append(order_like_schema(child, v, root, _depth + 1) if isinstance(child, dict) else v)
        return res
    return value


def _resolve(schema: Any, root: Any, hops: int = 0) -> Any:
    if isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and hops < 20:
        ref = schema["$ref"]
        if ref.startswith("#"):
            node = root
            for part in ref[1:].split("/"):
                if not part:
                    continue
                part = part.replace("~1", "/").replace("~0", "~")
                if isinstance(node, dict) and part in node:
                    node = node[part]
                elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                    node = node[int(part)]
                else:
                    return schema
            return _resolve(node, root, hops + 1)
    return schema


def _conjuncts(schema: Any, root: Any, depth: int = 0) -> list[dict[str, Any]]:
    if not isinstance(schema, dict) or depth > 10:
        return []
    out = [schema]
    for s in schema.get("allOf") or []:
        out.extend(_conjuncts(_resolve(s, root), root, depth + 1))
    return out
