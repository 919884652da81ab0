"""JSON Schema compiler: acceptance against hand-checked instances, strictness, sampling.

Decisions go through ``constrain.compile`` when the CFG engine handles grammars, else the
Earley oracle (``constrain.schema.testing.acceptor``).  Sampled texts of exact grammars must
validate with jsonschema (no false accepts), and valid instances must be accepted.
"""

from __future__ import annotations

import json
import random

import jsonschema
import pytest

from constrain.errors import SchemaApproximationWarning, SchemaError, UnsupportedSchemaError
from constrain.schema import json_schema
from constrain.schema.testing import acceptor, sample_text

CASES = [
    (
        {"type": "object", "properties": {"a": {"type": "integer", "minimum": 3, "maximum": 120},
                                          "b": {"type": "string", "maxLength": 3}},
         "required": ["a"], "additionalProperties": False},
        [{"a": 3}, {"a": 120, "b": "xyz"}, {"b": "é", "a": 50}],
        [{"a": 2}, {"a": 121}, {"a": 5, "b": "long"}, {"b": "x"}, {"a": 5, "c": 1}, [], "x"],
    ),
    (
        {"type": "array", "prefixItems": [{"const": "x"}, {"enum": [1, 2]}], "items": {"type": "boolean"},
         "minItems": 2, "maxItems": 4},
        [["x", 1], ["x", 2, True, False], ["x", 1.0]],
        [["x"], ["y", 1], ["x", 3], ["x", 1, 5], ["x", 1, True, True, True]],
    ),
    (
        {"anyOf": [{"type": "string", "pattern": "^[a-z]+$"}, {"type": "number", "exclusiveMinimum": 0.5}]},
        ["abc", 0.75, 2, 1e-3 + 1],
        ["ABC", 0.5, 0.25, -1, None],
    ),
    (
        {"$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer"},
                                                            "next": {"$ref": "#/$defs/node"}},
                            "required": ["v"], "additionalProperties": False}},
         "$ref": "#/$defs/node"},
        [{"v": 1}, {"v": 1, "next": {"v": 2, "next": {"v": 3}}}],
        [{"v": 1, "next": {}}, {"next": {"v": 1}}, {"v": "1"}],
    ),
    (
        {"type": "object", "properties": {"kind": {"enum": ["a", "b"]}},
         "if": {"properties": {"kind": {"const": "a"}}}, "then": {"required": ["x"]}, "else": {"required": ["y"]}},
        [{"kind": "a", "x": 1}, {"kind": "b", "y": 1}, {"x": 0}],
        [{"kind": "a", "y": 1}, {"kind": "b", "x": 1}, {"y": 0}],
    ),
    (
        {"type": "object", "dependentRequired": {"a": ["b"]}, "not": {"required": ["z"]}},
        [{}, {"a": 1, "b": 2}, {"b": 1}],
        [{"a": 1}, {"z": 1}],
    ),
    (
        {"type": "integer", "multipleOf": 7, "minimum": -30, "exclusiveMaximum": 22},
        [-28, 0, 21, 14.0],
        [22, 28, -35, 3, 7.5],
    ),
    (
        {"type": "array", "items": {"enum": ["a", "b", 1]}, "uniqueItems": True, "minItems": 1},
        [["a"], ["b", 1, "a"], [1]],
        [[], ["a", "a"], [1, 1.0], ["c"]],
    ),
    (
        {"type": "array", "contains": {"type": "integer", "minimum": 5}, "minContains": 1, "maxContains": 2},
        [[5], [1, 6, "x", 7], [5.0, 2]],
        [[], [1, 2], [5, 6, 7], [9, 9, 9, 0]],
    ),
    (
        {"allOf": [{"properties": {"a": {"type": "integer"}}}], "properties": {"b": True},
         "unevaluatedProperties": False},
        [{"a": 1}, {"a": 1, "b": "x"}, {}],
        [{"c": 1}, {"a": 1, "c": 2}, {"a": "x"}],
    ),
    (
        {"type": "string", "format": "date"},
        ["2024-02-29", "1999-12-31"],
        ["2024-13-01", "24-01-01", 5],
    ),
    (
        {"type": "object", "patternProperties": {"^x-": {"type": "integer"}}, "propertyNames": {"maxLength": 4},
         "additionalProperties": {"type": "string"}},
        [{"x-ab": 1, "q": "s"}, {}],
        [{"x-ab": "s"}, {"q": 1}, {"long_": "s"}],
    ),
]


@pytest.mark.parametrize("schema,valid,invalid", CASES)
@pytest.mark.parametrize("order", ["any", "schema"])
def test_cases(schema, valid, invalid, order):
    c = json_schema(schema, property_order=order)
    acc = acceptor(c)
    for v in valid:
        jsonschema.validate(v, schema)  # the case itself is right
        for text in (json.dumps(v), json.dumps(v, indent=2), json.dumps(v, separators=(",", ":")),
                     json.dumps(v, ensure_ascii=False)):
            if order == "schema" and isinstance(v, dict) and list(v) != [k for k in schema.get("properties", {}) if k in v]:
                continue  # schema order policy: listed keys in schema order
            assert acc(text), (schema, text)
    for v in invalid:
        checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
        assert not jsonschema.Draft202012Validator(schema, format_checker=checker).is_valid(v)
        assert not acc(json.dumps(v)), (schema, v)


def test_compact_whitespace_rejects_spaces():
    c = json_schema({"type": "array", "items": {"type": "integer"}}, whitespace="compact")
    acc = acceptor(c)
    assert acc("[1,2]") and not acc("[1, 2]")


@pytest.mark.parametrize("schema,valid,invalid", CASES)
def test_sampled_texts_validate(schema, valid, invalid):
    """Random strings of the grammar are valid instances (exactness where no warning)."""
    c = json_schema(schema, property_order="any")
    rng = random.Random(0)
    v = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    for _ in range(25):
        text = sample_text(c.grammar, rng).decode("utf-8")
        value = json.loads(text)
        if c.exact:
            assert v.is_valid(value), (schema, text, c.warnings)


def test_strict_mode_names_keyword_and_pointer():
    with pytest.raises(UnsupportedSchemaError) as e:
        json_schema({"properties": {"a": {"type": "array", "uniqueItems": True}}}, strict=True)
    assert e.value.keyword == "uniqueItems"
    assert e.value.pointer == "/properties/a"
    c = json_schema({"properties": {"a": {"type": "array", "uniqueItems": True}}})
    assert c.warnings and "uniqueItems" in c.warnings[0]
    assert acceptor(c)('{"a": [1, 1]}')  # lenient over-approximates, never blocks


def test_bad_input_is_typed():
    with pytest.raises(SchemaError):
        json_schema("{not json")
    with pytest.raises(SchemaError):
        json_schema({"type": "strnig"})
    with pytest.raises(SchemaError):
        json_schema({"$ref": "#/nope"}, strict=True)
    with pytest.raises(SchemaError):
        json_schema(42)


def test_false_and_true_schemas():
    assert not acceptor(json_schema(False))("1")
    acc = acceptor(json_schema(True))
    assert all(acc(json.dumps(v)) for v in [1, "x", None, [1, {"a": []}], {"k": -2.5e3}])


def test_draft4_exclusive_boolean_and_draft7_items_array():
    c = json_schema({"$schema": "http://json-schema.org/draft-04/schema#", "type": "number",
                     "maximum": 3, "exclusiveMaximum": True})
    acc = acceptor(c)
    assert acc("2.5") and not acc("3")
    c = json_schema({"items": [{"type": "string"}], "additionalItems": False}, draft=7)
    acc = acceptor(c)
    assert acc('["a"]') and not acc('["a", 1]') and not acc("[1]")


def test_empty_branch_of_anyof_is_dropped_not_fatal():
    """No integer in (-20, 0) is a multiple of 12 and 7 at once: that branch's automaton is
    empty, which must remove the branch, not fail the schema (JSONSchemaBench allany11)."""
    schema = {"type": "integer", "exclusiveMinimum": -20, "exclusiveMaximum": 0,
              "anyOf": [{"allOf": [{"multipleOf": 12}, {"multipleOf": 7}]}, {"multipleOf": 5}]}
    acc = acceptor(json_schema(schema))
    for v in range(-25, 3):
        ok = -20 < v < 0 and v % 5 == 0
        assert acc(str(v)) == ok, v


def test_unsatisfiable_schema_accepts_nothing_like_false():
    acc = acceptor(json_schema({"type": "integer", "minimum": 1, "maximum": 6, "multipleOf": 7}))
    assert not any(acc(str(v)) for v in range(-10, 20))


def test_a_length_bound_too_large_to_build_keeps_the_other():
    """maxLength 2048 is over-approximated (warned), but minLength 8 still holds: 'Pass' used to
    pass as a password (JSONSchemaBench Github_easy o6265)."""
    for extra in ({}, {"pattern": "^[A-Za-z0-9 ]*$"}):
        schema = {"type": "string", "minLength": 8, "maxLength": 2048, **extra}
        with pytest.warns(SchemaApproximationWarning, match="maxLength"):
            acc = acceptor(json_schema(schema))
        assert not acc('"Pass"') and acc('"Password1"') and acc(json.dumps("x" * 3000))


def test_string_automata_are_bounded_and_shared():
    """A counted pattern too large for a terminal falls back to the length bounds, once per
    distinct string schema (JSONSchemaBench Github_hard o21072 used to take over 40 s)."""
    import time

    prop = {"type": "string", "minLength": 1, "maxLength": 100, "pattern": r"^(?:\S+\s+){0,99}\S+$"}
    schema = {"type": "object", "properties": {f"p{i}": dict(prop) for i in range(12)}}
    t = time.perf_counter()
    c = json_schema(schema, property_order="schema")
    assert time.perf_counter() - t < 20  # generous: ~1 s; the point is no minute-long build
    assert len([w for w in c.warnings if "pattern" in w]) == 12  # one note per place, with its pointer
    assert all(len(w) < 400 for w in c.warnings)  # the translated regex is cut, not kilobytes long
    acc = acceptor(c)
    assert acc('{"p0": "a b"}') and not acc('{"p0": ""}') and not acc(json.dumps({"p0": "x" * 101}))
    with pytest.raises(UnsupportedSchemaError, match="pattern"):
        json_schema(schema, strict=True)


@pytest.mark.parametrize(
    ("draft", "keyword", "schema", "text"),
    [
        ("draft-04", "if", {"if": {"properties": {"a": {"enum": [1]}}}, "then": {"required": ["b"]}}, '{"a": 1}'),
        ("draft-06", "if", {"if": {"properties": {"a": {"enum": [1]}}}, "then": {"required": ["b"]}}, '{"a": 1}'),
        ("draft-04", "const", {"properties": {"a": {"const": 2}}}, '{"a": 1}'),
        ("draft-04", "propertyNames", {"propertyNames": {"maxLength": 1}}, '{"ab": 1}'),
        ("draft-07", "prefixItems", {"prefixItems": [{"type": "string"}]}, "[1]"),
    ],
)
def test_keywords_of_later_drafts_are_ignored(draft, keyword, schema, text):
    """A keyword the schema's draft does not have is an annotation there, as its validators
    treat it (JSONSchemaBench Github_medium o39097: a draft-04 schema with if/then)."""
    old = dict(schema, **{"$schema": f"http://json-schema.org/{draft}/schema#"})
    V = jsonschema.validators.validator_for(old)
    assert V(old).is_valid(json.loads(text))
    assert acceptor(json_schema(old))(text)
    assert not acceptor(json_schema(schema, draft="2020-12"))(text)  # where it is a keyword, it holds


def test_many_required_keys_in_any_order_are_counted():
    """Over 8 required keys cannot be tracked as a subset (2^R states); they are counted, so a
    parsed instance missing one is rejected in any key order (JSONSchemaBench Github_medium
    o54610 and ten more schemas used to accept such instances)."""
    req = [f"k{i}" for i in range(10)]
    schema = {
        "type": "object",
        "properties": {**{k: {"type": "integer"} for k in req}, "opt": {"type": "string"}, "o2": {}},
        "required": req,
    }
    with pytest.warns(SchemaApproximationWarning, match="counted"):
        acc = acceptor(json_schema(schema))
    rng = random.Random(0)
    for _ in range(20):
        obj = {k: rng.randint(0, 9) for k in req}
        if rng.random() < 0.5:
            obj["opt"] = "x"
        keys = list(obj)
        rng.shuffle(keys)
        assert acc(json.dumps({k: obj[k] for k in keys}))
        missing = dict(obj)
        del missing[rng.choice(req)]
        keys = list(missing)
        rng.shuffle(keys)
        text = json.dumps({k: missing[k] for k in keys})
        assert not acc(text)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(json.loads(text), schema)
    with pytest.raises(UnsupportedSchemaError, match="required"):
        json_schema(schema, strict=True)


NEGATIONS = [
    # 'not both': JSONSchemaBench's Marathon and OpenRTB schemas
    {"type": "object", "not": {"allOf": [{"required": ["cmd"]}, {"required": ["args"]}]}},
    {"type": "object", "not": {"anyOf": [{"required": ["cmd"]}, {"required": ["args"]}]}},
    {"not": {"not": {"type": "string"}}},
    {"not": {"items": {"type": "string"}}},
    # a type-specific keyword holds for every other type: its negation is its own type only
    {"not": {"minLength": 2}},
    {"not": {"pattern": "^a"}},
    {"not": {"required": ["id"]}},
    {"not": {"minItems": 1}},
    {"not": {"contains": {"type": "string"}}},
    {"not": {"type": "string", "javaType": "Name", "markdownDescription": "annotation only"}},
    {"$defs": {"s": {"type": "string"}}, "not": {"$ref": "#/$defs/s", "maxLength": 2}},
    {"oneOf": [{"required": ["id"]}, {"required": ["uri"], "properties": {"uri": {"type": "string"}}}]},
]
CANDIDATES = [
    {}, {"cmd": "x"}, {"args": []}, {"cmd": "x", "args": []}, {"id": 1}, {"uri": "u"}, {"uri": 3},
    {"id": 1, "uri": "u"}, [], [1, 2], [1, "a"], ["a"], "s", "abc", "", 3, None, True,
]


@pytest.mark.parametrize("schema", NEGATIONS)
def test_negations_are_exact(schema):
    """Each ``not`` here (and the oneOf, through the negation of each branch) compiles without
    approximation, and accepts exactly what jsonschema accepts."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", SchemaApproximationWarning)
        acc = acceptor(json_schema(schema))
    for x in CANDIDATES:
        assert acc(json.dumps(x)) == jsonschema.Draft202012Validator(schema).is_valid(x), x


D4 = "http://json-schema.org/draft-04/schema#"


@pytest.mark.parametrize(
    "schema",
    [
        {"$schema": D4, "not": {"items": {"type": "string"}}},  # draft 4 has no 'contains'
        {"$schema": D4, "not": {"const": 1}},  # nor 'const': not {} accepts nothing
        {"$schema": D4, "oneOf": [{"properties": {"d": {"items": {"type": "string"}}}}, {"required": ["d"]}]},
    ],
)
def test_negations_in_draft4_use_only_its_keywords(schema):
    """A negated 'items' became a 'contains' branch, which draft 4 reads as an annotation: any
    array passed (JSONSchemaBench Github_hard o23230 accepted a value matching both oneOf
    branches)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", SchemaApproximationWarning)
        acc = acceptor(json_schema(schema))
    for x in [["x"], [1], [], ["x", 1], 1, {"d": ["x"]}, {"d": [1]}, {}]:
        assert acc(json.dumps(x)) == jsonschema.Draft4Validator(schema).is_valid(x), x


def test_negated_number_bound_is_numbers_only():
    """not {"minimum": 5} is the numbers below 5: strings satisfy 'minimum', so they fail it
    (the negation used to add every other type; the exponent-form range is still warned)."""
    with pytest.warns(SchemaApproximationWarning, match="exponent"):
        acc = acceptor(json_schema({"not": {"minimum": 5}}))
    assert [acc(x) for x in ['"abc"', "3", "4.5", "7", "null", "[]"]] == [False, True, True, False, False, False]


def test_negation_inside_a_recursive_schema_stays_bounded():
    """An ``if`` under ``$ref: "#"`` used to rebuild its negation on every visit, and merged
    subtrees (memoised by schema identity) multiplied without end; now it compiles in seconds."""
    import time

    schema = {
        "properties": {
            "items": {"anyOf": [{"$ref": "#"}, {"type": "array", "items": {"$ref": "#"}}]},
            "not": {"$ref": "#"},
            "then": {"$ref": "#"},
        },
        "dependencies": {
            "_u": {
                "if": {"properties": {"_u": {"const": True}, "items": {"properties": {"type": {
                    "anyOf": [{"enum": ["object", "array"]}, {"type": "array", "contains": {"enum": ["object"]}}]
                }}}}},
                "then": {"required": ["maxItems"]},
            },
            "pattern": {"required": ["maxLength"]},
        },
    }
    t = time.perf_counter()
    acc = acceptor(json_schema(schema))
    assert time.perf_counter() - t < 20
    assert acc('{"pattern": "x", "maxLength": 3}') and not acc('{"pattern": "x"}')


def test_negation_of_a_recursive_schema_is_refused_not_looped():
    """not {$ref: n} with n recursive has no finite branch list: warned as not expressible
    (it used to recurse until the interpreter's limit)."""
    schema = {
        "$defs": {"n": {"type": "object", "properties": {"b": {"$ref": "#/$defs/n"}}}},
        "not": {"$ref": "#/$defs/n"},
    }
    with pytest.warns(SchemaApproximationWarning, match="not: negation not expressible") as rec:
        json_schema(schema)
    assert not any("unresolvable" in str(w.message) for w in rec)


# ---- boolean combinations of string schemas as one automaton (constrain/schema/string_logic.py)

_STRING_LEAVES = [
    {"pattern": "^a"}, {"pattern": "b$"}, {"pattern": "1.*2"}, {"pattern": "^[ab]*$"}, {"minLength": 2},
    {"maxLength": 3}, {"const": "ab"}, {"enum": ["a", "b1", 3]}, {"type": "integer"}, {"type": ["string", "null"]},
    {"minimum": 4}, True, False,
]


def _string_tree(draw, depth: int):
    from hypothesis import strategies as st

    if depth == 0 or draw(st.integers(0, 3)) == 0:
        return draw(st.sampled_from(_STRING_LEAVES))
    kind = draw(st.sampled_from(["allOf", "anyOf", "oneOf", "not", "if"]))
    if kind == "not":
        return {"not": _string_tree(draw, depth - 1)}
    if kind == "if":
        out = {"if": _string_tree(draw, depth - 1)}
        for k in ("then", "else"):
            if draw(st.booleans()):
                out[k] = _string_tree(draw, depth - 1)
        return out
    return {kind: [_string_tree(draw, depth - 1) for _ in range(draw(st.integers(1, 3)))]}


def test_string_boolean_combinations_agree_with_jsonschema():
    """Nested allOf/anyOf/oneOf/not/if over string keywords, compiled as one automaton, accept
    exactly the strings jsonschema accepts (and the builder really took them).  (The general
    path compiles a oneOf whose branches overlap as anyOf, with a warning: the algebra is exact.)"""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    import constrain.schema.string_logic as sl

    built = []
    orig = sl.StringLogic.build

    def spy(self, schema, res):
        d = orig(self, schema, res)
        built.append(d is not None)
        return d

    @settings(max_examples=120, deadline=None)
    @given(st.data())
    def run(data):
        tree = _string_tree(data.draw, 3)
        kind = data.draw(st.sampled_from(["allOf", "anyOf", "oneOf", "not"]))
        schema = {"type": "string", kind: tree if kind == "not" else [tree, data.draw(st.sampled_from(_STRING_LEAVES))]}
        if not any(k in json.dumps(schema) for k in ('"not"', '"oneOf"', '"if"')):
            schema["not"] = {"const": "zz"}  # the algebra takes trees that need a negation
        accepts = acceptor(json_schema(schema))
        validator = jsonschema.Draft202012Validator(schema)
        texts = ["", "a", "b", "ab", "a1b2", "ba", "b1", "aab", "12", "a12b", "abab", "xyz"]
        texts += data.draw(st.lists(st.text(alphabet="ab12x", max_size=6), max_size=8))
        for s in texts:
            want = validator.is_valid(s)
            assert accepts(json.dumps(s)) == want, (schema, s, want)
        assert not accepts("3") and not accepts("null")

    sl.StringLogic.build = spy
    try:
        run()
    finally:
        sl.StringLogic.build = orig
    assert built and sum(built) >= 0.9 * len(built), f"{sum(built)}/{len(built)} combinations built as one automaton"


def test_grammar_size_is_bounded_with_a_typed_error():
    """A schema whose grammar passes the size bounds stops with GrammarTooLarge naming where,
    not an approximation (the compiler's ConstraintTooLarge handlers must not swallow it)."""
    import constrain
    from constrain.errors import GrammarTooLarge

    props = {f"k{i}": {"anyOf": [{"type": "string", "pattern": f"^{i}[a-z]+$"}, {"type": "integer"}]}
             for i in range(12)}
    schema = {"type": "object", "properties": props}
    json_schema(schema)  # fits the defaults
    with pytest.raises(GrammarTooLarge, match="schema grammar too large at") as e:
        json_schema(schema, max_grammar_rules=20)
    assert e.value.limit == "max_grammar_rules" and isinstance(e.value, constrain.ConstrainError)
    with pytest.raises(GrammarTooLarge, match="automaton states") as e:
        json_schema(schema, max_grammar_states=50)
    assert e.value.limit == "max_grammar_states"  # names the bound that was hit
