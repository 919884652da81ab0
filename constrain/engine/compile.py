"""``constrain.compile``: one entry point from any constraint spec to a CompiledConstraint."""

from __future__ import annotations

from typing import Any

from constrain.automata.bytedfa import ByteDFA
from constrain.automata.regex import Regex
from constrain.cfg.ir import Grammar
from constrain.engine.matcher import CompiledConstraint
from constrain.errors import ConstrainError
from constrain.vocab import Vocabulary


def compile(constraint: Any, vocab: Vocabulary, **options: Any) -> CompiledConstraint:  # noqa: A001
    """Bind ``constraint`` to ``vocab``.

    Accepts a :class:`Regex` (``constrain.regex``), a :class:`ByteDFA`, a :class:`Grammar`
    (``constrain.grammar`` / ``constrain.gbnf``) or any object with a ``.grammar`` attribute
    holding one (``constrain.json_schema``).  A plain ``str`` is rejected on purpose: it is
    ambiguous between a regex, a grammar and a schema.

    A schema compiled with over-approximations (``.warnings``) allows EOS only where the text
    validates against the schema (``validate_end=False`` turns that off).
    """
    if not isinstance(vocab, Vocabulary):
        raise TypeError(f"vocab must be a constrain.Vocabulary, got {type(vocab).__name__}")
    if isinstance(constraint, Regex):
        from constrain.engine.dfa_matcher import CompiledDFA

        return CompiledDFA(constraint.dfa, vocab, **options)
    if isinstance(constraint, ByteDFA):
        from constrain.engine.dfa_matcher import CompiledDFA

        return CompiledDFA(constraint, vocab, **options)
    grammar = constraint if isinstance(constraint, Grammar) else getattr(constraint, "grammar", None)
    if isinstance(grammar, Grammar):
        from constrain.engine.cfg_matcher import CompiledGrammar

        # an over-approximated schema: EOS only where the finished text validates
        # (validate_end=False keeps the grammar's verdict alone)
        validate = options.pop("validate_end", True)
        end = getattr(constraint, "end_check", None)
        check = end() if validate and callable(end) else None
        prepare = getattr(check, "prepare", None)
        if callable(prepare):  # (its load is compile work: not in the first mask that meets EOS)
            prepare()
        return CompiledGrammar(grammar, vocab, end_check=check, **options)
    if isinstance(constraint, str):
        raise ConstrainError(
            "constrain.compile got a str: wrap it as constrain.regex(...), constrain.grammar(...) "
            "or constrain.json_schema(...)"
        )
    raise ConstrainError(f"cannot compile a {type(constraint).__name__}; expected a regex, grammar or schema")
