"""The Matcher contract: what every constraint kind (regex, CFG, JSON Schema, query) implements.

Two objects, as in xgrammar: a :class:`CompiledConstraint` (constraint + vocabulary, built
once, shareable, holds caches) and per-sequence :class:`Matcher` states made from it.
Samplers and integrations depend only on this module, never on grammar internals, so any
constraint kind works with every sampler.

Conventions every implementation keeps:

* Token ids are ``0 <= id < len(vocab)``; anything else raises :class:`TokenOutOfRange`.
* An EOS id is allowed exactly when :meth:`Matcher.is_accepting` is true (the text so far
  is a complete match).  Advancing with EOS *terminates* the matcher: afterwards nothing is
  allowed, ``is_terminated()`` is true, and ``rollback(1)`` undoes it.
* Special (non-text) tokens other than EOS are never allowed.
* ``fill_mask`` writes the xgrammar/llguidance layout: int32 words, ``ceil(V / 32)`` of them,
  bit ``t % 32`` of word ``t // 32`` set when token ``t`` is allowed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np

from constrain.errors import InvalidTokenError, TokenOutOfRange

if TYPE_CHECKING:
    from constrain.vocab import Vocabulary


def bitmask_words(vocab_size: int) -> int:
    """Number of int32 words in a token bitmask for ``vocab_size`` tokens."""
    return (vocab_size + 31) // 32


def allocate_bitmask(vocab_size: int, batch: int | None = None) -> np.ndarray:
    """A zeroed int32 bitmask (``(words,)`` or ``(batch, words)``)."""
    shape = (bitmask_words(vocab_size),) if batch is None else (batch, bitmask_words(vocab_size))
    return np.zeros(shape, dtype=np.int32)


def bitmask_to_bool(bitmask: np.ndarray, vocab_size: int) -> np.ndarray:
    """Unpack an int32 bitmask to a bool array of length ``vocab_size``."""
    bits = np.unpackbits(np.ascontiguousarray(bitmask).view(np.uint8), bitorder="little")
    return bits[:vocab_size].astype(bool)


def bool_to_bitmask(mask: np.ndarray) -> np.ndarray:
    """Pack a bool array into the int32 bitmask layout."""
    n = bitmask_words(len(mask))
    padded = np.zeros(n * 32, dtype=bool)
    padded[: len(mask)] = mask
    return np.packbits(padded, bitorder="little").view(np.int32).copy()


class CompiledConstraint(ABC):
    """A constraint compiled against one vocabulary; makes fresh :class:`Matcher` states."""

    vocab: Vocabulary

    @abstractmethod
    def matcher(self) -> Matcher:
        """A matcher at the start of the language."""


class Matcher(ABC):
    """Incremental state of one sequence under a constraint.

    Subclasses implement the abstract methods; the helpers below are shared.
    """

    compiled: CompiledConstraint

    # ---- the contract -------------------------------------------------------------------
    @abstractmethod
    def fill_mask(self, bitmask: np.ndarray) -> None:
        """Overwrite ``bitmask`` (int32, ``ceil(V/32)`` words) with the allowed tokens."""

    @abstractmethod
    def check(self, token_id: int) -> bool:
        """Whether ``token_id`` is allowed next; cheap (no full mask), used by rejection sampling."""

    @abstractmethod
    def advance(self, token_id: int) -> None:
        """Consume ``token_id``; raises :class:`InvalidTokenError` if it is not allowed."""

    @abstractmethod
    def rollback(self, n: int = 1) -> None:
        """Undo the last ``n`` advanced tokens (EOS included)."""

    @abstractmethod
    def copy(self) -> Matcher:
        """An independent matcher in the same state (history included, so it can roll back)."""

    @abstractmethod
    def is_accepting(self) -> bool:
        """True when the text so far is a complete member of the language (EOS allowed)."""

    @abstractmethod
    def is_terminated(self) -> bool:
        """True after EOS was advanced."""

    @abstractmethod
    def accepts_prefix_bytes(self, data: bytes) -> bool:
        """Whether the text so far followed by ``data`` is still a viable prefix (no state change)."""

    @abstractmethod
    def shortest_completion_bytes(self) -> int:
        """Fewest bytes that complete the text so far into the language (0 when accepting).

        Lets samplers finish within a token budget: the caller knows how much room the
        constraint still needs.  Implementations may return a lower bound when the exact
        value is expensive, never an over-estimate.
        """

    @abstractmethod
    def num_tokens(self) -> int:
        """Number of tokens advanced so far (the depth ``rollback`` can undo)."""

    # ---- shared helpers -----------------------------------------------------------------
    @property
    def vocab(self) -> Vocabulary:
        return self.compiled.vocab

    def mask(self) -> np.ndarray:
        """Allowed tokens as a bool array of length ``len(vocab)``."""
        bm = allocate_bitmask(len(self.vocab))
        self.fill_mask(bm)
        return bitmask_to_bool(bm, len(self.vocab))

    def allowed_tokens(self) -> np.ndarray:
        """Ids of the allowed tokens (sorted)."""
        return np.flatnonzero(self.mask())

    def advance_many(self, token_ids) -> None:
        for t in token_ids:
            self.advance(int(t))

    def accepts_text(self, text: str | bytes) -> bool:
        """Whether the text so far followed by ``text`` is a *complete* member (tests, debugging).

        Works on bytes, independent of tokenisation, and leaves this matcher unchanged.
        """
        data = text.encode("utf-8") if isinstance(text, str) else text
        return self._accepts_complete_bytes(data)

    @abstractmethod
    def _accepts_complete_bytes(self, data: bytes) -> bool:
        """Implementation of :meth:`accepts_text` on raw bytes."""

    def _check_range(self, token_id: int) -> None:
        n = self.compiled.vocab.size
        if not 0 <= token_id < n:
            raise TokenOutOfRange(token_id, n)

    def _raise_invalid(self, token_id: int) -> None:
        raise InvalidTokenError(token_id)


class HistoryMatcher(Matcher):
    """A matcher whose whole state is one immutable value ``pos`` plus the stack of earlier ones.

    Regex matchers (a DFA state) and grammar matchers (a persistent parser position) both work
    this way, so rollback is a pop and copy is a list copy; this class holds that shared part.
    """

    pos: Any
    history: list[Any]
    terminated: bool

    def _push(self, new_pos: Any) -> None:
        self.history.append(self.pos)
        self.pos = new_pos

    def _terminate(self) -> None:
        """Record an advanced EOS (rollback(1) undoes it)."""
        self.history.append(self.pos)
        self.terminated = True

    def rollback(self, n: int = 1) -> None:
        if n < 0 or n > len(self.history):
            raise ValueError(f"cannot roll back {n} tokens; {len(self.history)} were advanced")
        for _ in range(n):
            self.terminated = False
            self.pos = self.history.pop()

    def copy(self) -> HistoryMatcher:
        m = type(self).__new__(type(self))
        m.compiled = self.compiled
        m.pos = self.pos
        m.history = list(self.history)
        m.terminated = self.terminated
        return m

    def is_terminated(self) -> bool:
        return self.terminated

    def num_tokens(self) -> int:
        return len(self.history)
