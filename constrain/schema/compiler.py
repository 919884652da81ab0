"""JSON Schema -> grammar IR.

Pipeline per schema node: *flatten* (inline ``$ref`` and ``allOf`` into a list of keyword
"parts" bound to their base URI), *distribute* applicators that are unions (``anyOf``,
``oneOf``, ``if/then/else``, ``dependentSchemas``, ``dependentRequired``, negatable
``not``) so every branch is again a plain conjunction, then *merge* the conjunction into
one set of constraints per JSON type and emit rules.  Each raw schema object gets one rule,
memoised by identity, so recursive schemas become recursive grammars.

Soundness policy: whatever is not expressed exactly is over-approximated (a keyword is
dropped, a union replaces an exclusive choice) and recorded in ``warnings``; ``strict``
turns each such place into :class:`UnsupportedSchemaError` naming keyword and pointer.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from referencing import Registry, Resource
from referencing import jsonschema as rjs
from referencing.exceptions import Unresolvable

from constrain.automata.bytedfa import ByteDFA
from constrain.automata.regex import regex_to_dfa
from constrain.cfg.ir import Grammar, GrammarBuilder
from constrain.errors import (
    ConstrainError,
    ConstraintTooLarge,
    GrammarTooLarge,
    RegexError,
    SchemaApproximationWarning,
    SchemaError,
    UnsupportedSchemaError,
)
from constrain.schema import numbers as nm
from constrain.schema import string_logic
from constrain.schema import strings as sx
from constrain.schema.validate import EndValidator

TYPES = ("null", "boolean", "object", "array", "string", "number")
_DRAFTS = {
    "4": rjs.DRAFT4,
    "6": rjs.DRAFT6,
    "7": rjs.DRAFT7,
    "2019-09": rjs.DRAFT201909,
    "2020-12": rjs.DRAFT202012,
}
_DIALECT_TO_DRAFT = {
    "json-schema.org/draft-04/schema": "4",
    "json-schema.org/draft-06/schema": "6",
    "json-schema.org/draft-07/schema": "7",
    "json-schema.org/draft/2019-09/schema": "2019-09",
    "json-schema.org/draft/2020-12/schema": "2020-12",
}
MAX_BRANCHES = 256
# distributed branches in one whole schema: unions inside recursive schemas multiply (each
# visit of a subtree in a new context distributes again); past this, unions stop distributing
MAX_TOTAL_BRANCHES = 20_000
_CONSTRAINING = {
    "type", "enum", "const", "nullable", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "multipleOf", "minLength", "maxLength", "pattern", "format", "items", "prefixItems", "additionalItems",
    "minItems", "maxItems", "contains", "uniqueItems", "properties", "required", "additionalProperties",
    "patternProperties", "propertyNames", "minProperties", "maxProperties",
}
_UNSUPPORTED = {"unevaluatedProperties", "unevaluatedItems", "contentSchema"}
# every keyword some draft gives a meaning to (assertions, applicators, references); the rest
# are annotations, e.g. to a negation
_SEMANTIC = _CONSTRAINING | _UNSUPPORTED | {
    "allOf", "anyOf", "oneOf", "not", "if", "then", "else", "dependencies", "dependentRequired",
    "dependentSchemas", "$ref", "$dynamicRef", "$recursiveRef", "minContains", "maxContains",
}
MAX_COUNT = 256
MAX_SUBSET_KEYS = 4
MAX_REQUIRED_TRACKED = 8
MAX_NEGATION_BRANCHES = 64  # branches of the negation of an anyOf (a product of the negations)
MAX_UNIQUE_DOMAIN = 8


@dataclass
class Part:
    """One conjunct: a schema object (minus ``$ref``/``allOf``) with its resolver and pointer."""

    schema: dict
    res: Any
    ptr: str


@dataclass
class JsonSchemaConstraint:
    """A compiled JSON Schema: ``grammar`` for the CFG engine, ``warnings`` for approximations."""

    schema: Any
    grammar: Grammar
    warnings: list[str] = field(default_factory=list)
    options: dict = field(default_factory=dict)
    retrieve: Callable[[str], Any] | None = field(default=None, repr=False, compare=False)

    @property
    def exact(self) -> bool:
        """True when nothing was over-approximated (the grammar is exactly the schema)."""
        return not self.warnings

    def end_check(self) -> EndValidator | None:
        """What a matcher consults before allowing EOS: None for an exact schema, else the
        schema's validator (see :mod:`constrain.schema.validate`)."""
        if self.exact:
            return None
        return EndValidator(
            self.schema,
            self.options.get("draft", "2020-12"),
            self.retrieve,
            formats=bool(self.options.get("assert_format", True)),
        )


def _draft_of(schema: Any, draft: str | int | None) -> str:
    if draft is not None:
        d = str(draft).replace("draft", "").replace("draft-0", "")
        if d not in _DRAFTS:
            raise SchemaError(f"unknown draft {draft!r} (use 4, 6, 7, 2019-09 or 2020-12)")
        return d
    if isinstance(schema, dict) and isinstance(schema.get("$schema"), str):
        for k, v in _DIALECT_TO_DRAFT.items():
            if k in schema["$schema"]:
                return v
    return "2020-12"


def _load(schema: Any) -> Any:
    if isinstance(schema, (str, bytes)):
        try:
            return json.loads(schema)
        except json.JSONDecodeError as e:
            raise SchemaError(f"schema is not valid JSON: {e.msg} (line {e.lineno} column {e.colno})") from None
    if isinstance(schema, type) and hasattr(schema, "model_json_schema"):
        return schema.model_json_schema()
    if isinstance(schema, (dict, bool)):
        return schema
    raise SchemaError(f"a schema must be a dict, bool, JSON text or pydantic model, not {type(schema).__name__}")


def _jeq(a: Any, b: Any) -> bool:
    """JSON equality (1 == 1.0, but True != 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_jeq(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_jeq(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) or isinstance(v, float) and v.is_integer()


def _dec(v: Any, ptr: str) -> Decimal:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise SchemaError(f"expected a number, got {v!r}", ptr)
    try:
        return Decimal(repr(v)) if isinstance(v, float) else Decimal(v)
    except InvalidOperation:
        raise SchemaError(f"bad number {v!r}", ptr) from None


_DRAFT_ORDER = {"4": 0, "6": 1, "7": 2, "2019-09": 3, "2020-12": 4}
# keyword -> the draft that introduced it: in an older draft it is an unknown word, ignored
# (a draft-04 schema with 'if'/'then' must not have them applied: JSONSchemaBench o39097)
_LATER_KEYWORDS = {
    "const": "6", "contains": "6", "propertyNames": "6",
    "if": "7", "then": "7", "else": "7",
    "dependentRequired": "2019-09", "dependentSchemas": "2019-09", "minContains": "2019-09",
    "maxContains": "2019-09", "unevaluatedProperties": "2019-09", "unevaluatedItems": "2019-09",
    "$recursiveRef": "2019-09",
    "prefixItems": "2020-12", "$dynamicRef": "2020-12",
}


class Compiler:
    # largest value automaton of one string schema (pattern, format, lengths) that becomes a
    # grammar terminal; larger ones are approximated by their length bounds (lenient) or raise
    MAX_STRING_STATES = 600

    def __init__(
        self,
        schema: Any,
        *,
        strict: bool,
        whitespace: str,
        max_whitespace: int,
        property_order: str,
        max_depth: int,
        draft: str,
        assert_format: bool,
        retrieve: Callable[[str], Any] | None,
        max_grammar_rules: int = 300_000,
        max_grammar_states: int = 1_500_000,
    ) -> None:
        if whitespace not in ("compact", "flexible"):
            raise SchemaError(f"whitespace must be 'compact' or 'flexible', not {whitespace!r}")
        if property_order not in ("schema", "any"):
            raise SchemaError(f"property_order must be 'schema' or 'any', not {property_order!r}")
        self.strict = strict
        self.ws = whitespace
        self.max_ws = max_whitespace
        self.order = property_order
        self.max_depth = max_depth
        self.draft = draft
        self.assert_format = assert_format
        self.spec = _DRAFTS[draft]
        self.b = GrammarBuilder()
        self.warnings: list[str] = []
        self.memo: dict[tuple, str] = {}
        self._keep: list = []  # schema objects whose ids key the memo (kept alive: ids stay stable)
        self.branches_total = 0  # distributed branches so far (MAX_TOTAL_BRANCHES)
        self.max_rules = max_grammar_rules
        self.max_dfa_states = max_grammar_states
        self._strings: string_logic.StringLogic | None = None
        self._string_logic_terms: dict[int, str] = {}  # id(value automaton) -> its terminal
        self.depth = 0

        def _retrieve(uri: str):
            if retrieve is None:
                raise Unresolvable(uri)
            return Resource.from_contents(retrieve(uri), default_specification=self.spec)

        root_res = Resource.from_contents(schema, default_specification=self.spec)
        base = root_res.id() or "urn:constrain:root"
        self.registry = Registry(retrieve=_retrieve).with_resource(base, root_res)
        self.root_resolver = self.registry.resolver(base_uri=base)
        self._any: str | None = None
        self._punct: dict[str, str] = {}

    # ---- policy ------------------------------------------------------------------------------
    def approx(self, keyword: str, ptr: str, why: str) -> None:
        """Record an over-approximation (lenient) or raise (strict)."""
        if len(why) > 300:  # a translated regex can run to kilobytes: keep notes readable
            why = why[:297] + "..."
        if self.strict:
            raise UnsupportedSchemaError(why, keyword, ptr or "#")
        self.warnings.append(f"{ptr or '#'}: {keyword}: {why}")

    # ---- punctuation and whitespace ----------------------------------------------------------
    def punct(self, ch: str) -> str:
        if ch not in self._punct:
            if self.ws == "compact":
                self._punct[ch] = self.b.literal(ch)
            else:
                w = f"[ \\t\\n\\r]{{0,{self.max_ws}}}"
                e = "\\" + ch
                pat = {"{": e + w, "[": e + w, "}": w + e, "]": w + e, ",": w + e + w, ":": w + e + w}[ch]
                self._punct[ch] = self.b.regex(pat)
        return self._punct[ch]

    # ---- entry -------------------------------------------------------------------------------
    def compile(self, schema: Any) -> Grammar:
        top = self.gen(schema, self.root_resolver, "")
        return self.b.build(top)

    def any_value(self) -> str:
        """Rule for any JSON value (used for ``true`` schemas), built once."""
        if self._any is None:
            b = self.b
            v = b.rule(None, "any")
            self._any = v
            lb, rb, lk, rk, cm, co = (self.punct(c) for c in "{}[],:")
            s = b.regex(sx.ANY_JSON_STRING)
            kv = b.rule([(s, co, v)], "anykv")
            kvs = b.rule(None, "anykvs")
            b.set_rule(kvs, [(kv,), (kvs, cm, kv)])
            items = b.rule(None, "anyitems")
            b.set_rule(items, [(v,), (items, cm, v)])
            b.set_rule(
                v,
                [
                    (b.literal("null"),),
                    (b.literal("true"),),
                    (b.literal("false"),),
                    (b.regex(nm.ANY_NUMBER),),
                    (s,),
                    (lb, rb),
                    (lb, kvs, rb),
                    (lk, rk),
                    (lk, items, rk),
                ],
            )
        return self._any

    def nothing(self) -> str:
        return self.b.rule([], "false")

    # ---- flatten -----------------------------------------------------------------------------
    def enter(self, schema: dict, res: Any) -> Any:
        try:
            sid = self.spec.id_of(schema)
        except Exception:
            sid = None
        if sid and not (self.draft in ("4", "6", "7") and "$ref" in schema):
            try:
                return res.in_subresource(self.spec.create_resource(schema))
            except Exception:
                return res
        return res

    def base_of(self, res: Any) -> str:
        return str(getattr(res, "_base_uri", ""))

    def flatten(self, schema: Any, res: Any, ptr: str, seen: frozenset = frozenset()) -> list[Part] | None:
        """Conjunct parts of ``schema`` (``None`` = the false schema)."""
        if schema is True:
            return []
        if schema is False:
            return None
        if not isinstance(schema, dict):
            raise SchemaError(f"a schema must be an object or a boolean, got {type(schema).__name__}", ptr)
        res = self.enter(schema, res)
        parts: list[Part] = []
        rest = dict(schema)
        for k in _LATER_KEYWORDS.keys() & rest.keys():
            if self.is_later_keyword(k):
                del rest[k]  # not a keyword of this draft: an annotation its validators ignore
        ref = rest.pop("$ref", None)
        if ref is not None:
            got = self.resolve(ref, res, ptr)
            if got is None:
                rest["__opaque"] = True
            if got is not None:
                target, tres = got
                key = (id(target), self.base_of(tres))
                if key in seen or len(seen) > self.max_depth:
                    self.approx("$ref", ptr, "a $ref cycle without structure in between is ignored")
                    rest["__opaque"] = True
                else:
                    sub = self.flatten(target, tres, ptr + "/$ref", seen | {key})
                    if sub is None:
                        return None
                    parts.extend(sub)
            if self.draft in ("4", "6", "7"):
                return parts  # siblings of $ref are ignored before 2019-09
        dref = rest.pop("$dynamicRef", None) or rest.pop("$recursiveRef", None)
        if dref is not None:
            got = self.resolve(dref, res, ptr) if not dref.startswith("#") or dref == "#" or "/" in dref else None
            self.approx("$dynamicRef", ptr, "dynamic references are not resolved dynamically; treated as any value")
            rest["__opaque"] = True  # evaluated-keys bookkeeping cannot see through it
        for i, sub in enumerate(rest.pop("allOf", []) or []):
            got = self.flatten(sub, res, f"{ptr}/allOf/{i}", seen)
            if got is None:
                return None
            parts.extend(got)
        parts.append(Part(rest, res, ptr))
        return parts

    def resolve(self, ref: str, res: Any, ptr: str) -> tuple[Any, Any] | None:
        try:
            r = res.lookup(ref)
        except Exception as e:  # Unresolvable, pointer errors, retrieval failures
            if self.strict:
                raise SchemaError(f"cannot resolve $ref {ref!r}: {e}", ptr) from None
            self.approx("$ref", ptr, f"unresolvable reference {ref!r} treated as any value")
            return None
        return r.contents, r.resolver

    # ---- generation --------------------------------------------------------------------------
    def gen(self, schema: Any, res: Any, ptr: str) -> str:
        if schema is True or (isinstance(schema, dict) and not schema):
            return self.any_value()
        if schema is False:
            return self.nothing()
        key = (id(schema), self.base_of(res))
        hit = self.memo.get(key)
        if hit is not None:
            return hit
        self.check_size(ptr)
        name = self.b.rule(None, "s")
        self.memo[key] = name
        self._keep.append(schema)  # keep ids stable
        if string_logic.is_candidate(schema):
            # nested not/anyOf/allOf over strings: one automaton by boolean algebra instead of
            # distributing into exponentially many branches (None: not exact, general path)
            if self._strings is None:
                self._strings = string_logic.StringLogic(self, 8 * self.MAX_STRING_STATES)
            value = self._strings.build(schema, res)
            if value is not None:
                if value.is_empty():
                    self.b.set_rule(name, [])
                    return name
                # equal subschemas give the same automaton object: one transduction, one terminal
                sym = self._string_logic_terms.get(id(value))
                if sym is None:
                    sym = self._string_logic_terms[id(value)] = self.dfa_term(sx.json_string_dfa(value), "str")
                self.b.set_rule(name, [(sym,)])
                return name
        parts = self.flatten(schema, res, ptr)
        if parts is None:
            self.b.set_rule(name, [])
            return name
        self.b.set_rule(name, [(self.gen_parts(parts, ptr),)])
        return name

    def raw(self, schema: Any, res: Any, ptr: str) -> list | None:
        """A lazily compiled conjunct: ``[(schema, res, ptr)]``, ``[]`` for true, None for false."""
        if schema is False:
            return None
        if schema is True:
            return []
        return [(schema, res, ptr)]

    def conj(self, raws: list, ptr: str) -> str:
        """Symbol for the conjunction of raw subschemas: one rule per raw schema when alone
        (so recursion through properties/items terminates), merged when several."""
        if not raws:
            return self.any_value()
        if len(raws) == 1:
            return self.gen(*raws[0])
        # the same merge recurs once per branch of an enclosing anyOf/oneOf (every branch
        # re-emits the object's properties): reuse it, or big schemas blow up exponentially
        mkey = ("conj", *((id(sch), self.base_of(res)) for sch, res, _ in raws))
        hit = self.memo.get(mkey)
        if hit is not None:
            return hit
        self._keep.extend(sch for sch, _, _ in raws)  # keep ids stable
        sym = self._conj(raws, ptr)
        self.memo[mkey] = sym
        return sym

    def _conj(self, raws: list, ptr: str) -> str:
        parts: list[Part] = []
        for sch, res, where in raws:
            f = self.flatten(sch, res, where)
            if f is None:
                return self.nothing()
            parts.extend(f)
        self.depth += 1
        try:
            if self.depth > 4 * self.max_depth:
                self.approx("$ref", ptr, "merged recursion deeper than max_depth; any value")
                return self.any_value()
            return self.gen_parts(parts, ptr, None, True)  # merged subtrees: not one scope
        finally:
            self.depth -= 1

    def check_size(self, ptr: str) -> None:
        """Raise :class:`GrammarTooLarge` once the grammar passes its size bounds.

        Distribution can multiply a big schema's objects thousands of times (JSON Schema
        Store's cloudify reaches 393k rules and 3.0M automaton states after 170 s and 5.5 GB);
        the defaults sit above the largest grammar that compiles in JSONSchemaBench within a
        minute (minecraft-predicate: 226k rules, 1.07M automaton states, 22 s).
        """
        b = self.b
        over_rules = len(b.rules) > self.max_rules
        if over_rules or b.dfa_states > self.max_dfa_states:
            raise GrammarTooLarge(
                f"schema grammar too large at {ptr or '#'}: {len(b.rules)} rules, {b.dfa_states} automaton states "
                f"(limits {self.max_rules} / {self.max_dfa_states}; raise max_grammar_rules / max_grammar_states)",
                "max_grammar_rules" if over_rules else "max_grammar_states",
            )

    def gen_parts(self, parts: list[Part], ptr: str, budget: list[int] | None = None, dist: bool = False) -> str:
        """Symbol for the conjunction of ``parts`` (distributing unions)."""
        self.check_size(ptr)
        if budget is None:
            budget = [MAX_BRANCHES]
        self.depth += 1
        try:
            if self.depth > 8 * self.max_depth:
                self.approx("$ref", ptr, "nesting deeper than max_depth; any value")
                return self.any_value()
            return self._gen_parts(parts, ptr, budget, dist)
        finally:
            self.depth -= 1

    def _canon(self, schema: dict) -> str:
        """Canonical text of a schema object, cached by identity (the object is kept alive)."""
        cache = self.__dict__.setdefault("_canon_cache", {})
        hit = cache.get(id(schema))
        if hit is None:
            hit = cache[id(schema)] = (json.dumps(schema, sort_keys=True, default=repr), schema)
        return hit[0]

    def dedupe(self, parts: list[Part]) -> list[Part]:
        """Drop repeated conjuncts (A and A is A).

        Real schemas repeat themselves: a property whose schema also comes from a matching
        ``patternProperties`` entry carries the same ``anyOf`` twice, and distributing
        ``anyOf`` x ``anyOf`` through nested objects multiplies without end (WashingtonPost
        schemas took minutes).
        """
        if len(parts) < 2:
            return parts
        seen: set[tuple[str, str]] = set()
        out = []
        for p in parts:
            k = (self._canon(p.schema), self.base_of(p.res))
            if k not in seen:
                seen.add(k)
                out.append(p)
        return out

    def _gen_parts(self, parts: list[Part], ptr: str, budget: list[int], dist: bool) -> str:
        parts = self.dedupe(parts)
        for i, p in enumerate(parts):
            branches = self.split(p)
            if branches is None:
                continue
            others = parts[:i] + parts[i + 1 :]
            alts = []
            for br in branches:
                if br is None:
                    continue
                budget[0] -= 1
                self.branches_total += 1
                if budget[0] < 0 or self.branches_total > MAX_TOTAL_BRANCHES:
                    why = "in this union" if budget[0] < 0 else f"in the schema (over {MAX_TOTAL_BRANCHES})"
                    self.approx("anyOf", p.ptr, f"too many combinations of alternatives {why}; extra constraints dropped")
                    return self.gen_parts(others, ptr, [MAX_BRANCHES], True)
                alts.append((self.gen_parts(others + br, ptr, budget, True),))
            return self.b.rule(alts, "alt")
        return self.emit(parts, ptr, dist)

    def split(self, p: Part) -> list[list[Part] | None] | None:
        """If ``p`` holds a union-like applicator: remove it, return the branch part lists."""
        s = p.schema
        res, ptr = p.res, p.ptr

        def fl(sub: Any, where: str) -> list[Part] | None:
            return self.flatten(sub, res, f"{ptr}/{where}")

        def rest(*drop: str) -> Part:
            return Part({k: v for k, v in s.items() if k not in drop}, res, ptr)

        for kw in ("anyOf", "oneOf"):
            if kw in s:
                subs = s[kw]
                if not isinstance(subs, list) or not subs:
                    raise SchemaError(f"{kw} must be a non-empty array", ptr)
                r = rest(kw)
                if kw == "oneOf" and len(subs) > 1 and not self.disjoint(subs):
                    exact = self.one_of_exact(subs, r, res, ptr)
                    if exact is not None:
                        return exact
                    self.approx("oneOf", ptr, "oneOf compiled as anyOf (branches not provably disjoint)")
                return [([r] + b if b is not None else None) for b in (fl(x, f"{kw}/{j}") for j, x in enumerate(subs))]
        if "if" in s and ("then" in s or "else" in s):
            r = rest("if", "then", "else")
            cond = fl(s["if"], "if")
            then = fl(s.get("then", True), "then")
            neg = self.negate(s["if"], res, ptr + "/if")
            els = fl(s.get("else", True), "else")
            a = None if cond is None or then is None else [r] + cond + then
            if neg is None:
                self.approx("if", ptr, "the negation of 'if' is not expressible; else-branch not guarded")
                return [a, None if els is None else [r] + els]
            out = [a]
            for nb in neg:
                nbp = self.flatten(nb, res, ptr + "/if")
                if nbp is not None and els is not None:
                    out.append([r] + nbp + els)
            return out
        if "if" in s:
            return [[rest("if", "then", "else")]]
        if "not" in s:
            neg = self.negate(s["not"], res, ptr + "/not")
            r = rest("not")
            if neg is None:
                self.approx("not", ptr, "negation not expressible; 'not' ignored")
                return [[r]]
            return [([r] + b if b is not None else None) for b in (fl(x, "not") for x in neg)]
        deps = {}
        if "dependencies" in s and isinstance(s["dependencies"], dict):
            deps.update(s["dependencies"])
        for kw in ("dependentSchemas", "dependentRequired"):
            if isinstance(s.get(kw), dict):
                deps.update(s[kw])
        if deps:
            r = rest("dependencies", "dependentSchemas", "dependentRequired")
            k, dep = next(iter(deps.items()))
            remaining = {kk: vv for kk, vv in deps.items() if kk != k}
            if remaining:
                r = Part({**r.schema, "dependentSchemas": {kk: vv for kk, vv in remaining.items() if not isinstance(vv, list)},
                          "dependentRequired": {kk: vv for kk, vv in remaining.items() if isinstance(vv, list)}}, res, ptr)
            absent = [r, Part({"properties": {k: False}}, res, ptr)]
            if isinstance(dep, list):
                present = [r, Part({"required": [k, *dep]}, res, ptr)]
            else:
                sub = fl(dep, f"dependentSchemas/{k}")
                present = None if sub is None else [r, Part({"required": [k]}, res, ptr)] + sub
            return [absent, present]
        return None

    def one_of_exact(self, subs: list, r: Part, res: Any, ptr: str) -> list | None:
        """``oneOf`` as the union over i of ``sub_i and not sub_j (j != i)`` when every
        negation is expressible and the expansion stays small; else None."""
        import itertools

        negs = [self.negate(x, res, f"{ptr}/oneOf/{j}") for j, x in enumerate(subs)]
        if any(n is None for n in negs):
            return None
        total = sum(math.prod(len(negs[j]) for j in range(len(subs)) if j != i) for i in range(len(subs)))
        if total > 64:
            return None
        out: list = []
        for i, sub in enumerate(subs):
            base = self.flatten(sub, res, f"{ptr}/oneOf/{i}")
            if base is None:
                continue
            others = [negs[j] for j in range(len(subs)) if j != i]
            for combo in itertools.product(*others):
                parts = [r] + base
                ok = True
                for nb in combo:
                    f = self.flatten(nb, res, f"{ptr}/oneOf")
                    if f is None:
                        ok = False
                        break
                    parts = parts + f
                if ok:
                    out.append(parts)
        return out or [None]

    def disjoint(self, subs: list) -> bool:
        """Cheap proof that ``oneOf`` branches never overlap (distinct types or distinct consts)."""
        sigs = []
        for x in subs:
            if not isinstance(x, dict) or "$ref" in x:
                return False
            if "const" in x:
                sigs.append(("c", json.dumps(x["const"], sort_keys=True)))
            elif isinstance(x.get("type"), str) and set(x) <= {"type", "description", "title"}:
                sigs.append(("t", x["type"]))
            else:
                return False
        ts = [v for k, v in sigs if k == "t"]
        if "number" in ts and "integer" in ts:
            return False
        return len(set(sigs)) == len(sigs) and not (ts and any(k == "c" for k, _ in sigs))

    def is_later_keyword(self, k: str) -> bool:
        """``k`` belongs to a draft after this schema's: an unknown word here, so an annotation."""
        return k in _LATER_KEYWORDS and _DRAFT_ORDER[self.draft] < _DRAFT_ORDER[_LATER_KEYWORDS[k]]

    def negate(self, schema: Any, res: Any, ptr: str) -> list | None:
        """Branch schemas whose union is exactly the complement of ``schema``, or None.

        Memoised per (schema object, base): the branches are new schema objects, and merged
        subtrees are memoised by the identity of their schema objects (:meth:`conj`), so a
        negation rebuilt on every visit of a recursive schema defeated that memo and the
        distribution grew exponentially (an ``if`` inside ``$ref: "#"``).
        """
        if not isinstance(schema, dict):
            return self._negate(schema, res, ptr)
        key = ("neg", id(schema), self.base_of(res))
        hit = self.memo.get(key)
        if hit is None:
            self._keep.append(schema)  # keep the id stable
            # in progress: a schema whose negation needs its own negation (through $ref) has
            # no finite branch list, so the inner visit says "not expressible"
            self.memo[key] = (None,)
            hit = self.memo[key] = (self._negate(schema, res, ptr),)
        return hit[0]

    def _negate(self, schema: Any, res: Any, ptr: str) -> list | None:
        if schema is True:
            return [False]
        if schema is False:
            return [True]
        if not isinstance(schema, dict):
            return None
        ignorable = {"$comment", "description", "title", "default", "examples", "$schema", "$id"}
        # keywords no draft gives a meaning (javaType, markdownDescription, ...) are annotations
        # (and keywords of later drafts are annotations here too, as flatten treats them)
        keys = [k for k in schema if k not in ignorable and k in _SEMANTIC and not self.is_later_keyword(k)]
        if "$ref" in keys:
            got = self.resolve(schema["$ref"], self.enter(schema, res), ptr)
            if got is None or got[1] is not res and self.base_of(got[1]) != self.base_of(res):
                return None
            target = self.negate(got[0], res, ptr)
            if target is None or len(keys) == 1:
                return target
            # $ref beside other keywords (2019-09+, and what JSONSchemaBench's schemas mean):
            # both hold, so the negation is the union of the two negations
            rest = self.negate({k: v for k, v in schema.items() if k != "$ref"}, res, ptr)
            return None if rest is None else target + rest
        out: list = []
        for k in keys:
            v = schema[k]
            if k == "type":
                ts = {v} if isinstance(v, str) else set(v)
                if "integer" in ts and "number" not in ts:
                    out.append({"type": [t for t in TYPES if t not in ts and t != "number"]})
                    out.append({"type": "number", "__nonint": True})
                    continue
                rest_t = [t for t in TYPES if t not in ts]
                out.append({"type": rest_t} if rest_t else False)
            elif k == "const":
                out.append({"__not_values": [v]})
            elif k == "enum" and isinstance(v, list):
                out.append({"__not_values": list(v)})
            elif k == "required" and isinstance(v, list):
                # only objects: any other value satisfies 'required' (so fails its negation)
                out.extend({"type": "object", "properties": {name: False}} for name in v)
            elif k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum") and not isinstance(v, bool):
                flip = {"minimum": "exclusiveMaximum", "maximum": "exclusiveMinimum",
                        "exclusiveMinimum": "maximum", "exclusiveMaximum": "minimum"}[k]
                out.append({"type": "number", flip: v})
            elif k in ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties"):
                kind = {"L": "string", "I": "array", "P": "object"}[k[3] if k.startswith("max") else k[3]]
                other = ("max" if k.startswith("min") else "min") + k[3:]
                nv = v - 1 if k.startswith("min") else v + 1
                if nv >= 0:
                    out.append({"type": kind, other: nv})
            elif k == "properties" and isinstance(v, dict) and "patternProperties" not in schema:
                for name, sub in v.items():
                    ng = self.negate(sub, res, f"{ptr}/properties/{name}")
                    if ng is None:
                        return None
                    for branch in ng:
                        if branch is not False:
                            out.append({"type": "object", "required": [name], "properties": {name: branch}})
            elif k == "pattern" and isinstance(v, str):
                out.append({"type": "string", "__not_pattern": v})
            elif k == "not":
                out.append(v)  # not (not S) = S
            elif k == "uniqueItems" and v is False or k in ("then", "else") and "if" not in schema:
                continue  # no constraint
            elif k == "if" and "then" not in schema and "else" not in schema:
                continue
            elif k == "items" and isinstance(v, dict | bool) and "prefixItems" not in schema:
                # only arrays are constrained: some item fails.  '__contains' is 'contains' in
                # every draft (draft 4 has no 'contains': that word would be an annotation there)
                out.append({"type": "array", "__contains": {"not": v}} if v is not True else False)
            elif k == "contains" and "minContains" not in schema and "maxContains" not in schema:
                out.append({"type": "array", "items": {"not": v}})
            elif k == "allOf" and isinstance(v, list) and v:
                # not (A and B) = not A or not B ('not both cmd and args': allOf of requireds)
                for j, sub in enumerate(v):
                    ng = self.negate(sub, res, f"{ptr}/allOf/{j}")
                    if ng is None:
                        return None
                    out.extend(ng)
            elif k == "anyOf" and isinstance(v, list) and v:
                # not (A or B) = not A and not B: every choice of one branch per negation,
                # bounded (the product grows with each sub-schema's branch count)
                combos: list[list] = [[]]
                for j, sub in enumerate(v):
                    ng = self.negate(sub, res, f"{ptr}/anyOf/{j}")
                    if ng is None or len(combos) * len(ng) > MAX_NEGATION_BRANCHES:
                        return None
                    combos = [c + [b] for c in combos for b in ng if b is not False]
                out.extend({"allOf": c} if len(c) > 1 else c[0] for c in combos if c)
                if not combos:
                    out.append(False)
            else:
                return None
        # a type-specific keyword holds for every other type, so only its own type can fail it:
        # e.g. not {"minimum": 5} is the numbers below 5, not also every string
        return out or [False]

    # ---- merge + emit ------------------------------------------------------------------------
    def emit(self, parts: list[Part], ptr: str, dist: bool = False) -> str:
        b = self.b
        # unevaluatedProperties is exact when its schema object is the outermost part (the
        # last one flattened: its subtree is all the parts) and no union was distributed
        # (another valid branch could have evaluated more keys)
        n_uneval = sum("unevaluatedProperties" in p.schema for p in parts)
        uneval = None
        opaque = any(p.schema.get("__opaque") for p in parts)
        if n_uneval == 1 and not dist and not opaque and "unevaluatedProperties" in parts[-1].schema:
            last = parts[-1]
            uneval = (self.raw(last.schema["unevaluatedProperties"], last.res, last.ptr + "/unevaluatedProperties"),)
        if not any(k in _CONSTRAINING or (k.startswith("__") and k != "__opaque") for p in parts for k in p.schema) \
                and uneval is None:
            return self.any_value()
        for p in parts:
            for k in p.schema:
                if k in _UNSUPPORTED and not (k == "unevaluatedProperties" and uneval is not None):
                    self.approx(k, p.ptr, "keyword not supported; ignored")
        types = set(TYPES) | {"integer"}
        enum_lists: list[list] = []
        not_values: list = []
        for p in parts:
            s = p.schema
            if "type" in s:
                t = s["type"]
                ts = {t} if isinstance(t, str) else set(t)
                if not ts <= set(TYPES) | {"integer"}:
                    raise SchemaError(f"unknown type {t!r}", p.ptr)
                if "number" in ts:
                    ts.add("integer")
                if s.get("nullable") is True:  # OpenAPI
                    ts.add("null")
                types &= ts
            if "const" in s:
                enum_lists.append([s["const"]])
            if "enum" in s:
                if not isinstance(s["enum"], list):
                    raise SchemaError("enum must be an array", p.ptr)
                enum_lists.append(s["enum"])
            if "__not_values" in s:
                not_values.extend(s["__not_values"])
        if enum_lists:
            return self.emit_enum(parts, enum_lists, not_values, types, ptr)
        alts = []
        if "null" in types and not any(v is None for v in not_values):
            alts.append((b.literal("null"),))
        if "boolean" in types:
            for lit, val in (("true", True), ("false", False)):
                if not any(_jeq(v, val) for v in not_values):
                    alts.append((b.literal(lit),))
        if "number" in types or "integer" in types:
            sym = self.emit_number(parts, "number" not in types, not_values)
            if sym:
                alts.append((sym,))
        if "string" in types:
            sym = self.emit_string(parts, not_values)
            if sym:
                alts.append((sym,))
        if "array" in types:
            sym = self.emit_array(parts, ptr)
            if sym:
                alts.append((sym,))
        if "object" in types:
            sym = self.emit_object(parts, ptr, uneval)
            if sym:
                alts.append((sym,))
        if any(_json_type(v) in ("array", "object") for v in not_values):
            self.approx("not", ptr, "excluding array/object values is not expressed")
        return b.rule(alts, "v")

    # ---- enum / const ------------------------------------------------------------------------
    def emit_enum(self, parts, enum_lists, not_values, types, ptr) -> str:
        cands = []
        for v in enum_lists[0]:
            if all(any(_jeq(v, w) for w in lst) for lst in enum_lists[1:]) and not any(_jeq(v, w) for w in not_values):
                if not any(_jeq(v, c) for c in cands):
                    cands.append(v)
        keep = []
        for v in cands:
            jt = _json_type(v)
            if jt == "number":
                if "number" not in types and not ("integer" in types and _is_int(v)):
                    continue
            elif jt not in types:
                continue
            if self._validates(v, parts) is False:
                continue
            keep.append(v)
        return self.b.rule([(self.value_literal(v),) for v in keep], "enum")

    def _validates(self, v: Any, parts: list[Part]) -> bool | None:
        """Check ``v`` against the other keywords (None when unsure: keep the value).

        Scalar keywords are checked here; anything else goes to jsonschema (imported
        lazily: its import alone costs seconds).
        """
        simple = {"type", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                  "minLength", "maxLength", "pattern", "multipleOf", "nullable", "format", "description",
                  "title", "default", "examples", "$comment", "$schema", "$id", "$defs", "definitions"}
        if all(k in simple or k.startswith("__") for p in parts for k in p.schema):
            return self._quick_validate(v, parts)
        try:
            import jsonschema
        except ImportError:  # pragma: no cover
            return None
        cls = {"4": jsonschema.Draft4Validator, "6": jsonschema.Draft6Validator, "7": jsonschema.Draft7Validator,
               "2019-09": jsonschema.Draft201909Validator, "2020-12": jsonschema.Draft202012Validator}[self.draft]
        for p in parts:
            s = {k: x for k, x in p.schema.items() if not k.startswith("__")}
            try:
                ok = cls(s, registry=self.registry, _resolver=p.res).is_valid(v)
            except Exception:
                return None
            if not ok:
                return False
        return True

    def _quick_validate(self, v: Any, parts: list[Part]) -> bool | None:
        import re as _re

        for p in parts:
            s = p.schema
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                d = Decimal(repr(v)) if isinstance(v, float) else Decimal(v)
                for k, op in (("minimum", "ge"), ("maximum", "le"), ("exclusiveMinimum", "gt"), ("exclusiveMaximum", "lt")):
                    if k in s and not isinstance(s[k], bool) and isinstance(s[k], (int, float)):
                        b = _dec(s[k], p.ptr)
                        if (op == "ge" and d < b) or (op == "le" and d > b) or (op == "gt" and d <= b) or (op == "lt" and d >= b):
                            return False
                m = s.get("multipleOf")
                if isinstance(m, (int, float)) and not isinstance(m, bool) and m > 0:
                    q = d / _dec(m, p.ptr)
                    if q != q.to_integral_value():
                        return False
            if isinstance(v, str):
                if "minLength" in s and len(v) < s["minLength"]:
                    return False
                if "maxLength" in s and len(v) > s["maxLength"]:
                    return False
                if "pattern" in s:
                    try:
                        if _re.search(sx.ecma_to_python(s["pattern"]), v) is None:
                            return False
                    except Exception:
                        pass
        return True

    def value_literal(self, v: Any) -> str:
        """Symbol for exactly the JSON value ``v`` in every text form we accept."""
        b = self.b
        if v is None or isinstance(v, bool):
            return b.literal(json.dumps(v))
        if isinstance(v, (int, float)):
            return b.regex(_number_literal_regex(v))
        if isinstance(v, str):
            a, c = json.dumps(v), json.dumps(v, ensure_ascii=False)
            if a == c:
                return b.literal(a)
            return b.rule([(b.literal(a),), (b.literal(c),)], "str")
        if isinstance(v, list):
            if not v:
                return b.rule([(self.punct("["), self.punct("]"))], "arr")
            seq = [self.punct("[")]
            for i, x in enumerate(v):
                if i:
                    seq.append(self.punct(","))
                seq.append(self.value_literal(x))
            seq.append(self.punct("]"))
            return b.rule([tuple(seq)], "arr")
        if isinstance(v, dict):
            entries = [([self.key_literal(k)], self.value_literal(x), True) for k, x in v.items()]
            return self.object_from(entries, [], len(v), len(v), "any", "#")
        raise SchemaError(f"not a JSON value: {v!r}")

    def key_literal(self, k: str) -> str:
        b = self.b
        a, c = json.dumps(k), json.dumps(k, ensure_ascii=False)
        return b.literal(a) if a == c else b.rule([(b.literal(a),), (b.literal(c),)], "key")

    # ---- numbers -----------------------------------------------------------------------------
    def emit_number(self, parts: list[Part], integer: bool, not_values: list) -> str | None:
        lo: tuple[Decimal, bool] | None = None
        hi: tuple[Decimal, bool] | None = None
        mults: list[tuple[Any, str]] = []

        def tighten_lo(d: Decimal, excl: bool):
            nonlocal lo
            if lo is None or d > lo[0] or (d == lo[0] and excl):
                lo = (d, excl)

        def tighten_hi(d: Decimal, excl: bool):
            nonlocal hi
            if hi is None or d < hi[0] or (d == hi[0] and excl):
                hi = (d, excl)

        for p in parts:
            s = p.schema
            for k in ("minimum", "maximum"):
                if k in s:
                    d = _dec(s[k], p.ptr + "/" + k)
                    ex = s.get("exclusive" + k[:1].upper() + k[1:]) is True  # draft 4 boolean form
                    (tighten_lo if k == "minimum" else tighten_hi)(d, ex)
            for k in ("exclusiveMinimum", "exclusiveMaximum"):
                if k in s and not isinstance(s[k], bool):
                    d = _dec(s[k], p.ptr + "/" + k)
                    (tighten_lo if k == "exclusiveMinimum" else tighten_hi)(d, True)
            if "multipleOf" in s:
                m = s["multipleOf"]
                if isinstance(m, bool) or not isinstance(m, (int, float)) or m <= 0:
                    raise SchemaError("multipleOf must be a positive number", p.ptr)
                mults.append((m, p.ptr))
        b = self.b
        nonint = any(p.schema.get("__nonint") for p in parts)
        if nonint and (integer or any(_is_int(m) for m, _ in mults)):
            return None
        if lo is not None and hi is not None and (lo[0] > hi[0] or (lo[0] == hi[0] and (lo[1] or hi[1]))):
            return None
        big = Decimal(10) ** 30
        for bound, name in ((lo, "minimum"), (hi, "maximum")):
            if bound is not None and abs(bound[0]) > big:
                self.approx(name, parts[0].ptr, "bounds beyond 1e30 are not expressed")
        if lo is not None and abs(lo[0]) > big:
            lo = None
        if hi is not None and abs(hi[0]) > big:
            hi = None
        if integer or any(_is_int(m) for m, _ in mults):
            # only integers qualify (a number multipleOf an integer k is an integer)
            ilo = None if lo is None else (math.floor(lo[0]) + 1 if lo[1] else math.ceil(lo[0]))
            ihi = None if hi is None else (math.ceil(hi[0]) - 1 if hi[1] else math.floor(hi[0]))
            rx = nm.int_range(ilo, ihi)
            if rx is None:
                return None
            if not (integer and self.draft == "4"):  # draft 4 integers have no fraction part at all
                rx = rx + r"(?:\.0+)?"
            mod = 1
            for m, _mp in mults:
                k = nm.integer_modulus(m)
                mod = mod * k // math.gcd(mod, k)
            if not integer and (lo or hi or mod > 1):
                self.approx("multipleOf" if mod > 1 else "minimum", parts[0].ptr,
                            "numbers in exponent form are not checked")
            excl = [v for v in not_values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if mod == 1 and not excl:
                sym = b.regex(rx)
            else:
                try:
                    dfa = regex_to_dfa(rx)
                    if mod > 1:
                        if mod > nm.MAX_MODULUS:
                            raise ConstraintTooLarge("modulus too large", "modulus")
                        dfa = dfa.intersect(nm.residue_dfa(mod))
                    if excl:
                        dfa = sx.difference(dfa, _union_regex([_number_literal_regex(v) for v in excl]))
                    sym = b.dfa(dfa, "int")
                except ConstrainError:
                    self.approx("multipleOf", parts[0].ptr, "multipleOf/exclusions not expressed (automaton too large)")
                    sym = b.regex(rx)
            if not integer and (lo is None and hi is None) and mod > 1:
                # exponent forms of integer multiples are accepted unchecked
                return b.rule([(sym,), (b.regex(nm.EXP_NUMBER),)], "num")
            if not integer:
                return b.rule([(sym,), (b.regex(nm.EXP_NUMBER),)], "num")
            return sym
        # non-integer numbers
        rxs = nm.decimal_range(lo[0] if lo else None, bool(lo and lo[1]), hi[0] if hi else None, bool(hi and hi[1]))
        plain = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?"
        for m, mp in mults:
            f = Decimal(repr(m)) if isinstance(m, float) else Decimal(m)
            expo = f.normalize().as_tuple()
            if expo.digits == (1,) and expo.exponent < 0:
                d = -expo.exponent
                plain = rf"-?(?:0|[1-9][0-9]*)(?:\.[0-9]{{1,{d}}}0*)?"
            else:
                self.approx("multipleOf", mp, f"multipleOf {m} on non-integers is not expressed")
        excl = [v for v in not_values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if nonint:  # numbers that are not integers: a nonzero fraction digit
            plain = plain.replace(r"(?:\.[0-9]+)?", r"\.[0-9]*[1-9][0-9]*") if plain.endswith(r"(?:\.[0-9]+)?") else plain
            if not plain.endswith("[1-9][0-9]*"):
                plain = r"-?(?:0|[1-9][0-9]*)\.[0-9]*[1-9][0-9]*"
                self.approx("not", parts[0].ptr, "non-integer numbers with multipleOf: multipleOf dropped")
            rxs = rxs or []
            self.approx("not", parts[0].ptr, "non-integer numbers in exponent form are accepted unchecked")
        if lo is not None or hi is not None:
            self.approx("minimum" if lo else "maximum", parts[0].ptr, "numbers in exponent form are not range-checked")
        if not rxs and not excl and not nonint and plain.endswith("(?:\\.[0-9]+)?"):
            return b.regex(nm.ANY_NUMBER)
        try:
            dfa = regex_to_dfa(plain)
            for r in rxs:
                dfa = dfa.intersect(regex_to_dfa(r))
            if excl:
                dfa = sx.difference(dfa, _union_regex([_number_literal_regex(v) for v in excl]))
            main = b.dfa(dfa, "num") if not dfa.is_empty() else None
        except ConstrainError:
            self.approx("minimum", parts[0].ptr, "numeric bounds not expressed (automaton too large)")
            main = b.regex(nm.ANY_NUMBER)
        alts = [(b.regex(nm.EXP_NUMBER),)]
        if main is not None:
            alts.insert(0, (main,))
        return b.rule(alts, "num")

    # ---- strings -----------------------------------------------------------------------------
    def emit_string(self, parts: list[Part], not_values: list) -> str | None:
        min_len, max_len = 0, None
        patterns: list[tuple[str, str]] = []  # (pattern, pointer)
        negs: list[tuple[str, str]] = []
        formats: list[tuple[str, str]] = []
        for p in parts:
            s = p.schema
            if "minLength" in s:
                min_len = max(min_len, int(s["minLength"]))
            if "maxLength" in s:
                max_len = int(s["maxLength"]) if max_len is None else min(max_len, int(s["maxLength"]))
            if "pattern" in s:
                patterns.append((s["pattern"], p.ptr))
            if "__not_pattern" in s:
                negs.append((s["__not_pattern"], p.ptr))
            if "format" in s and self.assert_format:
                formats.append((s["format"], p.ptr))
        excl = tuple(sorted({v for v in not_values if isinstance(v, str)}))
        if max_len is not None and max_len < min_len:
            return None
        # the same string constraints recur across a schema (every item of every list with one
        # pattern): build their automaton once, and replay its approximation notes in place
        key = (tuple(x for x, _ in patterns), tuple(x for x, _ in negs), tuple(x for x, _ in formats),
               min_len, max_len, excl)
        memo = self.__dict__.setdefault("_string_memo", {})
        hit = memo.get(key)
        if hit is None:
            notes: list[tuple[str, int, str]] = []  # (keyword, index of the pointer, why)
            hit = memo[key] = (self._string_value(patterns, negs, formats, min_len, max_len, excl, notes), notes)
        sym, notes = hit
        ptrs = [ptr for _, ptr in patterns + negs + formats] + [parts[0].ptr]
        for kw, i, why in notes:  # strict mode raises at the first
            self.approx(kw, ptrs[i], why)
        return sym

    def _string_value(self, patterns, negs, formats, min_len, max_len, excl, notes) -> str | None:
        """The string's grammar symbol; every over-approximation is appended to ``notes`` as
        (keyword, index into patterns+negs+formats (len = the schema itself), why)."""
        b = self.b
        last = len(patterns) + len(negs) + len(formats)
        dfas: list[ByteDFA] = []
        neg: list[ByteDFA] = []
        for i, (pat, _) in enumerate(patterns):
            try:
                dfas.append(sx.pattern_dfa(pat, max_states=self.MAX_STRING_STATES * 4))
            except (RegexError, ConstraintTooLarge) as e:
                notes.append(("pattern", i, f"pattern not expressed ({e})"))
        for j, (pat, _) in enumerate(negs):
            try:
                neg.append(sx.pattern_dfa(pat))
            except (RegexError, ConstraintTooLarge) as e:
                notes.append(("not", len(patterns) + j, f"negated pattern not expressed ({e})"))
        for k, (fmt, _) in enumerate(formats):
            i = len(patterns) + len(negs) + k
            try:
                f = sx.format_dfa(fmt)
            except ConstrainError as e:
                f = None
                notes.append(("format", i, f"format {fmt!r} not expressed ({e})"))
            if f is not None:
                dfas.append(f)
                if fmt not in sx.EXACT_FORMATS:
                    notes.append(("format", i, f"format {fmt!r} is checked by a looser regex"))
            elif fmt not in sx.FORMAT_REGEX:
                notes.append(("format", i, f"unknown format {fmt!r}: any string"))
        if not dfas and not neg and not excl:
            if min_len == 0 and max_len is None:
                return b.regex(sx.ANY_JSON_STRING)
            return self._length_only(min_len, max_len, notes, last)
        try:
            value = None
            cap = self.MAX_STRING_STATES * 8
            for d in dfas:
                value = d if value is None else value.intersect(d, max_states=cap)
            if min_len or max_len is not None:
                try:
                    ld = sx.length_dfa(min_len, max_len)
                except ConstraintTooLarge as e:
                    notes.append(("maxLength", last, f"length bound not expressed ({e})"))
                    ld = None
                    if max_len is not None and min_len <= sx.MAX_EXACT_LENGTH:
                        ld = sx.length_dfa(min_len, None)  # keep the lower bound at least
                if ld is not None:
                    try:
                        with_len = ld if value is None else value.intersect(ld, max_states=cap)
                        if value is not None and with_len.n_states > self.MAX_STRING_STATES:
                            raise ConstraintTooLarge(f"{with_len.n_states} states", "maxLength")
                        value = with_len
                    except ConstraintTooLarge as e:  # keep the pattern or format, drop the length
                        notes.append(("maxLength", last, f"length bound not intersected with the pattern ({e})"))
            if value is None:
                value = regex_to_dfa(r"[\s\S]*")
            for d in neg:
                value = sx.difference(value, d)
            if excl:
                value = sx.difference(value, sx.literal_value_dfa(list(excl)))
            if value.is_empty():
                return None
            if value.n_states > self.MAX_STRING_STATES:
                # the JSON-escaping transduction and the lexer grow with every state: a counted
                # '(?:\\S+\\s+){0,99}' (2,700 states) took seconds per property
                raise ConstraintTooLarge(
                    f"string automaton has {value.n_states} states (limit {self.MAX_STRING_STATES})", "pattern"
                )
            return b.dfa(sx.json_string_dfa(value), "str")
        except ConstraintTooLarge as e:
            notes.append(("pattern", last, f"string constraints too large to build ({e}); length bounds only"))
            return self._length_only(min_len, max_len, notes, last)

    def _length_only(self, min_len: int, max_len: int | None, notes: list, last: int) -> str:
        """JSON strings of ``min_len..max_len`` code points; a bound too large to build drops
        itself only (minLength 8 with maxLength 2048 keeps the 8)."""
        try:
            return self.dfa_term(sx.json_length_string_dfa(min_len, max_len), "str")
        except ConstraintTooLarge as e:
            notes.append(("maxLength", last, f"length bound not expressed ({e})"))
            try:
                return self.dfa_term(sx.json_length_string_dfa(min_len, None), "str")
            except ConstraintTooLarge:
                return self.b.regex(sx.ANY_JSON_STRING)

    def key_dfa(self, value: ByteDFA) -> str:
        return self.dfa_term(sx.json_string_dfa(value), "key")

    def dfa_term(self, dfa: ByteDFA, hint: str) -> str:
        """One terminal per automaton object (cached automata are shared, not duplicated)."""
        cache = self.__dict__.setdefault("_dfa_terms", {})
        hit = cache.get(id(dfa))
        if hit is None:
            hit = cache[id(dfa)] = (self.b.dfa(dfa, hint), dfa)
        return hit[0]

    # ---- arrays ------------------------------------------------------------------------------
    def emit_array(self, parts: list[Part], ptr: str) -> str | None:
        prefix: list[list[Part]] = []  # per position: conjunct parts
        rest: list[Part] = []
        rest_false = False
        min_i, max_i = 0, None
        contains: list[tuple[list[Part], int, int | None, str]] = []
        unique = False
        legacy = self.draft in ("4", "6", "7", "2019-09")
        for p in parts:
            s = p.schema
            res = p.res
            pitems = s.get("prefixItems") if not legacy else (s.get("items") if isinstance(s.get("items"), list) else None)
            tail = s.get("items") if not legacy or not isinstance(s.get("items"), list) else s.get("additionalItems", True)
            if legacy and not isinstance(s.get("items"), list):
                tail = s.get("items", True)
            if pitems is not None:
                pname = "items" if legacy else "prefixItems"
                for j, sub in enumerate(pitems):
                    while len(prefix) <= j:
                        prefix.append(list(rest) if not rest_false else None)
                    f = self.raw(sub, res, f"{p.ptr}/{pname}/{j}")
                    if f is None or prefix[j] is None:
                        prefix[j] = None
                    else:
                        prefix[j] = prefix[j] + f
                n_pre = len(pitems)
            else:
                n_pre = 0
            if tail is not None and tail is not True:
                tname = "additionalItems" if legacy and pitems is not None else "items"
                f = self.raw(tail, res, f"{p.ptr}/{tname}")
                # applies to positions >= n_pre of this part
                for j in range(n_pre, len(prefix)):
                    if f is None or prefix[j] is None:
                        prefix[j] = None
                    else:
                        prefix[j] = prefix[j] + f
                if f is None:
                    if n_pre == 0:
                        rest_false = True
                    else:
                        max_i = n_pre if max_i is None else min(max_i, n_pre)
                else:
                    if n_pre > len(prefix):
                        pass
                    rest = rest + f
                    if n_pre > 0:
                        # positions beyond this part's prefix but inside others' prefixes were handled;
                        # the tail applies to positions >= n_pre only, fine since rest is used after all prefixes
                        pass
            if "minItems" in s:
                min_i = max(min_i, int(s["minItems"]))
            if "maxItems" in s:
                max_i = int(s["maxItems"]) if max_i is None else min(max_i, int(s["maxItems"]))
            for ck in ("contains", "__contains"):  # (the second: a negated 'items', any draft)
                if ck not in s:
                    continue
                later = self.draft in ("2019-09", "2020-12") and ck == "contains"
                mc = int(s.get("minContains", 1)) if later else 1
                xc = s.get("maxContains") if later else None
                f = self.raw(s[ck], res, p.ptr + "/contains")
                if f is None:
                    if mc > 0:
                        return None
                else:
                    contains.append((f, mc, xc, p.ptr, s[ck], res))
            if s.get("uniqueItems") is True:
                unique = True
        if rest_false:
            max_i = len(prefix) if max_i is None else min(max_i, len(prefix))
        if max_i is not None and max_i < min_i:
            return None
        if unique and not prefix and not contains and not rest_false:
            domain = self.finite_domain(rest)
            if domain is not None and len(domain) <= MAX_UNIQUE_DOMAIN:
                return self.unique_array(domain, min_i, max_i)
        if unique:
            self.approx("uniqueItems", ptr, "uniqueness of items is not enforced")
        if len(contains) > 1:
            self.approx("contains", ptr, "only the first 'contains' is enforced")
        con = contains[0] if contains else None
        max_c = None
        negs: list | None = None
        if con is not None and con[2] is not None:
            negs = self.negate(con[4], con[5], con[3] + "/contains")
            if negs is None or int(con[2]) > 16:
                self.approx("maxContains", con[3], "maxContains is not enforced")
                negs = None
            else:
                max_c = int(con[2])
        min_c = con[1] if con else 0
        if max_c is not None and max_c < min_c:
            return None
        # bound counters
        cap_needed = max(len(prefix), min_i, (max_i + 1) if max_i is not None else 0)
        if cap_needed > MAX_COUNT:
            if max_i is not None and max_i > MAX_COUNT:
                self.approx("maxItems", ptr, f"maxItems above {MAX_COUNT} is not enforced")
                max_i = None
            if min_i > MAX_COUNT:
                self.approx("minItems", ptr, f"minItems above {MAX_COUNT} is not enforced")
                min_i = MAX_COUNT
            if len(prefix) > MAX_COUNT:
                raise UnsupportedSchemaError("too many prefixItems", "prefixItems", ptr)
        if min_c > 16:
            self.approx("minContains", ptr, "minContains above 16 counted as 16")
            min_c = 16
        b = self.b
        n_pre = len(prefix)
        syms: dict[int, str | None] = {}
        csyms: dict[int, str | None] = {}

        def item(j: int) -> str | None:
            key = min(j, n_pre)
            if key not in syms:
                ps = prefix[j] if j < n_pre else rest
                syms[key] = None if ps is None else self.conj(ps, ptr + f"/items/{j}")
            return syms[key]

        def citem(j: int) -> str | None:
            key = min(j, n_pre)
            if key not in csyms:
                ps = prefix[j] if j < n_pre else rest
                csyms[key] = None if ps is None else self.conj(ps + con[0], ptr + "/contains")
            return csyms[key]

        top = max(n_pre, min_i, (max_i + 1) if max_i is not None else 0, 1)
        rules: dict[tuple[int, int], str] = {}
        comma = self.punct(",")

        nsyms: dict[tuple[int, int], str | None] = {}

        def nitem(j: int, bi: int) -> str | None:
            """Item j that does NOT match contains (negation branch bi): exact maxContains."""
            key = (min(j, n_pre), bi)
            if key not in nsyms:
                ps = prefix[j] if j < n_pre else rest
                nb = negs[bi]
                if ps is None or nb is False:
                    nsyms[key] = None
                else:
                    extra = [] if nb is True else [(nb, con[5], con[3] + "/contains")]
                    nsyms[key] = self.conj(ps + extra, ptr + "/contains")
            return nsyms[key]

        k_cap = min_c if max_c is None else max_c

        def state(c: int, k: int) -> str:
            c = min(c, top)
            k = min(k, k_cap)
            key = (c, k)
            if key in rules:
                return rules[key]
            name = b.rule(None, "arr")
            rules[key] = name
            alts: list[tuple[str, ...]] = []
            if c >= min_i and k >= min_c:
                alts.append(())
            if max_i is None or c < max_i:
                sep = (comma,) if c > 0 else ()
                if max_c is None:
                    it = item(c)
                    if it is not None:
                        alts.append(sep + (it, state(c + 1, k)))
                else:
                    for bi in range(len(negs)):
                        it = nitem(c, bi)
                        if it is not None:
                            alts.append(sep + (it, state(c + 1, k)))
                if con is not None and (k < min_c or (max_c is not None and k < max_c)):
                    ci = citem(c)
                    if ci is not None:
                        alts.append(sep + (ci, state(c + 1, k + 1)))
            b.set_rule(name, alts)
            return name

        body = state(0, 0)
        return b.rule([(self.punct("["), body, self.punct("]"))], "array")

    def finite_domain(self, raws: list) -> list | None:
        """The finite list of values of a conjunction of raw schemas, if it is one (scalars only)."""
        parts: list[Part] = []
        for sch, res, where in raws:
            f = self.flatten(sch, res, where)
            if f is None:
                return []
            parts.extend(f)
        union_like = ("anyOf", "oneOf", "if", "not", "dependentSchemas", "dependentRequired", "dependencies")
        if any(k in p.schema for p in parts for k in union_like):
            return None
        types = set(TYPES) | {"integer"}
        lists = []
        for p in parts:
            t = p.schema.get("type")
            if t is not None:
                types &= {t} if isinstance(t, str) else set(t)
            if "const" in p.schema:
                lists.append([p.schema["const"]])
            if isinstance(p.schema.get("enum"), list):
                lists.append(p.schema["enum"])
        if lists:
            cands = [v for v in lists[0] if all(any(_jeq(v, w) for w in lst) for lst in lists[1:])]
        elif types <= {"null", "boolean"}:
            cands = ([None] if "null" in types else []) + ([True, False] if "boolean" in types else [])
        else:
            return None
        out: list = []
        for v in cands:
            jt = _json_type(v)
            if jt in ("array", "object"):
                return None  # equality of containers is not modelled here
            if jt == "number" and "number" not in types and not ("integer" in types and _is_int(v)):
                continue
            if jt != "number" and jt not in types:
                continue
            if self._validates(v, parts) is False or any(_jeq(v, o) for o in out):
                continue
            out.append(v)
        return out

    def unique_array(self, domain: list, min_i: int, max_i: int | None) -> str | None:
        """Arrays of distinct values from a small finite domain: states are the used subsets."""
        if min_i > len(domain):
            return None
        b = self.b
        lits = [self.value_literal(v) for v in domain]
        comma = self.punct(",")
        rules: dict[int, str] = {}

        def state(used: int) -> str:
            if used in rules:
                return rules[used]
            name = b.rule(None, "uniq")
            rules[used] = name
            count = bin(used).count("1")
            alts: list[tuple[str, ...]] = []
            if count >= min_i:
                alts.append(())
            if max_i is None or count < max_i:
                sep = (comma,) if used else ()
                for i, lit in enumerate(lits):
                    if not used >> i & 1:
                        alts.append(sep + (lit, state(used | 1 << i)))
            b.set_rule(name, alts)
            return name

        return b.rule([(self.punct("["), state(0), self.punct("]"))], "array")

    # ---- objects -----------------------------------------------------------------------------
    def emit_object(self, parts: list[Part], ptr: str, uneval: tuple | None = None) -> str | None:
        b = self.b
        listed: dict[str, list[Part] | None] = {}
        required: list[str] = []
        min_p, max_p = 0, None
        names: list[ByteDFA] = []
        names_false = False
        patterns: list[tuple[str, Any, Any, str]] = []  # (pattern, schema, res, ptr)
        add_parts: list[Part] = []
        add_false = False
        for p in parts:
            s = p.schema
            for k in s.get("properties", {}) or {}:
                listed.setdefault(k, [])
            for k in s.get("required", []) or []:
                if k not in required:
                    required.append(k)
            if "minProperties" in s:
                min_p = max(min_p, int(s["minProperties"]))
            if "maxProperties" in s:
                max_p = int(s["maxProperties"]) if max_p is None else min(max_p, int(s["maxProperties"]))
            for pat, sub in (s.get("patternProperties") or {}).items():
                patterns.append((pat, sub, p.res, f"{p.ptr}/patternProperties/{pat}"))
            if "propertyNames" in s:
                pn = s["propertyNames"]
                d = self.name_dfa(pn, p.res, p.ptr + "/propertyNames")
                if d is False:
                    names_false = True
                elif d is not None:
                    names.append(d)
        for k in required:
            listed.setdefault(k, [])
        # value parts per listed key: each part contributes properties[k], else matching
        # patternProperties, else its additionalProperties
        import re as _re

        for k in list(listed):
            acc: list[Part] | None = []
            for p in parts:
                s = p.schema
                props = s.get("properties") or {}
                contributions = []
                matched = False
                if k in props:
                    contributions.append((props[k], f"{p.ptr}/properties/{k}"))
                    matched = True
                for pat, sub in (s.get("patternProperties") or {}).items():
                    try:
                        hit = _re.search(sx.ecma_to_python(pat), k) is not None
                    except Exception:
                        hit = False  # unknown: dropping a conjunct over-approximates
                    if hit:
                        contributions.append((sub, f"{p.ptr}/patternProperties/{pat}"))
                        matched = True
                if not matched and "additionalProperties" in s:
                    contributions.append((s["additionalProperties"], f"{p.ptr}/additionalProperties"))
                for sub, where in contributions:
                    f = self.raw(sub, p.res, where)
                    if f is None:
                        acc = None
                        break
                    acc = acc + f
                if acc is None:
                    break
            listed[k] = acc
        # property names that fail propertyNames are impossible
        if names_false:
            if required or min_p > 0:
                return None
            return b.rule([(self.punct("{"), self.punct("}"))], "obj")
        for k in list(listed):
            kb = k.encode("utf-8", "surrogatepass")
            if any(not d.accepts(kb) for d in names):
                listed[k] = None
        if any(listed[k] is None for k in required):
            return None
        # extra keys: additional (all parts agree on 'not listed, not pattern') and pattern regions
        for p in parts:
            s = p.schema
            if "additionalProperties" in s:
                f = self.raw(s["additionalProperties"], p.res, p.ptr + "/additionalProperties")
                if f is None:
                    add_false = True
                else:
                    add_parts.extend(f)
        if uneval is not None and not any("additionalProperties" in p.schema for p in parts):
            # keys outside every part's properties/patterns are exactly the unevaluated ones
            if uneval[0] is None:
                add_false = True
            else:
                add_parts.extend(uneval[0])
        extras: list[tuple[str, str]] = []
        listed_keys = [k for k in listed]
        try:
            base_names = None
            for d in names:
                base_names = d if base_names is None else base_names.intersect(d)
            pat_dfas = []
            pat_dfas_all = []
            for pat, _sub, _res, _pptr in patterns:
                try:
                    pat_dfas_all.append(sx.pattern_dfa(pat))
                except (RegexError, ConstraintTooLarge):
                    pat_dfas_all.append(None)
            for pat, sub, res, pptr in patterns:
                try:
                    pd = sx.pattern_dfa(pat)
                except (RegexError, ConstraintTooLarge) as e:
                    self.approx("patternProperties", pptr, f"pattern not expressed ({e}); matches any key")
                    pd = None
                pat_dfas.append(pd)
                fsub = self.raw(sub, res, pptr)
                if fsub is None:
                    continue
                kd = pd if pd is not None else regex_to_dfa(r"[\s\S]*")
                if base_names is not None:
                    kd = kd.intersect(base_names)
                if listed_keys:
                    kd = sx.difference(kd, sx.literal_value_dfa(listed_keys))
                if not kd.is_empty():
                    overlap = pd is None or any(
                        q is not None and q is not pd and not pd.intersect(q).is_empty() for q in pat_dfas_all)
                    if len(patterns) > 1 and overlap:
                        self.approx("patternProperties", pptr, "keys matching several patterns are checked by one")
                    extras.append((self.key_dfa(kd), self.conj(fsub, pptr)))
            if not add_false:
                if base_names is None and not any(pd is not None for pd in pat_dfas):
                    # any key but the listed ones: exclude their JSON texts (both ensure_ascii
                    # spellings) at the text level -- linear in the keys, no transduction
                    texts = sorted({t for k in listed_keys for t in (json.dumps(k), json.dumps(k, ensure_ascii=False))})
                    if texts:
                        ksym = self.dfa_term(sx.minus_literals(sx.any_string_text_dfa(), texts), "key")
                    else:
                        ksym = b.regex(sx.ANY_JSON_STRING)
                    extras.append((ksym, self.conj(add_parts, ptr + "/additionalProperties")))
                else:
                    kd = regex_to_dfa(r"[\s\S]*") if base_names is None else base_names
                    for pd in pat_dfas:
                        if pd is not None:
                            kd = sx.difference(kd, pd)
                    if listed_keys:
                        kd = sx.difference(kd, sx.literal_value_dfa(listed_keys))
                    if not kd.is_empty():
                        extras.append((self.key_dfa(kd), self.conj(add_parts, ptr + "/additionalProperties")))
        except ConstraintTooLarge as e:
            self.approx("additionalProperties", ptr, f"key languages too large ({e}); any key with any value")
            extras = [(b.regex(sx.ANY_JSON_STRING), self.any_value())]
        entries = []
        for k, ps in listed.items():
            if ps is None:
                continue
            entries.append(([self.key_literal(k)], self.conj(ps, f"{ptr}/properties/{k}"), k in required))
        return self.object_from(entries, extras, min_p, max_p, self.order, ptr)

    def name_dfa(self, schema: Any, res: Any, ptr: str) -> ByteDFA | bool | None:
        """Value DFA of allowed property names (None = any, False = none)."""
        if schema is True:
            return None
        if schema is False:
            return False
        parts = self.flatten(schema, res, ptr)
        if parts is None:
            return False
        dfa = None
        for p in parts:
            s = p.schema
            handled = {"pattern", "minLength", "maxLength", "type", "enum", "const", "format", "$comment",
                       "description", "title"}
            for k in s:
                if k not in handled and not k.startswith("$"):
                    self.approx("propertyNames", ptr, f"keyword {k!r} in propertyNames is not enforced")
            d = None
            if "pattern" in s:
                try:
                    d = sx.pattern_dfa(s["pattern"])
                except (RegexError, ConstraintTooLarge) as e:
                    self.approx("propertyNames", ptr, f"pattern not expressed ({e})")
            if "minLength" in s or "maxLength" in s:
                try:
                    ld = sx.length_dfa(int(s.get("minLength", 0)), s.get("maxLength"))
                    d = ld if d is None else d.intersect(ld)
                except ConstraintTooLarge:
                    self.approx("propertyNames", ptr, "length bound not expressed")
            vals = None
            if "enum" in s:
                vals = [v for v in s["enum"] if isinstance(v, str)]
            if "const" in s:
                vals = [s["const"]] if isinstance(s["const"], str) else []
            if vals is not None:
                ld = sx.literal_value_dfa(vals)
                d = ld if d is None else d.intersect(ld)
            t = s.get("type")
            if t is not None and "string" not in ({t} if isinstance(t, str) else set(t)):
                return False
            if d is not None:
                dfa = d if dfa is None else dfa.intersect(d)
        return dfa

    def object_from(self, entries, extras, min_p, max_p, order, ptr) -> str | None:
        """Object rule from listed entries ``(key_syms, value_sym, required)`` and extra ``(key, value)``."""
        b = self.b
        if max_p is not None and max_p < min_p:
            return None
        n = len(entries)
        req = [i for i, e in enumerate(entries) if e[2]]
        if max_p is not None and len(req) > max_p:
            return None
        if (max_p is not None and max_p > MAX_COUNT) or min_p > MAX_COUNT:
            self.approx("maxProperties", ptr, f"property counts above {MAX_COUNT} are not enforced")
            if max_p is not None and max_p > MAX_COUNT:
                max_p = None
            min_p = min(min_p, MAX_COUNT)
        count_needed = min_p > len(req) or max_p is not None
        top = max(min_p, (max_p + 1) if max_p is not None else 0) if count_needed else 0
        comma, colon = self.punct(","), self.punct(":")
        kvs = []
        for keys, v, _ in entries:
            kvs.append(b.rule([(k, colon, v) for k in keys], "kv"))
        ekvs = [b.rule([(k, colon, v)], "ekv") for k, v in extras]
        rules: dict[tuple, str] = {}
        track_all = order == "any" and n <= MAX_SUBSET_KEYS
        track_req = order == "any" and not track_all and len(req) <= MAX_REQUIRED_TRACKED
        # too many required keys for a subset state: count them instead (linear, not 2^R
        # states).  Exact for texts without repeated keys (every parsed instance); a text that
        # repeats a required key could omit another, so it stays a (much tighter) approximation
        count_req = order == "any" and not track_all and not track_req and (len(req) + 1) * (top + 1) <= 20000
        if count_req:
            self.approx(
                "required",
                ptr,
                f"more than {MAX_REQUIRED_TRACKED} required keys in any order: counted, not tracked "
                "(a text repeating a required key may omit another)",
            )
        elif order == "any" and not track_all and not track_req:
            self.approx("required", ptr, f"more than {MAX_REQUIRED_TRACKED} required keys in any order: not enforced")
        if order == "any" and not track_all:
            self.warnings.append(f"{ptr or '#'}: properties: optional keys may repeat (any-order object with {n} keys)")

        def st(pos, c: int, started: bool) -> str:
            c = min(c, top)
            key = (pos, c, started)
            if key in rules:
                return rules[key]
            name = b.rule(None, "obj")
            rules[key] = name
            alts: list[tuple[str, ...]] = []
            sep = (comma,) if started else ()
            can_add = max_p is None or c < max_p
            if order == "schema":
                i = pos
                if i < n:
                    if can_add:
                        alts.append(sep + (kvs[i], st(i + 1, c + 1, True)))
                    if not entries[i][2]:
                        alts.append((st(i + 1, c, started),))
                else:
                    if c >= min_p or not count_needed:
                        alts.append(())
                    if can_add:
                        for e in ekvs:
                            alts.append(sep + (e, st(n, c + 1, True)))
            else:
                seen = pos
                if count_req:
                    done = seen >= len(req)
                else:
                    done = all(seen >> i & 1 for i in (req if track_all or track_req else []))
                if done and (c >= min_p or not count_needed):
                    alts.append(())
                if can_add:
                    for i in range(n):
                        if track_all:
                            if not seen >> i & 1:
                                alts.append(sep + (kvs[i], st(seen | 1 << i, c + 1, True)))
                        elif track_req and entries[i][2]:
                            if not seen >> i & 1:
                                alts.append(sep + (kvs[i], st(seen | 1 << i, c + 1, True)))
                        elif count_req and entries[i][2]:
                            alts.append(sep + (kvs[i], st(min(seen + 1, len(req)), c + 1, True)))
                        else:
                            alts.append(sep + (kvs[i], st(seen, c + 1, True)))
                    for e in ekvs:
                        alts.append(sep + (e, st(seen, c + 1, True)))
            b.set_rule(name, alts)
            return name

        if (order == "schema" and n * (top + 1) > 20000) or (track_all and (1 << n) * (top + 1) > 20000):
            self.approx("minProperties", ptr, "property counting too large; counts not enforced")
            top = 0
            min_p, max_p = 0, None
        body = st(0, 0, False)
        return b.rule([(self.punct("{"), body, self.punct("}"))], "object")


def _number_literal_regex(v: Any) -> str:
    """All plain JSON texts of the number ``v`` (1 == 1.0 == 1.00), plus repr forms."""
    d = Decimal(repr(v)) if isinstance(v, float) else Decimal(v)
    alts = set()
    if d == d.to_integral_value():
        i = int(d)
        alts.add(("-0" if i == 0 else str(i)).replace("--", "-") + r"(?:\.0+)?")
        if i == 0:
            alts.add(r"0(?:\.0+)?")
    else:
        ip, fd = nm._split(d)
        sign = "-" if d < 0 else ""
        alts.add(f"{sign}{ip}\\.{fd}0*")
    for t in {json.dumps(v), json.dumps(float(v)) if abs(v) < 1e300 else json.dumps(v)}:
        alts.add(_re_escape(t))
    return "(?:" + "|".join(sorted(alts)) + ")"


def _re_escape(t: str) -> str:
    return "".join("\\" + c if c in ".+-()[]{}*?|^$\\" else c for c in t)


def _union_regex(rxs: list[str]) -> ByteDFA:
    return regex_to_dfa("(?:" + "|".join(rxs) + ")")


def _no_validation_vocabulary(raw: Any, retrieve: Callable[[str], Any] | None) -> bool:
    """A custom metaschema whose ``$vocabulary`` lacks validation: assertions do not apply."""
    if not isinstance(raw, dict) or not isinstance(raw.get("$schema"), str) or retrieve is None:
        return False
    uri = raw["$schema"]
    if any(k in uri for k in _DIALECT_TO_DRAFT):
        return False
    try:
        meta = retrieve(uri)
    except Exception:
        return False
    vocab = meta.get("$vocabulary") if isinstance(meta, dict) else None
    return isinstance(vocab, dict) and not any("vocab/validation" in k for k in vocab)


def json_schema(
    schema: Any,
    *,
    strict: bool = False,
    whitespace: str = "flexible",
    max_whitespace: int = 24,
    property_order: str = "any",
    max_depth: int = 32,
    draft: str | int | None = None,
    assert_format: bool = True,
    retrieve: Callable[[str], Any] | None = None,
    max_grammar_rules: int = 300_000,
    max_grammar_states: int = 1_500_000,
) -> JsonSchemaConstraint:
    """Compile a JSON Schema (dict, JSON text, or pydantic model class) to a grammar.

    ``strict`` raises :class:`UnsupportedSchemaError` wherever the grammar would accept more
    than the schema; otherwise such places over-approximate (never reject a valid instance)
    and are listed in ``.warnings``.  ``whitespace='flexible'`` allows up to
    ``max_whitespace`` JSON whitespace characters around each punctuation token (enough for
    ``json.dumps`` spacing and indentation); ``'compact'`` allows none.
    ``property_order='schema'`` wants listed properties in schema order (optional ones
    skippable, other keys after); ``'any'`` accepts any order (exactly for up to 8 listed
    keys).  ``assert_format=False`` treats ``format`` as an annotation (the 2019-09+
    default for validators).  ``retrieve(uri)`` returns remote schemas for ``$ref``.
    ``max_grammar_rules`` / ``max_grammar_states`` bound the grammar (rules, and states of its
    automaton terminals): past them :class:`GrammarTooLarge` names where compilation was,
    instead of growing without end.
    """
    raw = _load(schema)
    d = _draft_of(raw, draft)
    c = Compiler(
        raw,
        strict=strict,
        whitespace=whitespace,
        max_whitespace=max_whitespace,
        property_order=property_order,
        max_depth=max_depth,
        draft=d,
        assert_format=assert_format,
        retrieve=retrieve,
        max_grammar_rules=max_grammar_rules,
        max_grammar_states=max_grammar_states,
    )
    if _no_validation_vocabulary(raw, retrieve):
        c.approx("$schema", "", "the metaschema has no validation vocabulary; compiled as any value")
        g = c.compile(True)
    else:
        g = c.compile(raw)
    opts = dict(strict=strict, whitespace=whitespace, max_whitespace=max_whitespace,
                property_order=property_order, draft=d, assert_format=assert_format)
    notes = list(dict.fromkeys(c.warnings))
    if notes:
        more = f" (and {len(notes) - 1} more; see .warnings)" if len(notes) > 1 else ""
        warnings.warn(
            f"schema compiled with over-approximation: {notes[0]}{more}", SchemaApproximationWarning, stacklevel=2
        )
    return JsonSchemaConstraint(raw, g, notes, opts, retrieve)
