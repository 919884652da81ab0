"""pydantic models and hypothesis-jsonschema instances through the JSON Schema compiler."""

from __future__ import annotations

import enum
import json
import random
from typing import Literal

import pytest
from hypothesis import HealthCheck, given, settings
from pydantic import BaseModel, Field, conint, constr

from constrain.schema import json_schema
from constrain.schema.testing import acceptor, sample_text


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Address(BaseModel):
    street: constr(min_length=1, max_length=20)
    zip: constr(pattern=r"^[0-9]{5}$")


class Person(BaseModel):
    name: str
    age: conint(ge=0, le=130)
    kind: Literal["admin", "user"]
    color: Color
    nickname: str | None = None
    address: Address
    previous: list[Address] = Field(default_factory=list, max_length=3)
    scores: list[conint(ge=-5, le=5)] = Field(min_length=1)


def test_pydantic_model_compiles_and_roundtrips():
    c = json_schema(Person, property_order="any")
    acc = acceptor(c)
    p = Person(name="Ann", age=30, kind="admin", color=Color.RED, address=Address(street="Main", zip="12345"),
               scores=[1, -5])
    assert acc(p.model_dump_json())
    assert acc(json.dumps(json.loads(p.model_dump_json()), indent=2))
    bad = json.loads(p.model_dump_json())
    bad["age"] = 131
    assert not acc(json.dumps(bad))
    bad["age"] = 3
    bad["address"]["zip"] = "1234"
    assert not acc(json.dumps(bad))
    rng = random.Random(1)
    for _ in range(30):
        text = sample_text(c.grammar, rng).decode("utf-8")
        Person.model_validate_json(text)  # text the grammar accepts parses back


def test_pydantic_schema_order_policy():
    acc = acceptor(json_schema(Address))  # the default, "any", never blocks a valid key order
    assert acc('{"street": "a", "zip": "00000"}')
    assert acc('{"zip": "00000", "street": "a"}')
    ordered = acceptor(json_schema(Address, property_order="schema"))  # opt-in generation policy
    assert ordered('{"street": "a", "zip": "00000"}')
    assert not ordered('{"zip": "00000", "street": "a"}')


CORPUS = [
    {"type": "object", "properties": {"a": {"type": "integer", "minimum": -10, "maximum": 10},
                                      "b": {"type": "array", "items": {"type": "string", "maxLength": 3}}},
     "required": ["a"]},
    {"anyOf": [{"type": "null"}, {"type": "number", "minimum": 0.5, "maximum": 99.25}]},
    {"$schema": "http://json-schema.org/draft-07/schema#", "type": "array",
     "items": [{"type": "boolean"}, {"enum": ["x", 1, None]}], "minItems": 1},
    {"type": "object", "patternProperties": {"^[a-c]$": {"type": "integer"}}, "additionalProperties": False},
    {"type": "string", "pattern": "^[a-f0-9]{2,6}$"},
    {"type": "object", "properties": {"t": {"const": "a"}, "v": {"type": "string"}}, "required": ["t", "v"],
     "additionalProperties": False},
    {"type": "integer", "multipleOf": 3, "exclusiveMaximum": 100},
    {"oneOf": [{"type": "string", "minLength": 2}, {"type": "integer"}]},
]


@pytest.mark.parametrize("schema", CORPUS)
def test_hypothesis_jsonschema_instances_accepted(schema):
    """hypothesis-jsonschema speaks draft 7 (prefixItems is unknown to it), so the corpus does too."""
    from hypothesis_jsonschema import from_schema

    acc = acceptor(json_schema(schema, property_order="any"))

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(from_schema(schema))
    def check(value):
        assert acc(json.dumps(value)), (schema, value)
        assert acc(json.dumps(value, indent=2, ensure_ascii=False)), (schema, value)

    check()
