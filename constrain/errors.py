"""Typed errors shared by every layer.

Every failure a user can provoke with bad input maps to one of these, so callers can
catch ``ConstrainError`` and report it instead of seeing a crash deep inside a kernel.
Each error carries *where* the problem is (a regex offset, a rule name, a JSON pointer).
"""

from __future__ import annotations


class ConstrainError(Exception):
    """Base class of every error raised on purpose by constrain."""


class RegexError(ConstrainError):
    """A regular expression is malformed or uses a construct we cannot compile exactly."""

    def __init__(self, message: str, pattern: str, position: int | None = None) -> None:
        where = f" at offset {position}" if position is not None else ""
        super().__init__(f"{message}{where} in regex {pattern!r}")
        self.pattern = pattern
        self.position = position


class ConstraintTooLarge(ConstrainError):
    """An automaton construction passed its size or time bound.

    Raised instead of hanging or exhausting memory (e.g. ``(a|b)*a(a|b){40}`` has 2**40
    DFA states).  ``limit`` names the bound that was hit so the caller can raise it.
    """

    def __init__(self, message: str, limit: str | None = None) -> None:
        super().__init__(message)
        self.limit = limit


class GrammarTooLarge(ConstrainError):
    """A generated grammar (JSON Schema) passed its size bounds; ``limit`` names the option
    to raise.  Not a :class:`ConstraintTooLarge`: the schema compiler catches those to
    over-approximate one keyword, while this must stop the whole compilation."""

    def __init__(self, message: str, limit: str | None = None) -> None:
        super().__init__(message)
        self.limit = limit


class GrammarError(ConstrainError):
    """A grammar is malformed: undefined rule, bad terminal, unsupported construct."""

    def __init__(self, message: str, rule: str | None = None) -> None:
        where = f" (rule {rule!r})" if rule else ""
        super().__init__(f"{message}{where}")
        self.rule = rule


class EmptyLanguageError(ConstrainError):
    """The constraint admits no output at all (an unsatisfiable schema, a grammar whose start
    rule derives nothing): no sampler could ever finish, so compile says so up front.  Code
    that wants a reject-everything matcher instead (benchmarks, validators) catches this."""


class EmptyGrammarError(GrammarError, EmptyLanguageError):
    """A grammar's start rule derives no finite string."""


class UnsupportedSchemaError(ConstrainError):
    """A JSON Schema keyword cannot be compiled exactly (strict mode)."""

    def __init__(self, message: str, keyword: str | None = None, pointer: str = "") -> None:
        where = f" at {pointer or '#'}" if keyword is not None or pointer else ""
        kw = f"keyword {keyword!r}: " if keyword else ""
        super().__init__(f"{kw}{message}{where}")
        self.keyword = keyword
        self.pointer = pointer


class SchemaApproximationWarning(UserWarning):
    """Lenient mode compiled a schema with places it over-approximates (listed in ``.warnings``).

    One warning per ``json_schema`` call, so that a silent widening (a dropped ``maxLength``,
    a pattern outside the supported dialect) is visible without strict mode; filter it with
    ``warnings.simplefilter("ignore", SchemaApproximationWarning)``.
    """


class SchemaError(ConstrainError):
    """A JSON Schema is malformed (not a schema at all, bad $ref, wrong keyword type)."""

    def __init__(self, message: str, pointer: str = "") -> None:
        super().__init__(f"{message} at {pointer or '#'}")
        self.pointer = pointer


class InvalidTokenError(ConstrainError):
    """``Matcher.advance`` was given a token the constraint does not allow here."""

    def __init__(self, token_id: int, reason: str = "not allowed by the constraint") -> None:
        super().__init__(f"token {token_id} {reason}")
        self.token_id = token_id


class TokenOutOfRange(InvalidTokenError):
    """A token id outside ``0 <= id < len(vocab)``."""

    def __init__(self, token_id: int, vocab_size: int) -> None:
        super().__init__(token_id, f"is out of range for a vocabulary of {vocab_size} tokens")
        self.vocab_size = vocab_size


class VocabularyError(ConstrainError):
    """A tokenizer could not be turned into exact token byte strings."""


class DataNotFound(ConstrainError):
    """A shared data set (tokenizers, JSONSchemaBench, test suite) is not where the setting points."""
