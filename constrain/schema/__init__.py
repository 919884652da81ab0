"""JSON Schema -> grammar IR (see :mod:`constrain.schema.compiler` and docs/json_schema.md)."""

from constrain.schema.compiler import JsonSchemaConstraint, json_schema

__all__ = ["JsonSchemaConstraint", "json_schema"]
