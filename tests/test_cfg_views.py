"""Truncated parser views as cache keys: masks stay exact when caches were warmed elsewhere.

:meth:`EarleyGrammar.view` cuts a node's origin graph ``k`` levels deep, and the CFG mask
walk is keyed by views (shared across contexts) with the completions that reach past the
horizon deferred to the real nodes.  A wrong key or a lost deferral shows up exactly when a
mask is served from work done for a *different* context, so every test here warms the
caches with other documents first, then compares with the brute-force per-token check.
Small view depths (1, 2) force many deferrals (and retries at a middle depth), the
default depth few.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import constrain
from constrain.cfg.earley import EarleyGrammar, HorizonReached
from constrain.cfg.generate import random_member
from constrain.engine.cfg_matcher import CompiledGrammar
from constrain.engine.reference import matcher_mask_by_checks
from constrain.vocab import Vocabulary

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"


def _grammar(name: str):
    return constrain.grammar((GRAMMARS / f"{name}.lark").read_text())


def _vocab() -> Vocabulary:
    """Short random tokens plus runs of closers that complete several levels at once."""
    rng = random.Random(7)
    alphabet = b' \t\n{}[]():,;"\\0123456789.-+eEabcfilnrstuxyz_*/%=<>!'
    toks: list[bytes | None] = [None]
    toks += [bytes([c]) for c in alphabet]
    for _ in range(300):
        toks.append(bytes(rng.choice(alphabet) for _ in range(rng.randint(2, 5))))
    toks += [b'{"', b'":', b'", "', b'"}', b'"}}', b'"}]', b"}}}", b"]]]", b"}]}", b'"]]}', b"1}}}}"]
    toks += [b"))", b")))", b"))))", b"1))", b"x)))", b"});", b"}}}}}"]
    return Vocabulary.from_token_bytes(list(dict.fromkeys(toks)), eos_token_ids=[0])


VOCAB = _vocab()


def _states(cg: CompiledGrammar, rng: random.Random, n: int) -> list:
    """Matchers after a random byte prefix of a random (often deeply nested) member."""
    out = []
    while len(out) < n:
        s = random_member(cg.parser, rng, max_depth=12, max_terminal_len=3)
        if not 0 < len(s) < 200:
            continue
        m = cg.matcher()
        m.advance_bytes(s[: rng.randrange(len(s) + 1)])
        out.append(m)
    return out


def _check(m, where: str) -> None:
    fast = m.mask()
    ref = matcher_mask_by_checks(m)
    diff = np.flatnonzero(fast != ref)
    assert not len(diff), (
        f"{where}: mask differs from brute force at {[VOCAB.token_bytes(int(t)) for t in diff[:8]]}"
    )


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(["json", "arithmetic", "c_like", "python_expr"]),
    depths=st.sampled_from([(1, None), (2, None), (3, None), (1, 3, None), (2, 5, None), (1, 3, 6, None), (1, 2, 4, None)]),
    seed=st.integers(0, 10**6),
)
def test_masks_after_other_contexts_warmed_the_caches(name: str, depths: tuple, seed: int) -> None:
    cg = CompiledGrammar(_grammar(name), VOCAB, view_depths=depths, cache_jobs=256, cache_masks=64)
    rng = random.Random(seed)
    for m in _states(cg, rng, 12):  # warm every cache with other documents
        m.mask()
    for i, m in enumerate(_states(cg, rng, 6)):
        _check(m, f"{name} depths {depths} seed {seed} state {i}")


def test_deep_closers_are_deferred_and_exact() -> None:
    """Inside deep JSON, ``"}}]``-like tokens need the real nodes: deferred, and still exact."""
    cg = CompiledGrammar(_grammar("json"), VOCAB, view_depths=(2, None))
    docs = ['{"a": {"b": [{"c": "x', '[[[{"k": [1, {"z": "', '{"a": {"b": {"c": {"d": 1']
    for d in docs:
        m = cg.matcher()
        m.advance_bytes(d.encode())
        _check(m, d)
    assert cg.stats["deferred"] > 0
    # the same local context under a different outer nesting reuses the view's walk
    hits = cg.stats["view_hits"]
    for d in ['[{"q": {"b": [{"c": "x', '{"a": [[{"b": [{"c": "x']:
        m = cg.matcher()
        m.advance_bytes(d.encode())
        _check(m, d)
    assert cg.stats["view_hits"] > hits


def test_masks_settled_on_deeper_views_are_shared_and_exact() -> None:
    """With views 1, 3 and 6 deep, what a mask's deferred closers add is remembered by the
    shallowest views that settle it, and a mask on too shallow views is marked so: another
    document nesting the same way gets the remembered mask (``resolved_hits``) or item
    (``item_hits``), and every mask still equals brute force."""
    from constrain.engine import cfg_matcher as cm

    cg = CompiledGrammar(_grammar("json"), VOCAB, view_depths=(1, 3, 6, None))
    # (outer contexts that agree a few levels up and differ further: ``]]]}``-like closers
    # pop past 3 levels, so a mask settled on 6-deep views must not serve a 3-deep key)
    outer = ["", '{"a": ', "[", "[[[", '{"q": [', '{"a": {"b": {"c": ', '[{"x": {"y": ']
    inner = ['{"b": [{"c": "x', '{"k": [1, 2', '{"z": {"w": tru', "[[[1", '[[{"m": nul', '{"w": {"v": 1']
    for o in outer:
        for i in inner:
            m = cg.matcher()
            m.advance_bytes((o + i).encode())
            _check(m, o + i)
    assert cg.stats["deferred"] > 0
    assert cg.stats["resolved_hits"] > 0 and cg.stats["item_hits"] > 0
    levels = {k[0] for k in cg._rmasks}
    assert levels <= {1, 2} and any(v is cm._DEEPER for v in cg._rmasks.values())
    assert any(v is not cm._DEEPER for v in cg._items.values())


def test_view_is_hash_consed_and_raises_past_its_horizon() -> None:
    eg = EarleyGrammar(_grammar("json"))
    p1 = eg.run(eg.start_pos(), b'{"a": {"b": {"c": 1')
    p2 = eg.run(eg.start_pos(), b'[{"x": [{"b": {"c": 1')
    assert p1 is not None and p2 is not None
    num = eg.term_index[next(n for n in eg.term_names if "NUMBER" in n)]
    (o1,) = {eg.node(o) for t, _, o in p1[0] if t == num}  # where the number started
    (o2,) = {eg.node(o) for t, _, o in p2[0] if t == num}
    assert o1 is not o2  # different real contexts...
    assert eg.view(o1, 2) is eg.view(o2, 2)  # ...that look the same two levels deep
    assert eg.view(o1, 8) is not eg.view(o2, 8)
    close = eg.term_index[next(n for n, t in eg.grammar.terminals.items() if t.literal == "}")]
    v = eg.view(o1, 2)
    y = eg.complete(frozenset({(v, num)}))  # the number ends: pair and members complete nearby
    with pytest.raises(HorizonReached):  # closing the object needs its origin, past the horizon
        eg.complete(frozenset({(y, close)}))
    real = eg.complete(frozenset({(eg.complete(frozenset({(o1, num)})), close)}))
    assert real.key  # the real nodes complete the same step fine


def test_view_depths_must_end_with_the_real_nodes() -> None:
    with pytest.raises(ValueError):
        CompiledGrammar(_grammar("json"), VOCAB, view_depths=(3, 8))
