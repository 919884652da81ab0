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
from constrain.errors import ConstrainError
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
MAX_OPS = 200  # automaton products per build: the algebra must stay cheaper than distributing


class _Unsupported(Exception):
    pass


def is_candidate(schema: Any) -> bool:
    """A string-typed schema object with a boolean applicator at its top.  :meth:`StringLogic.build`
    then also wants a ``not``, ``oneOf`` or ``if`` below it (through ``$ref`` too): negations are
    what make distribution explode (the negation of an ``anyOf`` of ``allOf`` s multiplies out)
    and what it may only approximate (``oneOf`` as ``anyOf`` when the branches are not provably
    disjoint), while plain unions and intersections distribute cheaply and exactly."""
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
        self._memo: dict[tuple, ByteDFA | None] = {}  # None: that subtree was unsupported
        self._nodes = 0
        self._ops = 0

    def build(self, schema: Any, res: Any) -> ByteDFA | None:
        """The exact value automaton of ``schema`` restricted to strings, or None (unsupported,
        or larger than ``max_states``: the caller's general path decides)."""
        self._nodes = 0
        self._ops = 0
        try:
            if not self._needs_algebra(schema, res, frozenset()):
                return None
            self._nodes = 0
            d = self._lang(schema, res, frozenset())
        except (_Unsupported, ConstrainError):
            return None
        return d if d.n_states <= self.max_states else None

    # ---- algebra ------------------------------------------------------------------------------
    def any_string(self) -> ByteDFA:
        return regex_to_dfa(r"[\s\S]*")  # (regex_to_dfa caches it)

    def _fit(self, d: ByteDFA) -> ByteDFA:
        self._ops += 1
        if self._ops > MAX_OPS:
            raise _Unsupported
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

    def _needs_algebra(self, schema: Any, res: Any, seen: frozenset) -> bool:
        """Whether a ``not``, ``oneOf`` or ``if`` is reachable through the applicators (and
        ``$ref``)."""
        if not isinstance(schema, dict):
            return False
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _Unsupported
        if "not" in schema or "oneOf" in schema or "if" in schema:
            return True
        c = self.c
        res = c.enter(schema, res)
        if "$ref" in schema:
            try:
                r = res.lookup(schema["$ref"])
            except Exception:  # noqa: BLE001 - unresolvable: the general path reports it
                raise _Unsupported from None
            rkey = (id(r.contents), c.base_of(r.resolver))
            if rkey not in seen and self._needs_algebra(r.contents, r.resolver, seen | {rkey}):
                return True
        subs = [schema.get(k) for k in ("if", "then", "else") if k in schema]
        for k in ("allOf", "anyOf", "oneOf"):
            subs.extend(schema.get(k) or [])
        return any(self._needs_algebra(x, res, seen) for x in subs)

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
        # by canonical text, not identity: big schemas repeat the same subschema as separate
        # objects (equal text under one base URI is the same language)
        key = (c._canon(schema), c.base_of(res))
        if key in self._memo:
            hit = self._memo[key]
            if hit is None:
                raise _Unsupported
            return hit
        try:
            out = self._node(schema, res, seen, key)
        except (_Unsupported, ConstrainError):  # (ConstraintTooLarge, RegexError included)
            self._memo[key] = None  # a subtree seen again in another build fails at once
            raise _Unsupported from None
        self._memo[key] = out
        return out

    def _node(self, schema: dict, res: Any, seen: frozenset, key: tuple) -> ByteDFA:
        c = self.c
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
            # exactly one, in one pass: after each branch L, one' = (one - L) | (L - some),
            # some' = some | L  (linear in the branches, not quadratic)
            one = some = ByteDFA.empty()
            for sub in schema["oneOf"]:
                lang = self._lang(sub, res, seen)
                one = self._or(self._and(one, self._not(lang)), self._and(lang, self._not(some)))
                some = self._or(some, lang)
            out = self._and(out, one)
        if "not" in keys:
            out = self._and(out, self._not(self._lang(schema["not"], res, seen)))
        if "if" in keys:
            cond = self._lang(schema["if"], res, seen)
            then = self._lang(schema["then"], res, seen) if "then" in keys else self.any_string()
            other = self._lang(schema["else"], res, seen) if "else" in keys else self.any_string()
            out = self._and(out, self._or(self._and(cond, then), self._and(self._not(cond), other)))
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
