"""Budget-aware completion: finish inside ``max_new_tokens`` with a complete, valid text.

Invariant kept by every sampler: with ``R`` tokens left *including the current step*, the
shortest completion ``d`` of the text so far satisfies ``d <= R`` (the vocabulary has every
single byte as a token, so ``d`` bytes need at most ``d`` tokens).  A token ``t`` keeps the
invariant iff the shortest completion after it is ``<= R - 1``; EOS keeps it iff the text
is complete.  Starting from ``d <= max_new_tokens`` a valid choice always exists (a byte on
a shortest path lowers ``d`` by one), so the output ends complete.  The check is lazy: the
samplers evaluate it only for tokens they draw, never for the whole vocabulary.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np

from constrain.errors import ConstrainError

if TYPE_CHECKING:
    from constrain.engine.matcher import Matcher


class BudgetTooSmall(ConstrainError):
    """``max_new_tokens`` is below the shortest possible completion of the constraint."""

    def __init__(self, needed: int, budget: int) -> None:
        super().__init__(
            f"max_new_tokens={budget} is too small: the shortest text satisfying the constraint "
            f"needs {needed} bytes (at worst one token per byte); raise max_new_tokens to at least {needed}"
        )
        self.needed = needed
        self.budget = budget


def require_budget(matcher: Matcher, max_new_tokens: int) -> None:
    """Raise :class:`BudgetTooSmall` when no output can fit (checked once, before decoding)."""
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    d = matcher.shortest_completion_bytes()
    if d > max_new_tokens:
        raise BudgetTooSmall(d, max_new_tokens)


_MAX_DIST: dict[int, tuple[object, int]] = {}


def _max_distance(dfa) -> int:
    """Largest shortest-completion distance of any DFA state (cached per DFA object)."""
    got = _MAX_DIST.get(id(dfa))
    if got is None or got[0] is not dfa:
        got = (dfa, int(np.asarray(dfa.distances).max(initial=0)))
        _MAX_DIST[id(dfa)] = got
    return got[1]


def _dfa_parts(matcher: Matcher):
    """(dfa, state) for the DFA matcher's cheap path, else None."""
    dfa = getattr(getattr(matcher, "compiled", None), "dfa", None)
    state = getattr(matcher, "state", None)
    if dfa is None or not isinstance(state, int | np.integer):
        return None
    return dfa, int(state)


def completion_after(matcher: Matcher, token_id: int) -> int:
    """Shortest completion (bytes) after advancing ``token_id``; the token must be allowed.

    DFA matchers answer from the table and the distance array; other matchers use
    ``advance(); shortest_completion_bytes(); rollback(1)`` (no copy).
    """
    eos = matcher.vocab.eos_token_ids
    if token_id in eos:
        return 0
    parts = _dfa_parts(matcher)
    if parts is not None and not matcher.is_terminated():
        dfa, state = parts
        s = dfa.run(state, matcher.vocab.token_bytes(token_id))
        return int(dfa.distances[s]) if s >= 0 else 1 << 30
    # advance + rollback on the matcher itself: no copy of its history (cheap for CFG states)
    matcher.advance(token_id)
    try:
        return matcher.shortest_completion_bytes()
    finally:
        matcher.rollback(1)


def fits(matcher: Matcher, token_id: int, remaining: int | None) -> bool:
    """Whether an *allowed* ``token_id`` keeps the budget invariant with ``remaining`` tokens left.

    ``remaining`` counts the current step; ``None`` means no budget.
    """
    if remaining is None:
        return True
    if token_id in matcher.vocab.eos_token_ids:
        return True  # EOS ends the text; it is allowed only when the text is complete
    parts = _dfa_parts(matcher)
    if parts is not None and remaining - 1 >= _max_distance(parts[0]):
        return True  # no DFA state is farther than the budget from acceptance
    return completion_after(matcher, token_id) <= remaining - 1


def budget_mask(matcher: Matcher, allowed: np.ndarray, remaining: int | None) -> np.ndarray:
    """``allowed`` restricted to the tokens that fit the budget (whole-vocabulary version).

    Used by the Hugging Face ``LogitsProcessor``, which must hand ``generate`` a full mask.
    DFA matchers are vectorised over the vocabulary with the target-state kernel (its
    per-token distances cached per state) and skipped entirely while ``remaining - 1``
    exceeds every state's distance; other matchers are
    checked token by token (only while the budget is within reach of the longest token).
    """
    if remaining is None:
        return allowed
    parts = _dfa_parts(matcher)
    if parts is not None:
        dfa, state = parts
        if remaining - 1 >= _max_distance(dfa):
            return allowed
        return allowed & (_target_distances(matcher, dfa, state) <= remaining - 1)
    out = allowed.copy()
    d = matcher.shortest_completion_bytes()
    longest = _longest_token(matcher)
    if remaining - 1 >= d + longest:
        # a cheap sufficient screen for generic matchers: documented as best effort, the
        # samplers' lazy check is exact
        return out
    for t in np.flatnonzero(allowed):
        if not fits(matcher, int(t), remaining):
            out[t] = False
    return out


_TARGET_DATA: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _vocab_arrays(vocab) -> tuple[np.ndarray, np.ndarray]:
    key = id(vocab)
    got = _TARGET_DATA.get(key)
    if got is None:
        toks = [vocab.token_bytes(i) for i in range(len(vocab))]
        offsets = np.zeros(len(toks) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(b) for b in toks])
        data = np.frombuffer(b"".join(toks), dtype=np.uint8).copy()
        got = (offsets, data)
        _TARGET_DATA[key] = got
    return got


_TARGET_DIST: OrderedDict[tuple[int, int, int], tuple[object, object, np.ndarray]] = OrderedDict()
_TARGET_DIST_BYTES = 32 << 20  # LRU bound: 256 states of a 128k vocabulary at one byte a token
_target_dist_bytes = 0


def _target_distances(matcher: Matcher, dfa, state: int) -> np.ndarray:
    """Per token: the shortest completion after it from ``state`` (0 for EOS, a value above
    every state's distance for a token the DFA rejects), cached per (DFA, vocabulary, state).

    It depends only on the state, so the budget mask of a state the decoding revisits is one
    comparison instead of a DFA run over every token of the vocabulary each step.  Stored in
    the smallest integer type above the DFA's largest distance (one byte a token for most
    constraints) so a whole decoding path's states fit the LRU bound: a bound smaller than
    the path (repeated runs through ~40 states with room for 32) missed on every step.
    Callers compare only while ``remaining - 1`` is below the largest distance.
    """
    global _target_dist_bytes
    vocab = matcher.vocab
    key = (id(dfa), id(vocab), state)
    got = _TARGET_DIST.get(key)
    if got is not None and got[0] is dfa and got[1] is vocab:
        _TARGET_DIST.move_to_end(key)
        return got[2]
    top = _max_distance(dfa)
    dtype = np.uint8 if top < 255 else np.int16 if top < 32767 else np.int32
    targets = _token_targets(matcher, state)
    td = np.full(len(targets), np.iinfo(dtype).max, dtype=dtype)
    live = targets >= 0
    td[live] = np.asarray(dfa.distances)[targets[live]]
    for e in vocab.eos_token_ids:
        td[e] = 0
    _TARGET_DIST[key] = (dfa, vocab, td)
    _target_dist_bytes += td.nbytes
    while _target_dist_bytes > _TARGET_DIST_BYTES and len(_TARGET_DIST) > 1:
        _, (_, _, old) = _TARGET_DIST.popitem(last=False)
        _target_dist_bytes -= old.nbytes
    return td


def clear_target_cache() -> None:
    """Drop the cached per-state budget distances (benchmarks of cold-cache masking)."""
    global _target_dist_bytes
    _TARGET_DIST.clear()
    _target_dist_bytes = 0


def _token_targets(matcher: Matcher, state: int) -> np.ndarray:
    from constrain.engine import kernels

    offsets, data = _vocab_arrays(matcher.vocab)
    out = np.empty(len(offsets) - 1, dtype=np.int32)
    kernels.dfa_token_targets(matcher.compiled.dfa.table, state, offsets, data, out)
    return out


def _longest_token(matcher: Matcher) -> int:
    offsets, _ = _vocab_arrays(matcher.vocab)
    return int(np.diff(offsets).max(initial=0))
