"""constrain: constrained decoding for language models.

The public face is small::

    vocab = constrain.Vocabulary.from_pretrained("path/to/tokenizer")
    compiled = constrain.compile(constrain.regex(r"\\d{3}-\\d{4}"), vocab)
    m = compiled.matcher()
    m.fill_mask(bitmask); m.advance(token_id)

Sub-packages follow the data flow vocab -> automata -> cfg -> schema -> engine -> sampling
-> integrations / diffusion / lang -> cli; each imports only from those before it.  Names
here are resolved lazily so ``import constrain`` stays cheap (no numba, no torch).
"""

from __future__ import annotations

import importlib
from typing import Any

from constrain.errors import (
    ConstrainError,
    ConstraintTooLarge,
    DataNotFound,
    EmptyLanguageError,
    GrammarError,
    GrammarTooLarge,
    InvalidTokenError,
    RegexError,
    SchemaApproximationWarning,
    SchemaError,
    TokenOutOfRange,
    UnsupportedSchemaError,
    VocabularyError,
)

__version__ = "0.1.0"

# public name -> (module, attribute); attribute None means the module itself
_LAZY: dict[str, tuple[str, str | None]] = {
    "Vocabulary": ("constrain.vocab", "Vocabulary"),
    "regex": ("constrain.automata.regex", "regex"),
    "Regex": ("constrain.automata.regex", "Regex"),
    "ByteDFA": ("constrain.automata.bytedfa", "ByteDFA"),
    "grammar": ("constrain.cfg.frontend", "grammar"),
    "gbnf": ("constrain.cfg.frontend", "gbnf"),
    "Grammar": ("constrain.cfg.ir", "Grammar"),
    "json_schema": ("constrain.schema", "json_schema"),
    "compile": ("constrain.engine.compile", "compile"),
    "Matcher": ("constrain.engine.matcher", "Matcher"),
    "CompiledConstraint": ("constrain.engine.matcher", "CompiledConstraint"),
    "hf": ("constrain.integrations.hf", None),
}

__all__ = [
    "ConstrainError",
    "ConstraintTooLarge",
    "DataNotFound",
    "EmptyLanguageError",
    "GrammarError",
    "GrammarTooLarge",
    "InvalidTokenError",
    "RegexError",
    "SchemaApproximationWarning",
    "SchemaError",
    "TokenOutOfRange",
    "UnsupportedSchemaError",
    "VocabularyError",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'constrain' has no attribute {name!r}") from None
    mod = importlib.import_module(module)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value
