"""The exact end-of-document check behind an over-approximated schema.

Where the schema compiler cannot express a keyword in the grammar (``uniqueItems``, a
``oneOf`` whose branches may overlap, a long string under a ``pattern``, ...) it
over-approximates and records a warning: the grammar then accepts some documents the schema
rejects.  A matcher of such a grammar allows EOS only where :class:`EndValidator` says the
finished text validates, so an invalid document is never *completed*: a sampler meets a dead
end (a clear error) instead of returning output that silently violates the schema, and a
MaskBench-style check sees EOS refused.  Exact schemas carry no validator and pay nothing.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

_VALIDATORS = {
    "4": "Draft4Validator",
    "6": "Draft6Validator",
    "7": "Draft7Validator",
    "2019-09": "Draft201909Validator",
    "2020-12": "Draft202012Validator",
}


class EndValidator:
    """``check(data: bytes) -> bool``: does the finished document validate against ``schema``?

    ``formats`` asserts ``format`` with ``jsonschema``'s checkers for the schema's draft (the
    schema compiled with ``assert_format=True``, the default: formats are assertions there,
    and the grammar only approximates most of them); otherwise ``format`` is an annotation.  A schema this
    validator cannot load or evaluate (an unresolvable remote reference, a pattern Python's
    ``re`` refuses) answers True everywhere: the grammar's own verdict stands, exactly as
    without the check.  Verdicts are remembered for the last few texts (a mask and the
    following EOS advance ask twice).
    """

    MEMO = 64

    def __init__(
        self, schema: Any, draft: str, retrieve: Callable[[str], Any] | None = None, formats: bool = False
    ) -> None:
        self.schema = schema
        self.draft = draft
        self.retrieve = retrieve
        self.formats = formats
        self._validator: Any = None
        self._broken = False
        self._memo: OrderedDict[bytes, bool] = OrderedDict()

    def __getstate__(self) -> dict:
        # the jsonschema validator is rebuilt on first use (it does not pickle)
        return {"schema": self.schema, "draft": self.draft, "retrieve": self.retrieve, "formats": self.formats}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["schema"], state["draft"], state["retrieve"], state["formats"])  # type: ignore[misc]

    def _load(self) -> Any:
        import jsonschema
        from referencing import Registry, Resource

        cls = getattr(jsonschema, _VALIDATORS.get(self.draft, "Draft202012Validator"))
        # the draft's own format checker: FormatChecker() would also apply formats of other
        # drafts (draft 3's strptime "time" refuses a draft-4 schema's valid "12:00:00Z")
        kw: dict[str, Any] = {"format_checker": cls.FORMAT_CHECKER} if self.formats else {}
        if self.retrieve is not None:
            fetch = self.retrieve
            kw["registry"] = Registry(retrieve=lambda uri: Resource.from_contents(fetch(uri)))  # type: ignore[call-arg]
        return cls(self.schema, **kw)

    def prepare(self) -> None:
        """Load the validator and compile the schema's patterns now (compile time), not at the
        first end-of-document check: on a Snowplow schema that made one mask take 170 ms.
        Failures are left for :meth:`__call__` to meet (and answer True, as documented)."""
        if self._validator is not None or self._broken:
            return
        try:
            self._validator = self._load()
        except Exception:  # noqa: BLE001 - decided at the first check, see __call__
            return
        import re

        for pattern in _patterns(self.schema):
            try:  # (jsonschema's re.search finds them in re's own cache)
                re.compile(pattern)
            except (re.error, RecursionError, OverflowError):
                pass

    def __call__(self, data: bytes) -> bool:
        got = self._memo.get(data)
        if got is not None:
            return got
        if self._broken:
            return True
        try:
            instance = json.loads(data)
        except ValueError:  # (the grammar accepted text that is not JSON: never valid)
            v = False
        else:
            try:
                if self._validator is None:
                    self._validator = self._load()
                v = bool(self._validator.is_valid(instance))
            except Exception:  # noqa: BLE001 - the validator cannot decide: the grammar's verdict stands
                self._broken = True
                return True
        self._memo[data] = v
        if len(self._memo) > self.MEMO:
            self._memo.popitem(last=False)
        return v


def _patterns(schema: Any, limit: int = 10_000) -> list[str]:
    """The ``pattern`` values and ``patternProperties`` keys anywhere in ``schema`` (bounded)."""
    out: list[str] = []
    stack = [schema]
    seen = 0
    while stack and seen < limit:
        node = stack.pop()
        seen += 1
        if isinstance(node, dict):
            p = node.get("pattern")
            if isinstance(p, str):
                out.append(p)
            pp = node.get("patternProperties")
            if isinstance(pp, dict):
                out.extend(k for k in pp if isinstance(k, str))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return out
