"""One adapter per engine, all behind the same tiny interface.

The runner only needs: compile a schema (typed :class:`CompileError` on failure), make a
matcher, fill a bitmask allocated once per run, test a bit, advance, and know the engine's
EOS ids.  Every adapter is built on the same tokenizer folder, so token ids agree; the
adapters themselves load their tokenizer lazily, once per worker process, and that load is
never counted as compile time.

Engines run single-threaded (MaskBench rule): :func:`single_thread_env` is applied in each
worker process before any engine is imported.
"""

from __future__ import annotations

import json
import os
import time
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

ENGINES = ("constrain", "constrain-strict", "llguidance", "xgrammar", "outlines")

THREAD_VARS = (
    "RAYON_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "TOKENIZERS_PARALLELISM",
)


def single_thread_env() -> None:
    """Pin every engine's thread pool to one thread (call before importing engines)."""
    for var in THREAD_VARS:
        os.environ[var] = "false" if var == "TOKENIZERS_PARALLELISM" else "1"


class CompileError(Exception):
    """The engine declined the schema (unsupported keyword, invalid grammar, missing layer)."""


class EmptyLanguage(Exception):
    """The engine proved the schema unsatisfiable: its matcher would reject every output."""


class EngineUnavailable(Exception):
    """The engine's package is not installed."""


# the warm-up schema touches every kernel family: objects, strings with a length bound, an
# integer range, arrays, enums, booleans, a pattern (a regex DFA inside the grammar)
WARMUP_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "code": {"type": "string", "pattern": "^[A-Z]{2}[0-9]+$"},
        "tags": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 999}},
        "kind": {"enum": ["a", "b"]},
        "ok": {"type": "boolean"},
    },
    "required": ["name"],
}
WARMUP_TEXT = '{"name": "ada", "code": "AB12", "tags": [1, 20], "kind": "a", "ok": true}'


class Adapter:
    """Base adapter; subclasses implement compile/matcher/fill/advance."""

    name = "?"

    def __init__(self, tokenizer_dir: Path) -> None:
        self.tokenizer_dir = Path(tokenizer_dir)
        self._bitmask: np.ndarray | None = None

    # the shared exact-bytes vocabulary (token ids every engine sees) ----------------------
    @cached_property
    def vocab(self) -> Any:
        return shared_vocab(self.tokenizer_dir)

    @cached_property
    def hf_tokenizer(self) -> Any:
        """The (fast) Hugging Face tokenizer, loaded from the folder (peers need the HF object)."""
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(self.tokenizer_dir), use_fast=True)

    def load(self) -> None:
        """Pay the tokenizer-conversion cost now (outside any timed region)."""

    def warm_up(self) -> float:
        """Seconds to compile a small schema and walk one instance, a mask before every token.

        Without it the first schema a worker runs pays the engine's first-call costs (Numba
        JIT or on-disk cache loads, lazy imports, allocator growth) inside its compile and
        mask times: seconds in one mask, enough to move a split's average.  Every engine gets
        the same warm-up; the runner reports these seconds on their own.
        """
        t0 = time.perf_counter()
        try:
            m = self.matcher(self.compile(WARMUP_SCHEMA))
            for tok in self.vocab.encode(WARMUP_TEXT):
                self.fill(m)
                if not self.advance(m, tok):
                    break
            self.fill(m)
        except Exception:  # noqa: BLE001 - warm-up only; real errors surface per schema
            pass
        return time.perf_counter() - t0

    def compile(self, schema: Any) -> Any:
        raise NotImplementedError

    def matcher(self, compiled: Any) -> Any:
        raise NotImplementedError

    def fill(self, m: Any) -> np.ndarray:
        """Compute the full mask into the run's bitmask; returns it as int32 words (a view)."""
        raise NotImplementedError

    def advance(self, m: Any, token: int) -> bool:
        """Consume ``token``; False when the engine refuses it."""
        raise NotImplementedError

    @property
    def eos_ids(self) -> tuple[int, ...]:
        return tuple(self.vocab.eos_token_ids)


_VOCABS: dict[str, Any] = {}


def shared_vocab(tokenizer_dir: Path) -> Any:
    """constrain's exact-bytes Vocabulary for ``tokenizer_dir`` (one per process)."""
    key = str(tokenizer_dir)
    if key not in _VOCABS:
        from constrain.vocab import Vocabulary

        _VOCABS[key] = Vocabulary.from_pretrained(tokenizer_dir)
    return _VOCABS[key]


def bit(words: np.ndarray, token: int) -> bool:
    """Whether ``token``'s bit is set in an int32 bitmask."""
    return bool((int(words[token >> 5]) >> (token & 31)) & 1)


class ConstrainAdapter(Adapter):
    """constrain: ``constrain.json_schema`` + ``constrain.compile`` + the Matcher contract."""

    name = "constrain"
    strict = False

    def load(self) -> None:
        from constrain.engine.matcher import allocate_bitmask

        self._bitmask = allocate_bitmask(len(self.vocab))
        import warnings

        from constrain.errors import SchemaApproximationWarning

        # the runner measures what an approximation lets through (false accepts): no log line per schema
        warnings.simplefilter("ignore", SchemaApproximationWarning)

    def warm_up(self) -> float:
        t0 = time.perf_counter()
        try:  # the plain-regex path's kernels too (a schema that is one string pattern)
            import constrain

            constrain.compile(constrain.regex("[a-z]+"), self.vocab).matcher().fill_mask(self._bitmask)
        except Exception:  # noqa: BLE001 - warm-up only; real errors surface per schema
            pass
        return time.perf_counter() - t0 + super().warm_up()

    def compile(self, schema: Any) -> Any:
        import constrain
        from constrain.errors import ConstrainError, EmptyLanguageError

        try:
            spec = constrain.json_schema(schema, strict=self.strict)
            return constrain.compile(spec, self.vocab)
        except (ImportError, AttributeError, NotImplementedError) as exc:
            # the schema or CFG layer is not there (yet): report, do not crash the run
            raise CompileError(f"layer missing: {type(exc).__name__}: {exc}") from None
        except EmptyLanguageError as exc:
            raise EmptyLanguage(str(exc)) from None
        except ConstrainError as exc:
            raise CompileError(f"{type(exc).__name__}: {exc}") from None
        except RecursionError:
            raise CompileError("RecursionError: schema nesting too deep") from None

    def matcher(self, compiled: Any) -> Any:
        return compiled.matcher()

    def fill(self, m: Any) -> np.ndarray:
        m.fill_mask(self._bitmask)
        return self._bitmask

    def advance(self, m: Any, token: int) -> bool:
        from constrain.errors import InvalidTokenError

        try:
            m.advance(token)
        except InvalidTokenError:
            return False
        return True


class ConstrainStrictAdapter(ConstrainAdapter):
    """constrain with ``strict=True``: a schema it can only over-approximate (uniqueItems, a
    negation it cannot express, ...) is declined with ``UnsupportedSchemaError`` naming the
    keyword and where, instead of compiled loosely -- declared coverage, like llguidance's:
    what compiles is enforced exactly, so false accepts can only be bugs."""

    name = "constrain-strict"
    strict = True


class LLGuidanceAdapter(Adapter):
    """llguidance: JSON schema -> llguidance grammar -> LLMatcher (lazy lexer, Earley parser)."""

    name = "llguidance"

    def load(self) -> None:
        try:
            import llguidance
            import llguidance.hf
        except ImportError as exc:
            raise EngineUnavailable(f"llguidance is not installed ({exc})") from None
        self._ll = llguidance
        self.tok = llguidance.hf.from_tokenizer(self.hf_tokenizer)
        self._bitmask = np.zeros((1, (self.tok.vocab_size + 31) // 32), dtype=np.int32)
        self._words = self._bitmask[0]

    def compile(self, schema: Any) -> Any:
        ll = self._ll
        try:
            grammar = ll.LLMatcher.grammar_from_json_schema(json.dumps(schema))
        except ValueError as exc:
            raise CompileError(str(exc)) from None
        m = ll.LLMatcher(self.tok, grammar, log_level=0)
        if m.is_error():
            raise CompileError(m.get_error())
        return m  # a template at the start state; each instance gets a copy

    def matcher(self, compiled: Any) -> Any:
        # deep_copy keeps the compiled grammar (and the lexer states built lazily so far),
        # the way a server reuses one grammar for many sequences
        return compiled.deep_copy()

    def fill(self, m: Any) -> np.ndarray:
        m.unsafe_compute_mask_ptr(self._words.ctypes.data, self._words.nbytes)
        return self._words

    def advance(self, m: Any, token: int) -> bool:
        return bool(m.consume_token(token)) and not m.is_error()

    @property
    def eos_ids(self) -> tuple[int, ...]:
        return (int(self.tok.eos_token),)


class XGrammarAdapter(Adapter):
    """xgrammar in its default JSON configuration (as MaskBench ran it), one thread, no cache."""

    name = "xgrammar"

    def load(self) -> None:
        try:
            import xgrammar
        except ImportError as exc:
            raise EngineUnavailable(f"xgrammar is not installed ({exc})") from None
        self._xgr = xgrammar
        self.info = xgrammar.TokenizerInfo.from_huggingface(self.hf_tokenizer)
        self.compiler = xgrammar.GrammarCompiler(self.info, max_threads=1, cache_enabled=False)
        self._tensor = xgrammar.allocate_token_bitmask(1, self.info.vocab_size)
        self._words = self._tensor[0].numpy()

    def compile(self, schema: Any) -> Any:
        try:
            return self.compiler.compile_json_schema(json.dumps(schema))
        except (RuntimeError, ValueError, TypeError) as exc:
            raise CompileError(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)) from None

    def matcher(self, compiled: Any) -> Any:
        return self._xgr.GrammarMatcher(compiled)

    def fill(self, m: Any) -> np.ndarray:
        m.fill_next_token_bitmask(self._tensor, 0)
        return self._words

    def advance(self, m: Any, token: int) -> bool:
        return bool(m.accept_token(token))

    @property
    def eos_ids(self) -> tuple[int, ...]:
        return tuple(int(t) for t in self.info.stop_token_ids)


class OutlinesAdapter(Adapter):
    """outlines-core: schema -> one regex -> full (state x vocabulary) index; slow to compile."""

    name = "outlines"

    def load(self) -> None:
        try:
            import outlines_core
            from outlines_core.json_schema import build_regex_from_schema
        except ImportError as exc:
            raise EngineUnavailable(f"outlines-core is not installed ({exc})") from None
        self._oc = outlines_core
        self._build_regex = build_regex_from_schema
        v = self.vocab
        by_bytes: dict[bytes, list[int]] = {}
        for i, b in enumerate(v.all_token_bytes):
            if b:  # specials (None) and EOS are not text
                by_bytes.setdefault(b, []).append(i)
        self._eos = int(v.eos_token_ids[0])
        self.ocvocab = outlines_core.Vocabulary(self._eos, by_bytes)
        self._bitmask = np.zeros((len(v) + 31) // 32, dtype=np.int32)

    def compile(self, schema: Any) -> Any:
        try:
            regex = self._build_regex(json.dumps(schema))
            return self._oc.Index(regex, self.ocvocab)
        except (ValueError, TypeError, RuntimeError, KeyError) as exc:
            raise CompileError(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)) from None

    def matcher(self, compiled: Any) -> Any:
        return self._oc.Guide(compiled)

    def fill(self, m: Any) -> np.ndarray:
        m.write_mask_into(self._bitmask.ctypes.data, self._bitmask.size, 4)
        return self._bitmask

    def advance(self, m: Any, token: int) -> bool:
        try:
            m.advance(token)
        except ValueError:
            return False
        return True

    @property
    def eos_ids(self) -> tuple[int, ...]:
        return (self._eos,)


ADAPTERS: dict[str, type[Adapter]] = {
    "constrain": ConstrainAdapter,
    "constrain-strict": ConstrainStrictAdapter,
    "llguidance": LLGuidanceAdapter,
    "xgrammar": XGrammarAdapter,
    "outlines": OutlinesAdapter,
}


def parse_engines(spec: str) -> list[str]:
    """``"constrain,llguidance"`` -> names, checked against :data:`ENGINES`."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [n for n in names if n not in ADAPTERS]
    if bad or not names:
        raise ValueError(
            f"unknown engine(s) {', '.join(bad) or '(none given)'}; choose from {', '.join(ENGINES)}"
        )
    return list(dict.fromkeys(names))
