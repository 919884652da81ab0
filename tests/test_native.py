"""The C extension against the pure-Python paths it replaces.

``fill_mask`` (native/maskwriter.c): every test drives a matcher through random advances, EOS,
rollbacks and copies, and compares what the C cursor writes with ``CompiledDFA._fill_state``
(the Python reference) at each step.  ``block_max`` (native/propose.c): every SIMD path the
CPU has against numpy's per-block reduce, on any length, block, alignment, -inf and NaN.
``lazy_draws`` / ``lazy_propose``: the same draws as the pure-Python reference (and so as the
numba kernel) from the same uniforms, and AWRS decoding gives identical tokens and weights
with the extension and without it.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from constrain.automata import ByteDFA
from constrain.engine.dfa_matcher import CompiledDFA
from constrain.vocab import Vocabulary
from tests.lazy_cases import lazy_case

native = pytest.importorskip("constrain._native", reason="the C extension was not built (no compiler?)")


def _reference(m, words: int) -> np.ndarray:
    out = np.full(words, -7, dtype=np.int32)
    m.compiled._fill_state(-1 if m.terminated else m.pos, out)
    return out


@st.composite
def dfa_and_vocab(draw):
    n = draw(st.integers(1, 6))
    table = np.full((n, 256), -1, dtype=np.int32)
    for s in range(n):
        for b in (97, 98, 99):
            if draw(st.booleans()):
                table[s, b] = draw(st.integers(0, n - 1))
    acc = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    # enough tokens that some masks are dense and some sparse (more than 16 words)
    toks = draw(st.lists(st.binary(min_size=1, max_size=3), min_size=40, max_size=900))
    toks = [bytes(97 + (b % 3) for b in t) for t in toks] + [None]  # None: EOS
    return ByteDFA(table, acc, 0), Vocabulary.from_token_bytes(toks, eos_token_ids=[len(toks) - 1])


@settings(max_examples=150, deadline=None)
@given(data=st.data(), cache_states=st.sampled_from([1, 2, 4096]), precompute=st.booleans())
def test_c_fill_mask_equals_python_reference(data, cache_states, precompute):
    dfa, vocab = data.draw(dfa_and_vocab())
    if dfa.is_empty():
        return
    compiled = CompiledDFA(dfa, vocab, cache_states=cache_states, precompute=precompute)
    words = compiled.words
    matchers = [compiled.matcher()]
    assert matchers[0].fill_mask is not type(matchers[0]).fill_mask  # the C path is bound
    for _ in range(data.draw(st.integers(1, 25))):
        m = matchers[data.draw(st.integers(0, len(matchers) - 1))]
        got = np.full(words, 123, dtype=np.int32)
        m.fill_mask(got)
        np.testing.assert_array_equal(got, _reference(m, words))
        # uint32 buffers are filled too (same layout)
        got_u = np.zeros(words, dtype=np.uint32)
        m.fill_mask(got_u)
        np.testing.assert_array_equal(got_u.view(np.int32), got)
        action = data.draw(st.sampled_from(["advance", "rollback", "copy", "clear"]))
        if action == "advance" and not m.is_terminated():
            allowed = np.flatnonzero(m.mask())
            if len(allowed):
                m.advance(int(allowed[data.draw(st.integers(0, len(allowed) - 1))]))
        elif action == "rollback" and m.num_tokens():
            m.rollback(data.draw(st.integers(1, m.num_tokens())))
        elif action == "copy":
            matchers.append(m.copy())
        elif action == "clear":
            compiled.clear_cache()


def test_bitmasks_the_c_path_cannot_write_go_through_python(llama3_vocab):
    import torch

    from constrain import compile, regex

    compiled = compile(regex(r"[0-9]{2}-[a-z]+"), llama3_vocab)
    m = compiled.matcher()
    words = compiled.words
    want = _reference(m, words)
    strided = np.zeros((words, 2), dtype=np.int32)[:, 0]  # not contiguous
    m.fill_mask(strided)
    np.testing.assert_array_equal(strided, want)
    t = torch.zeros(words, dtype=torch.int32)  # no buffer protocol
    m.fill_mask(t)
    np.testing.assert_array_equal(t.numpy(), want)
    with pytest.raises(ValueError):  # wrong length: numpy's own error, as before
        m.fill_mask(np.zeros(words - 1, dtype=np.int32))
    ro = np.zeros(words, dtype=np.int32)
    ro.setflags(write=False)
    with pytest.raises(ValueError):
        m.fill_mask(ro)


def test_pickled_compiled_and_matcher_keep_the_c_path(llama3_vocab):
    from constrain import compile, regex

    compiled = compile(regex(r"(ab|cd)[0-9]+"), llama3_vocab)
    m = compiled.matcher()
    m.advance(llama3_vocab.encode("ab")[0])
    m2 = pickle.loads(pickle.dumps(m))
    assert m2.fill_mask is not type(m2).fill_mask
    got = np.zeros(compiled.words, dtype=np.int32)
    m2.fill_mask(got)
    np.testing.assert_array_equal(got, _reference(m, compiled.words))


def test_table_rejects_bad_entries():
    t = native.MaskTable(3, 4)
    with pytest.raises(IndexError):
        t.set_dense(3, np.zeros(4, dtype=np.int32))
    with pytest.raises(ValueError):
        t.set_dense(0, np.zeros(5, dtype=np.int32))
    with pytest.raises(TypeError):
        t.set_dense(0, np.zeros(4, dtype=np.int64))
    with pytest.raises(ValueError):
        t.set_sparse(0, np.array([4], dtype=np.int64), np.array([1], dtype=np.int32))
    with pytest.raises(ValueError):
        t.set_sparse(0, np.array([1, 2], dtype=np.int64), np.array([1], dtype=np.int32))
    t.set_sparse(1, np.array([2], dtype=np.int64), np.array([9], dtype=np.int32))
    assert len(t) == 1 and t.has(1) and not t.has(0) and not t.has(99)
    calls = []
    c = native.Cursor(t, lambda s, bm: calls.append(s), 0)
    out = np.ones(4, dtype=np.int32)
    c.fill_mask(out)  # state 0 missing: the fallback gets it
    assert calls == [0]
    c.state = 1
    c.fill_mask(out)
    assert out.tolist() == [0, 0, 9, 0]
    c.state = -1
    c.fill_mask(out)
    assert out.tolist() == [0, 0, 0, 0]
    c.state = 7
    with pytest.raises(IndexError):
        c.fill_mask(out)


def test_pure_python_path_when_turned_off(tmp_path):
    """CONSTRAIN_NO_NATIVE=1: matchers use the Python fill_mask, with the same masks."""
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from constrain.automata import ByteDFA\n"
        "from constrain.engine import dfa_matcher as dm\n"
        "from constrain.vocab import Vocabulary\n"
        "assert dm._native is None\n"
        "t = np.full((2, 256), -1, dtype=np.int32); t[0, 97] = 1; t[1, 98] = 1\n"
        "v = Vocabulary.from_token_bytes([b'a', b'b', b'ab', b'ba', None], eos_token_ids=[4])\n"
        "m = dm.CompiledDFA(ByteDFA(t, np.array([False, True]), 0), v).matcher()\n"
        "assert m.fill_mask.__func__ is dm.DFAMatcher.fill_mask\n"
        "out = np.zeros(1, dtype=np.int32); m.fill_mask(out); print(int(out[0]))\n"
        "m.advance(0); m.fill_mask(out); print(int(out[0]))\n"
    )
    env = dict(os.environ, CONSTRAIN_NO_NATIVE="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    # state 0: 'a' and 'ab'; state 1 (accepting): 'b' and EOS
    assert out.stdout.split() == [str(0b101), str(0b10010)]


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 3000),
    st.integers(1, 700),
    st.integers(0, 7),
    st.sampled_from(["normal", "ties", "neg_inf", "nan", "inf"]),
    st.integers(0, 2**31),
)
def test_block_max_every_simd_path_equals_numpy(n, block, offset, kind, seed):
    from constrain.sampling.core import block_max_reference

    rng = np.random.default_rng(seed)
    base = rng.normal(0, 3, size=n + 8).astype(np.float32)
    if kind == "ties":
        base = np.round(base).astype(np.float32)
    x = base[offset : offset + n]  # misaligned starts: the vector paths peel to alignment
    if n and kind == "neg_inf":
        x[rng.random(n) < 0.7] = -np.inf
    if n and kind == "nan":
        x[rng.integers(n)] = np.nan
    if n and kind == "inf":
        x[rng.integers(n)] = np.inf
    nb = -(-n // block)
    ref = np.full(nb, 7, dtype=np.float32)
    want = block_max_reference(x, block, ref) if n else -np.inf
    for path in native.simd_paths():
        out = np.full(nb, 7, dtype=np.float32)
        got = native.block_max(x, block, out, path)
        if kind == "nan" and n:
            assert np.isnan(got) and np.isnan(want), path
            nan_free = ~np.isnan(ref)  # numpy's block holding the NaN is NaN; C skips it
            assert np.array_equal(out[nan_free], ref[nan_free]), path
        else:
            assert got == want, path
            assert np.array_equal(out, ref), path


def test_block_max_rejects_bad_buffers():
    x = np.zeros(10, dtype=np.float32)
    with pytest.raises(TypeError, match="float32"):
        native.block_max(x.astype(np.float64), 4, np.empty(3, dtype=np.float32))
    with pytest.raises(ValueError, match="need 3"):
        native.block_max(x, 4, np.empty(2, dtype=np.float32))
    with pytest.raises(ValueError, match="block must be"):
        native.block_max(x, 0, np.empty(1, dtype=np.float32))
    with pytest.raises(ValueError, match="no block_max path"):
        native.block_max(x, 4, np.empty(3, dtype=np.float32), "neon")
    with pytest.raises(ValueError, match="contiguous"):
        native.block_max(np.zeros(20, dtype=np.float32)[::2], 4, np.empty(3, dtype=np.float32))


@settings(max_examples=150, deadline=None)
@given(
    st.integers(min_value=1, max_value=2500),
    st.sampled_from([1, 7, 64, 256, 4096]),
    st.floats(min_value=0.0, max_value=12.0),
    st.floats(min_value=0.0, max_value=10.0),
    st.integers(min_value=0, max_value=2**31),
)
def test_c_lazy_draws_and_propose_equal_the_reference(n, block, peak, head, seed):
    from constrain.sampling.core import block_max_reference
    from constrain.sampling.kernels import counter_uniforms, lazy_draws_reference

    c = lazy_case(n, block, peak, seed)
    x, us, limit, rng = c.x, c.us, c.limit, c.rng
    nb = len(c.bm)
    bm = np.empty(nb, dtype=np.float32)
    mx = block_max_reference(x, block, bm)
    assert np.array_equal(bm, c.bm) and mx == c.mx
    k = len(us)
    want = lazy_draws_reference(x, bm, mx, mx - head, block, us, limit)
    scanned = sum(1 for b in bm if b >= mx - head) <= limit
    head_mass = math.fsum(math.exp(float(v) - mx) for v in x if v >= mx - head)

    out = np.full(k, -7, dtype=np.int64)
    got, hm = native.lazy_draws(x, bm, mx, mx - head, block, us, out, limit)
    assert out[:got].tolist() == want and (out[got:] == -7).all()
    assert hm == pytest.approx(head_mass, rel=1e-12) if scanned else math.isnan(hm)

    bm2 = np.full(nb, 7, dtype=np.float32)
    out2 = np.full(k, -7, dtype=np.int64)
    mx2, got2, hm2 = native.lazy_propose(x, block, head, us, bm2, out2, limit)
    assert mx2 == mx and np.array_equal(bm2, bm)
    assert out2[:got2].tolist() == want and (out2[got2:] == -7).all()
    assert hm2 == pytest.approx(head_mass, rel=1e-12) if scanned else math.isnan(hm2)

    # seeded mode: the counter-based stream computed in C equals counter_uniforms in numpy
    seed = int(rng.integers(0, 2**63)) * 2 + int(rng.integers(0, 2))
    tries = us.shape[1]
    want_seeded = lazy_draws_reference(
        x, bm, mx, mx - head, block, counter_uniforms(seed, (k, tries, 3)), limit
    )
    out3 = np.full(k, -7, dtype=np.int64)
    got3, _ = native.lazy_draws(x, bm, mx, mx - head, block, (seed, tries), out3, limit)
    assert out3[:got3].tolist() == want_seeded
    out4 = np.full(k, -7, dtype=np.int64)
    _, got4, _ = native.lazy_propose(x, block, head, (seed, tries), np.empty(nb, np.float32), out4, limit)
    assert out4[:got4].tolist() == want_seeded


def test_lazy_propose_reports_nan_and_all_minus_inf_without_drawing():
    us = np.random.default_rng(0).random((2, 4, 3))
    x = np.zeros(50, dtype=np.float32)
    x[7] = np.nan
    mx, got, _ = native.lazy_propose(x, 16, 8.0, us, np.empty(4, np.float32), np.empty(2, np.int64), 4)
    assert math.isnan(mx) and got == 0
    x[:] = -np.inf
    mx, got, _ = native.lazy_propose(x, 16, 8.0, us, np.empty(4, np.float32), np.empty(2, np.int64), 4)
    assert mx == -math.inf and got == 0
    with pytest.raises(ValueError, match="shape"):
        native.lazy_draws(x, np.empty(4, np.float32), 0.0, -8.0, 16, us[0], np.empty(2, np.int64), 4)
    with pytest.raises(ValueError, match="out holds"):
        native.lazy_draws(x, np.empty(4, np.float32), 0.0, -8.0, 16, us, np.empty(1, np.int64), 4)
    with pytest.raises(TypeError, match="int64"):
        native.lazy_draws(x, np.empty(4, np.float32), 0.0, -8.0, 16, us, np.empty(2, np.int32), 4)
    with pytest.raises(TypeError, match="seed, tries"):
        native.lazy_draws(x, np.empty(4, np.float32), 0.0, -8.0, 16, (1.5, 3), np.empty(2, np.int64), 4)


def test_counter_uniforms_are_uniform():
    from scipy.stats import kstest

    from constrain.sampling.kernels import counter_uniforms

    u = counter_uniforms(2**64 - 1, (200_000,))
    assert u.min() >= 0.0 and u.max() < 1.0
    assert kstest(u, "uniform").pvalue > 1e-4
    # consecutive seeds give unrelated streams (the next fill's seed is the next raw draw)
    a, b = counter_uniforms(41, (50_000,)), counter_uniforms(42, (50_000,))
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.03


@pytest.mark.parametrize("method", ["awrs", "smc"])
def test_awrs_decoding_is_identical_with_and_without_the_extension(monkeypatch, method):
    """Same seed, same tokens and weights: the C proposal consumes the same uniforms and makes
    the same draws as the numpy + numba path."""
    import constrain
    import constrain.sampling.core as core
    from constrain.sampling import run
    from constrain.sampling.toy import NGramLM, ToyDecoder

    toks = [bytes([97 + i % 4]) * (1 + i % 3) for i in range(600)] + [None]
    vocab = Vocabulary.from_token_bytes(toks, eos_token_ids=(600,))
    compiled = constrain.compile(constrain.regex(r"(ab|cd|a+)*d"), vocab)
    lm = NGramLM.random(len(vocab), np.random.default_rng(3), alpha=0.3)

    def decode():
        return [
            (r.tokens, r.log_weights.tolist())
            for r in (
                run(ToyDecoder(lm), compiled, method=method, n=4, max_new_tokens=12, seed=s) for s in range(6)
            )
        ]

    with_c = decode()
    monkeypatch.setattr(core, "_native", None)
    assert decode() == with_c


@pytest.mark.parametrize("method", ["awrs", "smc"])
def test_dfa_fast_step_is_identical_to_the_checker_path(monkeypatch, method):
    """The decoding loop takes a DFA row's AWRS step in C (``Cursor.try_pair`` for two valid
    draws, ``Cursor.queued`` for a step with rejections); with that path turned off every step
    goes through the Checker and awrs_sample.  Same seed, same tokens, weights, tokens and
    rejections -- with a budget that binds (the regex needs 7 more bytes after its ``d``) so
    both rules are exercised, and with a count of Checkers proving the C path was taken."""
    import constrain
    import constrain.sampling.smc as smc
    from constrain.sampling import run
    from constrain.sampling.toy import NGramLM, ToyDecoder

    toks = [bytes([97 + i % 4]) * (1 + i % 3) for i in range(600)] + [None]
    vocab = Vocabulary.from_token_bytes(toks, eos_token_ids=(600,))
    compiled = constrain.compile(constrain.regex(r"(ab|cd|a+)*d[ab]{6}"), vocab)
    lm = NGramLM.random(len(vocab), np.random.default_rng(5), alpha=0.3)
    made = []
    queued = []  # the loop's own draws with rejections: C queued steps while the C path is on

    class Counted(smc.Checker):
        def __init__(self, *a, **k):
            made.append(1)
            super().__init__(*a, **k)

    def draw(token, log_z, rejections, used_mask):
        queued.append(rejections)
        return Draw(token, log_z, rejections, used_mask)

    def decode():
        made.clear()
        out = []
        steps = 0
        for s in range(8):
            r = run(ToyDecoder(lm), compiled, method=method, n=3, max_new_tokens=14, seed=s)
            out.append((r.tokens, r.log_weights.tolist(), r.stats.tokens, r.stats.rejections))
            steps += r.stats.steps
            # one row: no verdicts shared between rows, so every count must agree too
            r1 = run(ToyDecoder(lm), compiled, method=method, n=1, max_new_tokens=14, seed=s)
            st1 = r1.stats
            out.append((r1.tokens, st1.checks, st1.cache_hits, st1.budget_checks, st1.rejections, st1.masks))
        return out, steps, len(made)

    Draw = smc.Draw
    monkeypatch.setattr(smc, "Checker", Counted)
    monkeypatch.setattr(smc, "Draw", draw)
    fast, steps, checkers = decode()
    assert sum(o[2] for o in fast[::2]) > 100
    assert checkers < steps / 2  # most steps never built a Checker
    assert sum(r > 0 for r in queued) >= 10  # and steps with rejections were answered in C
    monkeypatch.setattr(smc, "_PAIR_FAST", False)
    slow, steps_slow, checkers_slow = decode()
    assert checkers_slow >= steps_slow  # (the comparison path really is the Checker's)
    assert slow == fast


def _dfa_case(seed: int, precompute: bool, size: int = 300):
    """A vocabulary of ``size`` short tokens over four letters (then EOS and a special token), a
    regex DFA, a matcher at a random reachable state and logits with a few boosted tokens.  A
    large vocabulary with a boost of 11 puts about half the mass in the tail (more than HEAD
    below the maximum), where the estimate's draw then lands."""
    import constrain

    g = np.random.default_rng(seed)
    toks = [bytes(g.integers(97, 101, size=int(g.integers(1, 4))).tolist()) for _ in range(size)] + [
        None,
        None,
    ]
    vocab = Vocabulary.from_token_bytes(toks, eos_token_ids=(size,))
    compiled = constrain.compile(
        constrain.regex(r"(ab|cd|a+)*d[ab]{3}(c|dd)?"), vocab, precompute=precompute, cache_states=64
    )
    m = compiled.matcher()
    for _ in range(int(g.integers(0, 8))):
        ok = [t for t in range(size) if m.check(t)]
        if not ok:
            break
        m.advance(int(g.choice(ok)))
    if g.random() < 0.5:
        compiled.state_mask(m.pos)  # the state's mask held (else verdicts come from the table)
    x = g.normal(0, 1, len(vocab)).astype(np.float32)
    x[g.choice(len(vocab), size=int(g.integers(1, 4)), replace=False)] += np.float32(
        g.choice([0.0, 6.0, 9.0])
    )
    valid = [t for t in range(min(size, 400)) if m.check(t)]
    if valid and g.random() < 0.6:  # a model that mostly agrees: answered steps, not only declines
        x[int(g.choice(valid))] += np.float32(g.choice([9.0, 11.0]))
    return g, vocab, compiled, m, x


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), precompute=st.booleans(), max_rejects=st.integers(1, 5))
def test_cursor_queued_is_awrs_queued_with_the_checker(seed, precompute, max_rejects):
    """``Cursor.queued`` against awrs_queued with the sampling Checker on the same DFA state and
    the same queued draws: the same answer (token, log weight, rejections) or the same None,
    the same statistics, and on None the same verdicts in the same order (what the loop hands
    on to awrs_sample).  The budget binds in about half the cases."""
    from constrain.sampling import Proposal
    from constrain.sampling.awrs import PSI_ESTIMATE_MAX, awrs_queued
    from constrain.sampling.budget import _max_distance
    from constrain.sampling.core import Checker, first_fill
    from constrain.sampling.stats import SamplingStats

    g, vocab, compiled, m, x = _dfa_case(seed, precompute)
    bm = np.empty(-(-len(x) // Proposal.EBLOCK), dtype=np.float32)
    out = np.empty(Proposal.LAZY_BATCH, dtype=np.int64)
    mx, got, hm = first_fill(x, np.random.default_rng(seed), bm, out)
    max_dist = _max_distance(compiled.dfa)
    remaining = int(g.integers(1, max_dist + 3))
    rem_c = remaining if remaining <= max_dist else -1
    stats = SamplingStats()
    chk = Checker(m, remaining, stats, {})
    py = awrs_queued(out[:got].tolist(), x, mx, hm, chk, max_rejects)
    q = m._cursor.queued(out, got, x, mx, hm, rem_c, max_rejects, PSI_ESTIMATE_MAX, Proposal.HEAD)
    assert (stats.checks, stats.cache_hits, stats.budget_checks, chk.budget_rejected) == (
        q[3],
        q[4],
        q[5],
        q[6],
    )
    if py is None:
        assert q[0] is None
        assert list(zip(q[1], q[2], strict=True)) == list(chk._verdicts.items())
    else:
        assert q[:3] == py


def test_cursor_queued_answers_every_kind_of_step():
    """Seeded DFA states with two valid and one invalid token in the head over a 20,000-token
    tail of about the same mass: C answers steps whose first draw is rejected -- with the estimate's
    draw in the head (estimate below 1) and in the tail (estimate 1) -- and steps whose second
    draw is, and declines others; every one equal to awrs_queued with the Checker."""
    from constrain.sampling import Proposal
    from constrain.sampling.awrs import PSI_ESTIMATE_MAX, awrs_queued
    from constrain.sampling.core import Checker, first_fill
    from constrain.sampling.stats import SamplingStats

    kinds = {
        "x0 rejected, estimate below 1": 0,
        "x0 rejected, estimate 1": 0,
        "x1 rejected": 0,
        "declined": 0,
    }
    _, vocab, compiled, _, _ = _dfa_case(0, False, 20000)
    for seed in range(400):
        g = np.random.default_rng(seed)
        m = compiled.matcher()
        for _ in range(int(g.integers(0, 6))):
            ok = [t for t in range(400) if m.check(t)]
            if ok:
                m.advance(int(g.choice(ok)))
        valid = [t for t in range(400) if m.check(t)]
        invalid = [t for t in range(400) if not m.check(t)]
        if len(valid) < 2 or not invalid:
            continue
        # a head of three tokens in one envelope block, and a tail whose tokens all sit just
        # more than HEAD below them but hold about as much mass together
        x = g.uniform(-9.0, -8.6, len(vocab)).astype(np.float32)
        x[g.choice(valid, size=2, replace=False)] = g.uniform(-0.1, 0.1, 2)
        x[int(g.choice(invalid))] = g.uniform(-0.1, 0.1)
        bm = np.empty(-(-len(x) // Proposal.EBLOCK), dtype=np.float32)
        out = np.empty(Proposal.LAZY_BATCH, dtype=np.int64)
        mx, got, hm = first_fill(x, np.random.default_rng(seed), bm, out)
        chk = Checker(m, None, SamplingStats(), {})
        py = awrs_queued(out[:got].tolist(), x, mx, hm, chk, 8)
        q = m._cursor.queued(out, got, x, mx, hm, -1, 8, PSI_ESTIMATE_MAX, Proposal.HEAD)
        if py is None:
            assert q[0] is None
            kinds["declined"] += 1
            continue
        assert q[:3] == py
        if py[2] and m.check(int(out[0])):
            kinds["x1 rejected"] += 1
        elif py[2]:
            tail = math.isclose(py[1], -math.log(py[2] + 1))
            kinds["x0 rejected, estimate 1" if tail else "x0 rejected, estimate below 1"] += 1
    assert min(kinds.values()) >= 10, kinds


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), precompute=st.booleans())
def test_cursor_try_pair_and_next_state_are_the_matchers(seed, precompute):
    """``try_pair``: both draws valid (the matcher's check) and within the budget
    (completion_after < remaining) -> the pair and the state after the first, the cursor moved
    there; a clear bit -> -2; the budget refusing -> -3; no held mask -> -1, cursor unmoved.
    ``next_state``: ByteDFA.run over the token's bytes (-2 for EOS, -1 for a special token)."""
    from constrain.sampling.budget import _max_distance, completion_after

    g, vocab, compiled, m, _ = _dfa_case(seed, precompute)
    cur = m._cursor
    for t in range(len(vocab)):
        b = vocab.token_bytes(t)
        want = -2 if t in vocab.eos_token_ids else (compiled.dfa.run(m.pos, b) if b else -1)
        assert cur.next_state(t) == want
    with pytest.raises(IndexError):
        cur.next_state(len(vocab))
    max_dist = _max_distance(compiled.dfa)
    for _ in range(40):
        t0, t1 = (int(v) for v in g.integers(0, len(vocab), size=2))
        remaining = int(g.integers(1, max_dist + 3))
        rem_c = remaining if remaining <= max_dist else -1
        held = compiled._native.has(m.pos)
        before = cur.state
        r = cur.try_pair(np.array([t0, t1], dtype=np.int64), rem_c)
        if not held:
            assert r == -1 and cur.state == before
            continue
        bits = m.check(t0) and m.check(t1)
        fits = rem_c < 0 or (completion_after(m, t0) < remaining and completion_after(m, t1) < remaining)
        if not bits:
            assert r == -2
        elif not fits:
            assert r == -3
        else:
            nx = -1 if t0 in vocab.eos_token_ids else compiled.dfa.run(m.pos, vocab.token_bytes(t0))
            assert r == (t0, t1, nx)
            assert cur.state == (before if nx < 0 else nx)
            cur.state = before  # (the matcher did not move: put the cursor back)
            continue
        assert cur.state == before


class _RecordingCheck:
    """A constraint given as a set of valid tokens; records every call (order included)."""

    def __init__(self, valid: set[int], n: int) -> None:
        self.valid = valid
        self.n = n
        self.calls: list[int] = []

    def __call__(self, t: int) -> bool:
        self.calls.append(t)
        return t in self.valid

    def mask(self) -> np.ndarray:
        m = np.zeros(self.n, dtype=bool)
        m[list(self.valid)] = True
        return m

    def fits_budget(self, t: int) -> bool:
        return True


def _queued_case(
    seed: int, n: int, density: float, boost: float, max_rejects: int, favs: int = 1, fav_valid: float = 1.0
):
    """awrs_queued and awrs_sample on the same proposal right after its C first fill.

    ``favs`` boosted tokens, each valid with probability ``fav_valid``: a rejected favourite
    drives the rejected-mass bound past 1/2 (where AWRS leaves the queue for Gumbel keys);
    with a large boost the tail sits outside the head (the estimate's draw then misses it)."""
    from constrain.sampling import Proposal, awrs_sample
    from constrain.sampling.awrs import awrs_queued

    g = np.random.default_rng(seed)
    x = g.normal(0, 1, n).astype(np.float32)
    fav = g.choice(n, size=favs, replace=False)
    x[fav] += np.float32(boost)
    valid = set(np.flatnonzero(g.random(n) < density).tolist())
    valid |= {int(f) for f in fav if g.random() < fav_valid}
    rng = np.random.default_rng(seed + 1)
    prop = Proposal(x, rng=rng)
    queue = list(reversed(prop._ready))  # the draws in the order draw() hands them out
    mx, hm = float(prop._mx), prop.head_mass
    ref_chk, fast_chk = _RecordingCheck(valid, n), _RecordingCheck(valid, n)
    before = rng.bit_generator.state
    d = awrs_sample(prop, ref_chk, rng, max_rejects=max_rejects)
    fast = awrs_queued(queue, x, mx, hm, fast_chk, max_rejects)
    return d, fast, ref_chk.calls, fast_chk.calls, rng.bit_generator.state == before


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.sampled_from([50, 9000, 40000]),
    density=st.sampled_from([0.02, 0.5, 0.9]),
    boost=st.sampled_from([0.0, 9.0, 12.0, 14.0]),
    max_rejects=st.integers(1, 5),
    favs=st.integers(1, 3),
    fav_valid=st.sampled_from([0.5, 1.0]),
)
def test_awrs_queued_is_awrs_sample_on_the_queued_draws(
    seed, n, density, boost, max_rejects, favs, fav_valid
):
    """Where awrs_queued answers, it is awrs_sample's answer: the same token, log weight and
    rejections, the same checks in the same order, and awrs_sample itself drew nothing beyond
    the queue (the generator untouched)."""
    d, fast, ref_calls, fast_calls, untouched = _queued_case(
        seed, n, density, boost, max_rejects, favs, fav_valid
    )
    if fast is None:
        return
    assert fast == (d.token, d.log_z, d.rejections)
    assert not d.used_mask and untouched
    assert fast_calls == ref_calls


def test_awrs_queued_answers_the_steps_with_rejections():
    """The specialisation is not vacuous: over seeded cases it answers steps whose first draw
    is rejected (with the estimate's draw in the head and out of it), steps whose second is,
    and declines others (queue exhausted, Gumbel keys, mask mode)."""
    kinds = {"x0 rejected": 0, "x1 rejected": 0, "estimate below 1": 0, "estimate 1": 0, "declined": 0}
    for seed in range(600):
        d, fast, _, calls, _ = _queued_case(
            seed, 40000, 0.5, 11.0, 4, 1 + seed % 2, (1.0, 0.5)[seed % 3 == 0]
        )
        if fast is None:
            kinds["declined"] += 1
        elif d.rejections and calls[0] == fast[0]:
            kinds["x1 rejected"] += 1
        elif d.rejections:
            kinds["x0 rejected"] += 1
            # log_z = log(1 - psi_hat) - log(n + 1): psi_hat is 0 when the estimate missed the head
            kinds["estimate 1" if math.isclose(fast[1], -math.log(fast[2] + 1)) else "estimate below 1"] += 1
    # (deterministic: seeded generators and the same draws on every SIMD path)
    assert min(kinds.values()) >= 5, kinds


@pytest.mark.parametrize("bit_generator", [np.random.PCG64, np.random.MT19937, np.random.Philox, np.random.SFC64])
def test_first_fill_from_the_generator_capsule_is_first_fill_from_random_raw(bit_generator):
    """The decoding loop hands first_fill its generator's capsule (raw_source) so the C call
    takes the raw draw itself: the same draws, maxima and head mass as drawing random_raw() in
    Python, and the generator left in the same state, for every numpy bit generator."""
    from constrain.sampling.core import Proposal, first_fill, raw_source

    x = np.random.default_rng(0).normal(size=50_000).astype(np.float32)
    x[[77, 5000, 40000]] += np.float32([14.0, 13.5, 13.0])
    bm = np.empty(-(-len(x) // Proposal.EBLOCK), np.float32)
    o1, o2 = np.empty(8, np.int64), np.empty(8, np.int64)
    r1, r2 = np.random.Generator(bit_generator(5)), np.random.Generator(bit_generator(5))
    src = raw_source(r2)
    seen = set()
    for _ in range(30):
        a = first_fill(x, r1, bm, o1)
        b = first_fill(x, src, bm, o2, Proposal._limit_for(len(bm)))
        assert a == b and a[1] == 8 and o1.tolist() == o2.tolist()
        seen.update(o1.tolist())
    assert seen >= {77, 5000, 40000}  # (the draws vary with the raw values)
    assert r1.bit_generator.random_raw(3).tolist() == r2.bit_generator.random_raw(3).tolist()


# ---- native/cfgwords.c: the CFG matcher's word helpers --------------------------------------
@settings(max_examples=150, deadline=None)
@given(
    words=st.integers(1, 300),
    picks=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 2**32 - 1)), max_size=60),
    seed=st.integers(0, 2**31),
)
def test_c_or_sparse_and_copy_words_equal_numba_and_numpy(words, picks, seed):
    from constrain.engine.cfg_kernels import or_sparse

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 2**32, size=words, dtype=np.uint32)
    idx = np.array([i % words for i, _ in picks], dtype=np.int32)  # (repeats included)
    vals = np.array([v for _, v in picks], dtype=np.uint32)
    ref, got = base.copy(), base.copy()
    or_sparse(ref, idx, vals)
    native.or_sparse(got, idx, vals)
    assert np.array_equal(got, ref)
    dst = np.zeros(words, dtype=np.int32)  # (a bitmask: int32 words, written from uint32 ones)
    native.copy_words(dst, got)
    assert np.array_equal(dst.view(np.uint32), got)


def test_c_word_helpers_reject_bad_buffers():
    w = np.zeros(4, dtype=np.uint32)
    with pytest.raises(IndexError, match="out of range"):
        native.or_sparse(w, np.array([4], dtype=np.int32), np.array([1], dtype=np.uint32))
    with pytest.raises(IndexError, match="out of range"):
        native.or_sparse(w, np.array([-1], dtype=np.int32), np.array([1], dtype=np.uint32))
    with pytest.raises(ValueError, match="entries"):
        native.or_sparse(w, np.array([0, 1], dtype=np.int32), np.array([1], dtype=np.uint32))
    with pytest.raises(TypeError, match="4-byte"):
        native.or_sparse(w, np.array([0], dtype=np.int64), np.array([1], dtype=np.uint32))
    with pytest.raises(ValueError, match="words"):
        native.copy_words(w, np.zeros(5, dtype=np.uint32))
    with pytest.raises((TypeError, BufferError, ValueError)):
        native.copy_words(w[::2], np.zeros(2, dtype=np.uint32))  # (not contiguous)
    ro = np.zeros(4, dtype=np.uint32)
    ro.flags.writeable = False
    with pytest.raises((TypeError, BufferError, ValueError)):
        native.copy_words(ro, w)


def test_cfg_fill_mask_copes_with_bitmasks_the_c_path_cannot_write(llama3_vocab):
    """A strided or wrong-length bitmask goes through numpy: same mask, or numpy's own error."""
    import constrain
    from constrain.engine.cfg_matcher import CompiledGrammar
    from constrain.engine.matcher import allocate_bitmask

    m = CompiledGrammar(constrain.grammar('start: "a" "b"+'), llama3_vocab).matcher()
    want = allocate_bitmask(len(llama3_vocab))
    m.fill_mask(want)
    assert want.any()
    wide = np.zeros((len(want), 2), dtype=np.int32)
    m.fill_mask(wide[:, 0])  # (a column: not contiguous)
    assert np.array_equal(wide[:, 0], want)
    with pytest.raises(ValueError):
        m.fill_mask(np.zeros(len(want) + 1, dtype=np.int32))


class _Rec:
    __slots__ = ("a", "b")

    def __init__(self, a: object) -> None:
        self.a = a

    @property
    def twice(self) -> object:
        return self.a * 2

    def __repr__(self) -> str:
        return f"_Rec({self.a!r})"


def test_record_type_is_its_slots_class_without_cyclic_gc_tracking():
    import gc
    import sys

    Rec = native.record_type("tests.Rec", _Rec.__slots__, dict(vars(_Rec)))
    r, ref = Rec(3), _Rec(3)
    assert not gc.is_tracked(r) and gc.is_tracked(ref)
    assert (r.a, r.twice, repr(r)) == (ref.a, ref.twice, "_Rec(3)")
    for obj in (r, ref):
        with pytest.raises(AttributeError):
            obj.b  # noqa: B018 (unset, like a slot)
        with pytest.raises(AttributeError):
            obj.c = 1
    # a dict of them is untracked too, which is why the parser's memos stop costing collections
    d = {i: Rec(i) for i in range(5)}
    gc.collect()
    assert not gc.is_tracked(d)
    # freeing a chain far longer than the C stack would allow recursively; the type's
    # reference count comes back (every instance held it once)
    before = sys.getrefcount(Rec)
    prev = None
    for i in range(300_000):
        prev = Rec(i) if prev is None else _link(Rec, i, prev)
    assert sys.getrefcount(Rec) == before + 300_000
    del prev
    assert sys.getrefcount(Rec) == before


def _link(cls, i, prev):
    r = cls(i)
    r.b = (prev,)
    return r


def test_record_type_rejects_bad_fields():
    with pytest.raises(ValueError, match="1 to 64 fields"):
        native.record_type("x.R", (), {})
    with pytest.raises(TypeError, match="fields must be str"):
        native.record_type("x.R", (1,), {})
    with pytest.raises(TypeError):
        native.record_type("x.R", ["a"], {})


def test_earley_nodes_are_untracked_and_still_parse(llama3_vocab):
    import gc

    import constrain
    from constrain.cfg.earley import Node
    from constrain.engine.cfg_matcher import CompiledGrammar

    assert not gc.is_tracked(Node())
    g = constrain.grammar('start: "[" [item ("," item)*] "]"\nitem: start | /[0-9]+/')
    m = CompiledGrammar(g, llama3_vocab).matcher()
    assert m.accepts_prefix_bytes(b"[[1,[2]],3")
    assert not m.accepts_prefix_bytes(b"[[1,]")


def test_c_built_node_tables_are_untracked_and_parsers_free_without_the_cyclic_gc():
    import gc
    import weakref

    import constrain
    from constrain.cfg.earley import EarleyGrammar

    g = constrain.grammar('start: "[" [item ("," item)*] "]"\nitem: start | /[0-9]+/\n%ignore " "')
    p = EarleyGrammar(g)
    assert p.accelerated
    pos = p.run(p.start_pos(), b"[[1, [2]], ")
    assert pos is not None and p.run(pos, b"3]") is not None
    nodes = list(p._nodes.values())
    assert len(nodes) > 3
    for n in nodes:  # (what the C core builds holds ints and nodes only: nothing to trace)
        for part in (n.items, n.origins, n.waiting, n.key, n.expected, *n.items, *n.key, *n.waiting.values()):
            assert not gc.is_tracked(part), (n, part)
    # the parser and its C core refer to each other only weakly: reference counting frees
    # them (a cycle left every parser's memos to a gen-2 pause inside a later fill_mask)
    ref = weakref.ref(p)
    was = gc.isenabled()
    gc.disable()
    try:
        del p, nodes, pos
        assert ref() is None
    finally:
        if was:
            gc.enable()


# ---- native/earley.c: the Earley item-set primitives ------------------------------------------

_EARLEY_GRAMMARS = {
    # nullable rules, left and right recursion, ambiguity, ignored text, terminals that are
    # prefixes of one another: what build_node's closure and complete's seeds must get right
    "tricky": """
        start: s
        s: s s | "(" s ")" | a | "x" | "xx"
        a: | "a" a | b "y"
        b: a | "z"
        %ignore " "
    """,
    "list": 'start: "[" [item ("," item)*] "]"\nitem: start | /[0-9]+/ | "-" item\n%ignore /[ \\n]+/',
}


def _earley_pair(name: str):
    from pathlib import Path

    import constrain
    from constrain.cfg.earley import EarleyGrammar

    grammars = Path(__file__).resolve().parent.parent / "grammars"
    text = (grammars / f"{name}.lark").read_text() if name not in _EARLEY_GRAMMARS else _EARLEY_GRAMMARS[name]
    g = constrain.grammar(text)
    fast, ref = EarleyGrammar(g), EarleyGrammar(g, accelerate=False)
    assert fast.accelerated and not ref.accelerated
    return fast, ref


def _canon(eg, node, memo: dict) -> object:
    """A node's structure with origins replaced by their own structure (uids differ between
    the two parsers, and item order may follow set iteration order)."""
    if node is eg.horizon:
        return 0  # (the horizon)
    got = memo.get(node.uid)
    if got is None:
        items = tuple(
            sorted((p, d, -1 if k < 0 else _canon(eg, node.origins[k], memo)) for p, d, k in node.items)
        )
        waiting = tuple(sorted((s, len(v)) for s, v in node.waiting.items()))
        got = memo[node.uid] = hash((items, waiting, node.accepting, node.expected, node.key))
    return got


@pytest.mark.parametrize("name", ["json", "arithmetic", "sql", "smiles", "c_like", "python_expr", "tricky", "list"])
@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_earley_core_equals_the_python_reference(name, seed):
    """Byte by byte through random members and mutations: the same positions, nodes, views
    (1-4 levels) and completions on those views (or HorizonReached in both)."""
    import random

    from constrain.cfg.earley import HorizonReached
    from constrain.cfg.generate import random_member

    fast, ref = _earley_pair(name)
    rng = random.Random(seed)
    mf: dict = {}
    mr: dict = {}

    def pos_canon(eg, pos, memo):
        entries = tuple(sorted((t, q, _canon(eg, eg.node(o), memo)) for t, q, o in pos[0]))
        return entries, (_canon(eg, eg.node(pos[1]), memo) if pos[1] else None)

    def outcome(eg, node, t, memo):
        try:
            return _canon(eg, eg.complete([(node, t)]), memo)
        except HorizonReached:
            return "horizon"

    for _ in range(3):
        s = random_member(ref, rng, max_depth=8, max_terminal_len=3)
        if rng.random() < 0.5 and s:  # a mutation: most become dead somewhere
            i = rng.randrange(len(s))
            s = s[:i] + bytes([rng.choice(b"()[],x a0-")]) + s[i + 1 :]
        pf, pr = fast.start_pos(), ref.start_pos()
        for b in s[:120]:
            pf, pr = fast.step(pf, b), ref.step(pr, b)
            assert pos_canon(fast, pf, mf) == pos_canon(ref, pr, mr)
            if not pr[0] and not ref.accepting(pr):
                break
            if pr[1]:
                nf, nr = fast.node(pf[1]), ref.node(pr[1])
                for k in (1, 2, 4):
                    vf, vr = fast.view(nf, k), ref.view(nr, k)
                    assert _canon(fast, vf, mf) == _canon(ref, vr, mr)
                    assert fast.view(nf, k) is vf  # (hash-consed)
                    for t in nr.expected:
                        assert outcome(fast, vf, t, mf) == outcome(ref, vr, t, mr)
        assert fast.accepting(pf) == ref.accepting(pr)


def test_earley_core_rejects_bad_input_with_typed_errors():
    fast, _ = _earley_pair("json")
    with pytest.raises(TypeError, match="parser Node"):
        fast.complete([(object(), 0)])
    with pytest.raises(ValueError, match="out of range"):
        fast.complete([(fast.root, fast.n_terminals)])
    with pytest.raises(TypeError, match="pairs"):
        fast.complete([fast.root])
    with pytest.raises(ValueError, match="production and dot"):
        fast.build_node([(len(fast.prods), 0, None)])
    with pytest.raises(TypeError, match="parser Node"):
        fast.view("root", 2)


def test_earley_core_does_not_keep_its_parser_alive():
    """The core refers back to its parser (DFA start states are built lazily) and takes part
    in the cyclic GC, so a compiled grammar dropped by a long benchmark run is freed."""
    import gc
    import weakref

    fast, _ = _earley_pair("json")
    fast.complete([(fast.root, 0)])
    gone = weakref.ref(fast)
    del fast
    gc.collect()
    assert gone() is None
