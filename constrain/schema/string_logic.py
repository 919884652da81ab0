"""Boolean combinations of string schemas as one automaton, without distributing them.

Why: the compiler's general path flattens ``allOf``/``anyOf``/``oneOf``/``not`` into a union
of conjunctions (disjunctive normal form) and builds one string automaton per branch.  For a
string schema built from nested ``not``/``anyOf``/``allOf`` over patterns that is
exponential: JSONSchemaBench's Handwritten ``allany16`` distributes into 9^3 = 729 branches
(~15 s to compile).  Over strings every one of these applicators is a plain operation on
regular languages -- intersection, union, complement, exactly-one -- so the same language
is a handful of products of small, minimised automata.

Only schemas whose every leaf is expressed *exactly* take this path: a complement turns an
over-approximation into an under-approximation (valid strings rejected), so a pattern that
does not translate, a format checked by a looser regex, a length bound too large to build,
dynamic references or unknown internal markers all return ``None`` and the caller falls
back to the general path (which records its approximations as usual).  Keywords that only
constrain other types (``minimum``, ``properties``, ``items``...) hold vacuously for strings,
and annotations and unknown keywords are ignored, as validators do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from constrain.automata.bytedfa import ByteDFA
from constrain.automata.regex import regex_to_dfa
from constrain.errors import ConstrainError, ConstraintTooLarge, RegexError
from constrain.schema import strings as sx

if TYPE_CHECKING:
    from constrain.schema.compiler import Compiler

APPLICATORS = frozenset({"allOf", "anyOf", "oneOf", "not", "if", "$ref"})
# keywords handled below; everything else is an annotation, another type's keyword or unknown
_HANDLED = frozenset(
    {"type", "pattern", "minLength", "maxLength", "format", "const", "enum", "allOf", "anyOf", "oneOf", "not",
     "if", "then", "else", "$ref"}
)
# dynamic references are not resolved statically; OpenAPI's ``nullable`` widens the type in the
# general path (null allowed), which a string-only automaton cannot say
_REFUSED = frozenset({"$dynamicRef", "$recursiveRef", "nullable"})
MAX_NODES = 400  # schema nodes visited: beyond this the general path (and its bounds) decide


class _Unsupported(Exception):
    pass


def is_candidate(schema: Any) -> bool:
    """A string-typed schema object with a boolean applicator at its top."""
    if not isinstance(schema, dict):
        return False
    t = schema.get("type")
    if t != "string" and t != ["string"]:
        return False
    return any(k in schema for k in ("allOf", "anyOf", "oneOf", "not", "if"))


class StringLogic:
    """Value automata (decoded string content) of string schemas, built by boolean algebra."""

    def __init__(self, compiler: Compiler, max_states: int) -> None:
        self.c = compiler
        self.max_states = max_states
        self._any: ByteDFA | None = None
        self._memo: dict[tuple, ByteDFA] = {}
        self._nodes = 0

    def build(self, schema: Any, res: Any) -> ByteDFA | None:
        """The exact value automaton of ``schema`` restricted to strings, or None (unsupported,
        or larger than ``max_states``: the caller's general path decides)."""
        self._nodes = 0
        try:
            d = self._lang(schema, res, frozenset())
        except (_Unsupported, ConstraintTooLarge, RegexError):
            return None
        except ConstrainError:
            return None
        return d if d.n_states <= self.max_states else None

    # ---- algebra ------------------------------------------------------------------------------
    def any_string(self) -> ByteDFA:
        if self._any is None:
            self._any = regex_to_dfa(r"[\s\S]*")
        return self._any

    def _fit(self, d: ByteDFA) -> ByteDFA:
        d = d.minimize()
        if d.n_states > self.max_states:
            raise _Unsupported
        return d

    def _and(self, a: ByteDFA, b: ByteDFA) -> ByteDFA:
        return self._fit(a.intersect(b, max_states=2 * self.max_states))

    def _or(self, a: ByteDFA, b: ByteDFA) -> ByteDFA:
        return self._fit(a.union(b, max_states=2 * self.max_states))

    def _not(self, a: ByteDFA) -> ByteDFA:
        return self._fit(sx.difference(self.any_string(), a, max_states=2 * self.max_states))

    # ---- schemas ------------------------------------------------------------------------------
    def _lang(self, schema: Any, res: Any, seen: frozenset) -> ByteDFA:
        if schema is True:
            return self.any_string()
        if schema is False:
            return ByteDFA.empty()
        if not isinstance(schema, dict):
            raise _Unsupported
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _Unsupported
        c = self.c
        res = c.enter(schema, res)
        key = (id(schema), c.base_of(res))
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        keys = {k for k in schema if not c.is_later_keyword(k)}
        if keys & _REFUSED or any(k.startswith("__") for k in keys):
            raise _Unsupported
        if "$ref" in keys:
            try:  # (not Compiler.resolve: a failure here must not record an approximation)
                r = res.lookup(schema["$ref"])
            except Exception:  # noqa: BLE001 - unresolvable: the general path reports it
                raise _Unsupported from None
            target, tres = r.contents, r.resolver
            rkey = (id(target), c.base_of(tres))
            if rkey in seen:
                raise _Unsupported  # a cycle through $ref: the general path handles it
            out = self._lang(target, tres, seen | {rkey})
            if c.draft in ("4", "6", "7"):  # siblings of $ref are ignored before 2019-09
                self._memo[key] = out
                return out
        else:
            out = self.any_string()
        out = self._and(out, self._leaf(schema, keys)) if keys & (_HANDLED - APPLICATORS) else out
        for sub in schema.get("allOf", []) if "allOf" in keys else ():
            out = self._and(out, self._lang(sub, res, seen))
        if "anyOf" in keys:
            u = ByteDFA.empty()
            for sub in schema["anyOf"]:
                u = self._or(u, self._lang(sub, res, seen))
            out = self._and(out, u)
        if "oneOf" in keys:
            langs = [self._lang(sub, res, seen) for sub in schema["oneOf"]]
            one = ByteDFA.empty()
            for i, li in enumerate(langs):
                others = ByteDFA.empty()
                for j, lj in enumerate(langs):
                    if j != i:
                        others = self._or(others, lj)
                one = self._or(one, self._and(li, self._not(others)))
            out = self._and(out, one)
        if "not" in keys:
            out = self._and(out, self._not(self._lang(schema["not"], res, seen)))
        if "if" in keys:
            cond = self._lang(schema["if"], res, seen)
            then = self._lang(schema["then"], res, seen) if "then" in keys else self.any_string()
            other = self._lang(schema["else"], res, seen) if "else" in keys else self.any_string()
            out = self._and(out, self._or(self._and(cond, then), self._and(self._not(cond), other)))
        self._memo[key] = out
        return out

    def _leaf(self, schema: dict, keys: set) -> ByteDFA:
        """The string keywords of one schema object (no applicators)."""
        out = self.any_string()
        if "type" in keys:
            t = schema["type"]
            types = t if isinstance(t, list) else [t]
            if "string" not in types:
                return ByteDFA.empty()
        if "const" in keys:
            v = schema["const"]
            if not isinstance(v, str):
                return ByteDFA.empty()
            out = self._and(out, sx.literal_value_dfa([v]))
        if "enum" in keys:
            vals = [v for v in schema["enum"] if isinstance(v, str)]
            out = self._and(out, sx.literal_value_dfa(sorted(set(vals))))
        if "pattern" in keys:
            out = self._and(out, sx.pattern_dfa(schema["pattern"], max_states=8 * self.max_states))
        if "minLength" in keys or "maxLength" in keys:
            lo = int(schema.get("minLength", 0))
            hi = int(schema["maxLength"]) if "maxLength" in keys else None
            if hi is not None and hi < lo:
                return ByteDFA.empty()
            out = self._and(out, sx.length_dfa(lo, hi))
        if "format" in keys and self.c.assert_format:
            fmt = schema["format"]
            if fmt not in sx.EXACT_FORMATS:
                raise _Unsupported  # a looser regex, or unknown: not exact under a complement
            f = sx.format_dfa(fmt)
            if f is None:
                raise _Unsupported
            out = self._and(out, f)
        return out
