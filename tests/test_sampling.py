"""Exactness of the samplers on enumerable toy language models with real regex matchers.

AWRS must sample the locally constrained distribution exactly (chi-square), its weight must
be an unbiased (properly weighted) estimate of the local normaliser Z (Monte Carlo against
the exact Z, and exact rational enumeration of the estimator on small draw trees), and SMC
must approach the global posterior where token masking provably does not.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2

import constrain
from constrain.errors import ConstrainError
from constrain.sampling import (
    BudgetTooSmall,
    Checker,
    Proposal,
    SamplingStats,
    awrs_sample,
    budget_mask,
    fits,
    greedy_sample,
    lcd_sample,
    run,
)
from constrain.sampling.awrs import lazy_order
from constrain.sampling.smc import ess, multinomial_resample, systematic_resample
from constrain.sampling.toy import (
    NGramLM,
    ToyDecoder,
    enumerate_language,
    total_variation,
    weighted_distribution,
)
from tests.lazy_cases import lazy_case

TOKENS = [b"a", b"b", b"c", b"d", b"ab", b"cd", b"abc", b"x", None]
EOS = 8


def toy_vocab() -> constrain.Vocabulary:
    return constrain.Vocabulary.from_token_bytes(TOKENS, eos_token_ids=(EOS,))


def chi_square_ok(counts: np.ndarray, probs: np.ndarray, alpha: float = 1e-3) -> tuple[bool, float, float]:
    """Pearson chi-square of ``counts`` against ``probs`` (cells with p=0 must be empty)."""
    n = counts.sum()
    assert counts[probs == 0].sum() == 0, "a token with zero target probability was sampled"
    keep = probs > 0
    exp = probs[keep] * n
    stat = float(((counts[keep] - exp) ** 2 / exp).sum())
    crit = float(chi2.ppf(1 - alpha, keep.sum() - 1)) if keep.sum() > 1 else 0.0
    return stat <= crit, stat, crit


def states(compiled, prefixes):
    out = []
    for pre in prefixes:
        m = compiled.matcher()
        m.advance_many(pre)
        out.append(m)
    return out


# ---- AWRS: exact local distribution and unbiased Z ---------------------------------------------


@pytest.mark.parametrize("max_rejects", [64, 1])
def test_awrs_token_frequencies_match_local_constrained_distribution(max_rejects):
    vocab = toy_vocab()
    compiled = constrain.compile(constrain.regex(r"(ab|cd)*x?"), vocab)
    rng = np.random.default_rng(1234)
    lm = NGramLM.random(len(vocab), np.random.default_rng(7))
    for m, ctx in zip(states(compiled, [[], [0], [4], [5, 7]]), [[], [0], [4], [5, 7]], strict=True):
        p = lm.probs(ctx)
        valid = np.array([m.check(t) for t in range(len(vocab))])
        if not valid.any():
            continue
        g = np.where(valid, p, 0) / p[valid].sum()
        counts = np.zeros(len(vocab))
        n = 3000
        for _ in range(n):
            d = awrs_sample(Proposal(lm.logits(ctx)), Checker(m), rng, max_rejects=max_rejects)
            counts[d.token] += 1
        ok, stat, crit = chi_square_ok(counts, g)
        assert ok, f"prefix {ctx}: chi-square {stat:.1f} > {crit:.1f}"


@pytest.mark.parametrize("max_rejects", [64, 2, 1])
def test_awrs_weight_is_unbiased_for_local_z(max_rejects, capsys):
    """Mean of Z_hat over many draws equals the exact Z; also E[Z_hat 1{x}] = p(x) c(x)."""
    vocab = toy_vocab()
    compiled = constrain.compile(constrain.regex(r"a(b|c)d?x?"), vocab)
    rng = np.random.default_rng(99)
    report = []
    for seed in range(4):
        lm = NGramLM.random(len(vocab), np.random.default_rng(seed), alpha=0.7)
        for m, ctx in zip(states(compiled, [[], [0]]), [[], [0]], strict=True):
            p = lm.probs(ctx)
            valid = np.array([m.check(t) for t in range(len(vocab))])
            z = float(p[valid].sum())
            n = 4000
            zs = np.empty(n)
            joint = np.zeros(len(vocab))
            for i in range(n):
                d = awrs_sample(Proposal(lm.logits(ctx)), Checker(m), rng, max_rejects=max_rejects)
                zs[i] = math.exp(d.log_z)
                joint[d.token] += zs[i]
            se = zs.std() / math.sqrt(n)
            report.append((seed, ctx, z, zs.mean(), zs.var()))
            assert abs(zs.mean() - z) <= 4.5 * se + 1e-9, f"E[Z_hat]={zs.mean():.4f} vs Z={z:.4f} (se {se:.4f})"
            # proper weighting, token by token
            target = np.where(valid, p, 0)
            assert np.all(np.abs(joint / n - target) <= 5 * zs.std() / math.sqrt(n) + 1e-3)
    with capsys.disabled():
        print(f"\nAWRS Z_hat (max_rejects={max_rejects}): seed, prefix, exact Z, mean Z_hat, variance")
        for row in report:
            print("  ", row[0], row[1], f"{row[2]:.4f} {row[3]:.4f} {row[4]:.5f}")


class _NarrowHeadProposal(Proposal):
    """A head of 1.5 nats: on a small vocabulary most rejected draws then fall in the tail,
    where AWRS estimates the rejected mass instead of building the full softmax.  (The
    envelope is then loose: more rounds per draw keep the lazy sampler from giving up.)"""

    __slots__ = ()
    HEAD = 1.5
    LAZY_TRIES = 400


def _tail_case():
    n = 1200
    toks = [(b"a" if i % 3 == 0 else b"b") + str(i).encode() for i in range(n)] + [None]
    vocab = constrain.Vocabulary.from_token_bytes(toks, eos_token_ids=(n,))
    m = constrain.compile(constrain.regex(r"a[0-9]+"), vocab).matcher()
    logits = np.random.default_rng(5).normal(0, 1, size=n + 1).astype(np.float32)
    logits[3] += 3.0  # a likely valid token
    logits[4] += 3.5  # and a likelier invalid one (in the head)
    valid = np.array([m.check(t) for t in range(n + 1)])
    p = np.exp(logits.astype(np.float64) - logits.max())
    return m, logits, float(p[valid].sum() / p.sum())


def _z_hats(m, logits, draws: int, seed: int) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng(seed)
    zs = np.empty(draws)
    estimated = 0
    for i in range(draws):
        prop = _NarrowHeadProposal(logits)
        d = awrs_sample(prop, Checker(m), rng)
        zs[i] = math.exp(d.log_z)
        estimated += d.rejections > 0 and not prop.materialized
    return zs, estimated


def test_awrs_estimated_rejected_mass_keeps_z_unbiased(monkeypatch, capsys):
    """Without the full softmax, trace 0's rejected mass is estimated from one extra draw; Z_hat
    stays unbiased.  Leaving out the correction (treating the head's mass as the normaliser)
    is visibly biased on the same draws: the test has the power to see a wrong estimator."""
    m, logits, z = _tail_case()
    n = 6000
    zs, estimated = _z_hats(m, logits, n, 11)
    se = zs.std() / math.sqrt(n)
    with capsys.disabled():
        print(f"\nAWRS estimated-psi path: Z={z:.4f} mean Z_hat={zs.mean():.4f} var={zs.var():.5f} "
              f"estimated on {estimated}/{n} draws")
    assert estimated > n // 4, "the estimator path was not exercised"
    assert abs(zs.mean() - z) <= 4.5 * se


def test_estimated_one_minus_psi_is_conditionally_unbiased(monkeypatch):
    """For a fixed rejected set, the estimated ``1 - psi0`` averages to the exact value (what
    makes Z_hat unbiased); treating the head's mass as the normaliser would not, and that is
    detected on the same state."""
    from constrain.sampling.awrs import _Trace

    m, logits, _ = _tail_case()
    prop = _NarrowHeadProposal(logits)
    rng = np.random.default_rng(3)
    prop.draw(rng)
    assert not prop.materialized and prop.head_mass >= 1.0
    trace = _Trace(prop, Checker(m), rng, 32)
    tail = [t for t in range(len(logits) - 1) if not m.check(t) and not prop.in_head(t)]
    for t in tail:
        if trace.wr + prop.unnormalised(t) > 0.4 * prop.head_mass:  # inside the estimator's range
            break
        trace._rejected(t)
    assert len(trace.rej) >= 5
    p = np.exp(logits.astype(np.float64) - logits.max())
    exact = 1 - p[sorted(trace.rej)].sum() / p.sum()
    n = 20000
    est = np.array([trace.one_minus_psi() for _ in range(n)])
    assert not prop.materialized, "the estimate must not build the full softmax"
    se = est.std() / math.sqrt(n)
    assert 0 < se and abs(est.mean() - exact) <= 4.5 * se
    monkeypatch.setattr(_NarrowHeadProposal, "in_head", lambda self, t: True)
    wrong = np.array([trace.one_minus_psi() for _ in range(200)])
    assert abs(wrong.mean() - exact) > 100 * se


def _sequences(p: list[Fraction], items: list[int]):
    """All without-replacement draw orders of ``items`` under ``p``, with their probabilities."""
    for perm in itertools.permutations(items):
        prob = Fraction(1)
        left = sum(p[i] for i in items)
        for i in perm:
            prob *= p[i] / left
            left -= p[i]
        yield perm, prob


def two_trace_expectation(p: list[Fraction], valid: list[bool]) -> list[Fraction]:
    """Exact E[Z_hat * 1{x0 = x}] for every x under the two-trace estimator (rationals)."""
    out = [Fraction(0)] * len(p)
    everything = list(range(len(p)))
    for order0, pr0 in _sequences(p, everything):
        k = next(i for i, t in enumerate(order0) if valid[t])
        x0, rej0 = order0[k], order0[:k]
        psi0 = sum(p[t] for t in rej0)
        rest = [t for t in everything if t not in rej0]
        for order1, pr1 in _sequences(p, rest):
            n1 = next(i for i, t in enumerate(order1) if valid[t])
            out[x0] += pr0 * pr1 * (1 - psi0) / (len(rej0) + n1 + 1)
    return out


@pytest.mark.parametrize(
    "p,valid",
    [
        ([Fraction(1, 2), Fraction(1, 2)], [True, False]),
        ([Fraction(1, 5), Fraction(3, 10), Fraction(1, 2)], [False, True, False]),
        ([Fraction(1, 6), Fraction(1, 3), Fraction(1, 4), Fraction(1, 4)], [True, False, True, False]),
        ([Fraction(1, 10), Fraction(2, 10), Fraction(3, 10), Fraction(4, 10)], [False, False, False, True]),
    ],
)
def test_two_trace_estimator_exact_rational_enumeration(p, valid):
    """The estimator AWRS implements is properly weighted, exactly: E[Z_hat 1{x}] = p(x) c(x)."""
    got = two_trace_expectation(p, valid)
    assert got == [pi if v else Fraction(0) for pi, v in zip(p, valid, strict=True)]


def test_naive_three_trace_estimator_is_biased_by_exact_enumeration():
    """A naive third trace (same formula, shared rejected set) is biased: 7/16 instead of 1/2."""
    p = [Fraction(1, 2), Fraction(1, 2)]
    valid = [True, False]
    total = Fraction(0)
    for order0, pr0 in _sequences(p, [0, 1]):
        k = next(i for i, t in enumerate(order0) if valid[t])
        rej = set(order0[:k])
        psi = sum(p[t] for t in rej)
        n = k
        # two more traces, each extending the shared rejected set
        def extend(rej, pr, n, depth, psi=psi):
            if depth == 0:
                return pr * (1 - psi) / (n + 1)
            rest = [t for t in (0, 1) if t not in rej]
            acc = Fraction(0)
            for order, prx in _sequences(p, rest):
                j = next(i for i, t in enumerate(order) if valid[t])
                acc += extend(rej | set(order[:j]), pr * prx, n + j, depth - 1, psi)
            return acc
        total += extend(rej, pr0, n, 2)
    assert total == Fraction(7, 16)


def test_exact_z_fallback_would_bias_the_two_trace_estimator():
    """Why mask mode finishes the walk instead of returning the exact Z after max_rejects:
    stopping after one rejection with the exact Z gives E = 5/8, not 1/2 (p = 1/2, 1/2)."""
    p = [Fraction(1, 2), Fraction(1, 2)]
    valid = [True, False]
    z = Fraction(1, 2)
    total = Fraction(0)
    for order0, pr0 in _sequences(p, [0, 1]):
        if not valid[order0[0]]:  # first draw rejected: the naive fallback returns the exact Z
            total += pr0 * z
            continue
        for order1, pr1 in _sequences(p, [0, 1]):
            n1 = next(i for i, t in enumerate(order1) if valid[t])
            total += pr0 * pr1 / (n1 + 1)
    assert total == Fraction(5, 8)


def test_implementation_matches_exact_draw_tree_distribution():
    """The (token, number of rejections) pairs our code produces follow the exact law."""
    vocab = constrain.Vocabulary.from_token_bytes([b"a", b"b", b"c", b"d", None], eos_token_ids=(4,))
    compiled = constrain.compile(constrain.regex(r"[ac]"), vocab)
    m = compiled.matcher()
    probs = [Fraction(1, 10), Fraction(2, 10), Fraction(3, 10), Fraction(3, 10), Fraction(1, 10)]
    probs = [x / sum(probs) for x in probs]
    valid = [m.check(t) for t in range(5)]
    law: Counter = Counter()
    for order0, pr0 in _sequences(probs, list(range(5))):
        k = next(i for i, t in enumerate(order0) if valid[t])
        rest = [t for t in range(5) if t not in order0[:k]]
        for order1, pr1 in _sequences(probs, rest):
            n1 = next(i for i, t in enumerate(order1) if valid[t])
            law[(order0[k], k + n1)] += pr0 * pr1
    keys = sorted(law)
    expected = np.array([float(law[k]) for k in keys])
    logits = np.log(np.array([float(x) for x in probs]))
    rng = np.random.default_rng(5)
    counts = Counter()
    n = 6000
    for _ in range(n):
        d = awrs_sample(Proposal(logits), Checker(m), rng)
        counts[(d.token, d.rejections)] += 1
    assert set(counts) <= set(keys)
    ok, stat, crit = chi_square_ok(np.array([counts[k] for k in keys], dtype=float), expected)
    assert ok, f"chi-square {stat:.1f} > {crit:.1f}"


# ---- SMC vs masking on a provably biased example ----------------------------------------------


def biased_example():
    """The model prefers 'a' (0.9) but after 'a' only 'c' (0.01) is valid; after 'b' most is."""
    vocab = constrain.Vocabulary.from_token_bytes([b"a", b"b", b"c", b"d", None], eos_token_ids=(4,))
    compiled = constrain.compile(constrain.regex(r"ac|b[a-d]"), vocab)
    lm = NGramLM(
        5,
        {
            (): [0.9, 0.1, 0, 0, 0],
            (0,): [0.4, 0.3, 0.01, 0.28, 0.01],
            (1,): [0.2, 0.2, 0.25, 0.25, 0.1],
        },
        default=[0.02, 0.02, 0.02, 0.04, 0.9],
    )
    return vocab, compiled, lm


def test_smc_approaches_global_posterior_while_masking_does_not(capsys):
    _, compiled, lm = biased_example()
    post, lcd_exact, _ = enumerate_language(lm, compiled, 4)
    assert post[(0, 2, 4)] < 0.2 and lcd_exact[(0, 2, 4)] > 0.85  # the example is biased for masking
    seeds = range(4)
    tvs = {}
    for n in (10, 100, 1000):
        tv = [
            total_variation(
                weighted_distribution(run(ToyDecoder(lm), compiled, method="smc", n=n, max_new_tokens=4, seed=s)),
                post,
            )
            for s in seeds
        ]
        tvs[n] = float(np.mean(tv))
    r = run(ToyDecoder(lm), compiled, method="lcd", n=2000, max_new_tokens=4, seed=0)
    c = Counter(tuple(p.tokens) for p in r.particles)
    lcd_tv = total_variation({k: v / 2000 for k, v in c.items()}, post)
    # masking samples its own distribution exactly ...
    assert total_variation({k: v / 2000 for k, v in c.items()}, lcd_exact) < 0.05
    with capsys.disabled():
        print("\nTV to the exact global posterior (mean of 4 seeds):")
        for n, tv in tvs.items():
            print(f"   SMC-AWRS {n:5d} particles: {tv:.3f}")
        print(f"   token masking (2000 samples): {lcd_tv:.3f}")
    # ... which is far from the posterior, while SMC converges to it
    assert lcd_tv > 0.6
    assert tvs[1000] < 0.1
    assert tvs[1000] < tvs[100] < tvs[10]


def test_smc_log_ml_estimates_probability_of_the_language():
    _, compiled, lm = biased_example()
    _, _, z = enumerate_language(lm, compiled, 4)
    # one run's estimate has a standard deviation of ~25% of z: 40 runs put the 15% tolerance
    # at ~4 standard errors (10 runs left it at ~2, a coin flip away from a false alarm)
    est = [math.exp(run(ToyDecoder(lm), compiled, method="smc", n=200, max_new_tokens=4, seed=s).log_ml) for s in range(40)]
    assert abs(np.mean(est) - z) < 0.15 * z


def test_smc_groups_are_independent_runs():
    _, compiled, lm = biased_example()
    r = run(ToyDecoder(lm), compiled, method="smc", n=40, groups=4, max_new_tokens=4, seed=3)
    assert len(r.chosen) == 4 and len(r.log_ml_groups) == 4
    for g, i in enumerate(r.chosen):
        assert g * 10 <= i < (g + 1) * 10
        assert compiled.matcher().accepts_text(r.particles[i].text)


def test_potential_restricts_the_posterior():
    """An extra potential (a validator forbidding 'c') gives the posterior restricted to it."""
    _, compiled, lm = biased_example()
    post, _, _ = enumerate_language(lm, compiled, 4)
    restricted = {k: v for k, v in post.items() if 2 not in k}
    zr = sum(restricted.values())
    restricted = {k: v / zr for k, v in restricted.items()}

    def no_c(text: bytes) -> float:
        return -math.inf if b"c" in text else 0.0

    tvs = []
    for s in range(4):
        r = run(ToyDecoder(lm), compiled, method="smc", n=500, max_new_tokens=4, seed=s, potential=no_c)
        dist = weighted_distribution(r)
        assert all(2 not in k for k in dist)
        tvs.append(total_variation(dist, restricted))
    assert np.mean(tvs) < 0.1


# ---- budget-aware completion, dead ends, greedy, processing -----------------------------------


def test_budget_forces_completion_and_reports_too_small():
    vocab = toy_vocab()
    compiled = constrain.compile(constrain.regex(r"a[bc]*d"), vocab)
    # a model that never wants to stop: 'b' and 'c' dominate, 'd' and EOS are rare
    lm = NGramLM(len(vocab), {}, default=[0.01, 0.5, 0.45, 0.001, 0.01, 0.01, 0.01, 0.01, 0.001])
    for method in ("lcd", "awrs", "smc"):
        for seed in range(5):
            for budget in (2, 3, 7):
                r = run(ToyDecoder(lm), compiled, method=method, n=3 if method == "smc" else 1,
                        max_new_tokens=budget, seed=seed)
                assert len(r.tokens) <= budget
                assert compiled.matcher().accepts_text(r.text), (method, seed, budget, r.text)
    with pytest.raises(BudgetTooSmall, match="max_new_tokens=1 is too small"):
        run(ToyDecoder(lm), compiled, method="awrs", max_new_tokens=1, seed=0)


def test_budget_rule_fast_path_matches_reference():
    """The DFA fast path of ``fits`` and the vectorised ``budget_mask`` agree with copy/advance."""
    vocab = toy_vocab()
    compiled = constrain.compile(constrain.regex(r"(ab|cd){2,4}x|abcx"), vocab)
    for pre in ([], [0], [4], [4, 5], [0, 1, 2]):
        m = compiled.matcher()
        try:
            m.advance_many(pre)
        except ConstrainError:
            continue
        allowed = m.mask()
        for remaining in range(0, 12):
            ref = np.zeros(len(vocab), dtype=bool)
            for t in np.flatnonzero(allowed):
                if t == EOS:
                    ref[t] = True
                    continue
                m2 = m.copy()
                m2.advance(int(t))
                ref[t] = m2.shortest_completion_bytes() <= remaining - 1
                assert fits(m, int(t), remaining) == ref[t]
            assert np.array_equal(budget_mask(m, allowed, remaining), ref)


def test_budget_mask_with_distances_beyond_one_byte():
    """Distances >= 255 are cached in a wider integer type (no wrap-around)."""
    vocab = toy_vocab()
    compiled = constrain.compile(constrain.regex(r"(ab){140}x|cd"), vocab)
    for pre in ([], [4], [4] * 10):
        m = compiled.matcher()
        m.advance_many(pre)
        allowed = m.mask()
        for remaining in (1, 3, 250, 262, 270, 279, 280, 281):
            ref = np.zeros(len(vocab), dtype=bool)
            for t in np.flatnonzero(allowed):
                m2 = m.copy()
                m2.advance(int(t))
                ref[t] = t == EOS or m2.shortest_completion_bytes() <= remaining - 1
            assert np.array_equal(budget_mask(m, allowed, remaining), ref), (pre, remaining)


def test_dead_end_gives_zero_weight_not_a_crash():
    # after 'a' the regex needs 'c', which no token provides
    vocab = constrain.Vocabulary.from_token_bytes([b"a", b"b", None], eos_token_ids=(2,))
    compiled = constrain.compile(constrain.regex(r"ac|b"), vocab)
    m = compiled.matcher()
    m.advance(0)
    rng = np.random.default_rng(0)
    prop = Proposal(np.zeros(3, dtype=np.float32))
    d = awrs_sample(prop, Checker(m), rng)
    assert d.token is None and d.log_z == -math.inf
    assert lcd_sample(prop, Checker(m), rng).token is None
    assert greedy_sample(prop, Checker(m)).token is None
    lm = NGramLM(3, {(): [0.5, 0.5, 0.0]}, default=[0.3, 0.3, 0.4])
    r = run(ToyDecoder(lm), compiled, method="smc", n=50, max_new_tokens=3, seed=1)
    dead = [p for p in r.particles if not p.alive]
    assert r.stats.dead_particles > 0 or all(p.tokens[0] == 1 for p in r.particles)
    assert all(p.log_weight == -math.inf for p in dead)
    assert r.text == "b"
    # budget off: a single AWRS sample that walks into the dead end raises a typed error
    lm_a = NGramLM(3, {(): [1.0, 0.0, 0.0]}, default=[0.3, 0.3, 0.4])
    with pytest.raises(ConstrainError, match="dead end"):
        run(ToyDecoder(lm_a), compiled, method="awrs", max_new_tokens=3, seed=1)


def test_greedy_agrees_between_masking_and_awrs():
    vocab = toy_vocab()
    compiled = constrain.compile(constrain.regex(r"(ab|cd)+x"), vocab)
    for seed in range(5):
        lm = NGramLM.random(len(vocab), np.random.default_rng(seed))
        a = run(ToyDecoder(lm), compiled, method="lcd", greedy=True, max_new_tokens=8, seed=0)
        b = run(ToyDecoder(lm), compiled, method="awrs", greedy=True, max_new_tokens=8, seed=0)
        c = run(ToyDecoder(lm), compiled, method="awrs", greedy=True, max_new_tokens=8, seed=0, max_rejects=1)
        assert a.tokens == b.tokens == c.tokens
        assert compiled.matcher().accepts_text(a.text)


def test_temperature_top_k_top_p_are_applied_before_the_constraint():
    logits = np.log(np.array([0.05, 0.4, 0.3, 0.15, 0.1], dtype=np.float32))
    p = Proposal(logits, top_k=2)
    assert np.flatnonzero(p.weights).tolist() == [1, 2]
    p = Proposal(logits, top_p=0.75)
    assert np.flatnonzero(p.weights).tolist() == [1, 2, 3]
    p = Proposal(logits, temperature=0.5)
    q = np.array([0.05, 0.4, 0.3, 0.15, 0.1]) ** 2
    assert np.allclose(p.weights / p.total, q / q.sum(), atol=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        Proposal(logits, temperature=0)
    with pytest.raises(ValueError, match="NaN"):
        Proposal(np.array([0.0, np.nan], dtype=np.float32))
    # top-k filtered tokens are never drawn, even when they are the only valid ones
    vocab = constrain.Vocabulary.from_token_bytes([b"a", b"b", b"c", b"d", b"e", None], eos_token_ids=(5,))
    compiled = constrain.compile(constrain.regex(r"[ade]"), vocab)
    m = compiled.matcher()
    rng = np.random.default_rng(0)
    toks = {awrs_sample(Proposal(np.append(logits, -9), top_k=4), Checker(m), rng).token for _ in range(300)}
    assert toks == {3, 4}


def test_awrs_checks_few_tokens_when_the_model_agrees():
    vocab = toy_vocab()
    compiled = constrain.compile(constrain.regex(r"(ab|cd)*"), vocab)
    table = {(4,): [0.001] * 5 + [0.99, 0.001, 0.001, 0.002], (5,): [0.001] * 4 + [0.99, 0.001, 0.001, 0.001, 0.005]}
    lm = NGramLM(len(vocab), table, default=[0.001] * 4 + [0.99, 0.001, 0.001, 0.001, 0.005])
    r = run(ToyDecoder(lm), compiled, method="awrs", max_new_tokens=20, seed=0, budget=False)
    assert r.stats.masks == 0 and r.stats.masks_avoided == r.stats.steps
    assert r.stats.checks_per_token < 2.5
    lcd = run(ToyDecoder(lm), compiled, method="lcd", max_new_tokens=20, seed=0, budget=False)
    assert lcd.stats.masks == lcd.stats.steps


def test_checker_caches_per_state_within_a_step():
    vocab = toy_vocab()
    compiled = constrain.compile(constrain.regex(r"(ab|cd)*"), vocab)
    stats = SamplingStats()
    cache: dict = {}
    m1, m2 = compiled.matcher(), compiled.matcher()
    for m in (m1, m2):
        chk = Checker(m, None, stats, cache)
        assert chk(4) and not chk(1)
    assert stats.checks == 2 and stats.cache_hits == 2


def test_resampling_and_ess():
    rng = np.random.default_rng(0)
    w = np.array([0.1, 0.0, 0.6, 0.3])
    for f in (systematic_resample, multinomial_resample):
        idx = np.concatenate([f(w, rng) for _ in range(2000)])
        freq = np.bincount(idx, minlength=4) / len(idx)
        assert freq[1] == 0 and np.allclose(freq, w, atol=0.02)
    assert ess(np.log(np.ones(8))) == pytest.approx(8)
    assert ess(np.array([0.0, -np.inf, -np.inf])) == pytest.approx(1)
    assert ess(np.full(3, -np.inf)) == 0


def test_bad_arguments_raise_typed_errors():
    _, compiled, lm = biased_example()
    with pytest.raises(ConstrainError, match="unknown method"):
        run(ToyDecoder(lm), compiled, method="beam")
    with pytest.raises(ConstrainError, match="greedy"):
        run(ToyDecoder(lm), compiled, method="smc", greedy=True)
    with pytest.raises(ValueError, match="groups"):
        run(ToyDecoder(lm), compiled, method="smc", n=10, groups=3)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.floats(-50, 50, width=32), st.just(-math.inf)), min_size=1, max_size=300),
       st.sampled_from([1, 2, 16]))
def test_lazy_order_matches_full_sort(keys, first_block):
    """The block-wise argpartition walk equals a full descending sort (ties in any order)."""
    work = np.array(keys, dtype=np.float32)
    ref = sorted((k for k in work.tolist() if k != -math.inf), reverse=True)
    got = list(lazy_order(work.copy(), first_block=first_block))
    assert [float(np.float32(keys[i])) for i in got] == ref
    assert len(set(got)) == len(got)


class _SmallBlockProposal(Proposal):
    """Envelope blocks of 256 with any number of head blocks: the test vocabularies (<= 3000
    tokens) then span many blocks, as the 128k ones do with the default 4096."""

    __slots__ = ()
    EBLOCK = 256
    LAZY_HEAD_SHARE = 1.0


@settings(max_examples=25, deadline=None)
@given(
    st.integers(min_value=1, max_value=3000),
    st.floats(min_value=0.0, max_value=20.0),
    st.integers(min_value=0, max_value=2**31),
    st.sampled_from([Proposal, _SmallBlockProposal]),
)
def test_lazy_envelope_draw_matches_materialised_distribution(n, peak, seed, cls):
    """The lazy envelope sampler (no full ``exp``) against the plain inverse-CDF reference."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, size=n).astype(np.float32)
    logits[rng.integers(n)] += np.float32(peak)
    logits[rng.random(n) < 0.1] = -np.inf
    if not np.isfinite(logits).any():
        logits[0] = 0.0
    ref = cls(logits)
    p = ref.weights.astype(np.float64) / ref.total
    # envelope bounds every weight it covers (the rejection sampler's precondition)
    head, hw, _, bound, _, thr = cls(logits).envelope()
    tail = np.flatnonzero(logits < thr)
    # (the lazy sampler weighs in float64, like its bounds)
    w64 = np.exp(logits[tail].astype(np.float64) - float(logits[np.isfinite(logits)].max()))
    assert np.all(w64 <= bound[tail // cls.EBLOCK])
    assert np.array_equal(np.sort(head), np.flatnonzero(logits >= thr))
    draws = 3000
    lazy_rng = np.random.default_rng(seed + 1)
    counts = np.zeros(n)
    for _ in range(draws // 2):  # two draws per proposal: the second comes from the kernel's batch
        q = cls(logits)
        counts[q.draw(lazy_rng)] += 1
        counts[q.draw(lazy_rng)] += 1
    assert counts[p == 0].sum() == 0
    # pool the small cells, then chi-square at a strict level (fixed seeds)
    order = np.argsort(-p)
    big = order[p[order] * draws >= 5]
    exp = np.append(p[big] * draws, draws - p[big].sum() * draws)
    obs = np.append(counts[big], draws - counts[big].sum())
    keep = exp > 0
    if keep.sum() > 1:
        chi = float((((obs - exp) ** 2)[keep] / exp[keep]).sum())
        assert float(chi2.sf(chi, keep.sum() - 1)) > 1e-4, (chi, keep.sum())


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=1, max_value=700),
    st.sampled_from([1, 7, 64, 256]),
    st.floats(min_value=0.0, max_value=12.0),
    st.floats(min_value=0.0, max_value=10.0),
    st.integers(min_value=0, max_value=2**31),
)
def test_lazy_draw_kernel_matches_reference(n, block, peak, head, seed):
    """The numba batched lazy-draw kernel returns exactly what the pure-Python reference returns."""
    from constrain.sampling.kernels import lazy_draws, lazy_draws_reference

    c = lazy_case(n, block, peak, seed)
    x, bm, mx, us, limit = c.x, c.bm, c.mx, c.us, c.limit
    out = np.full(len(us), -7, dtype=np.int64)
    hm = np.full(1, np.nan)
    got = lazy_draws(x, bm, mx, mx - head, block, us, out, limit, hm)
    assert out[:got].tolist() == lazy_draws_reference(x, bm, mx, mx - head, block, us, limit)
    assert (out[got:] == -7).all()
    if sum(1 for b in bm if b >= mx - head) <= limit:  # the head was scanned: its mass is reported
        ref = math.fsum(math.exp(float(v) - mx) for v in x if v >= mx - head)
        assert hm[0] == pytest.approx(ref, rel=1e-12)


def test_grammar_matcher_keep_advanced_path_is_the_dfa_path():
    """A grammar matcher (validated by a kept ``advance``, committed by the loop) gives the very
    same AWRS/SMC samples and weights as the DFA of the same language: identical verdicts,
    budget included, and identical use of the random stream.  (Masking folds the budget into
    a DFA's mask but checks a grammar's drawn token, so its draws differ by design: there
    only validity is compared.)"""
    vocab = toy_vocab()
    dfa = constrain.compile(constrain.regex(r"a[bc]*d"), vocab)
    cfg = constrain.compile(constrain.grammar('start: "a" mid "d"\nmid: ("b" | "c")*'), vocab)
    assert type(cfg.matcher()).__name__ != type(dfa.matcher()).__name__
    lm = NGramLM(len(vocab), {}, default=[0.05, 0.4, 0.35, 0.05, 0.05, 0.03, 0.03, 0.03, 0.01])
    for method in ("lcd", "awrs", "smc"):
        for budget in (3, 6, 12):
            for seed in range(4):
                kw = dict(method=method, n=4 if method == "smc" else 1, max_new_tokens=budget, seed=seed)
                a = run(ToyDecoder(lm), dfa, **kw)
                b = run(ToyDecoder(lm), cfg, **kw)
                assert cfg.matcher().accepts_text(b.text) and len(b.tokens) <= budget
                if method != "lcd":
                    assert [p.tokens for p in a.particles] == [p.tokens for p in b.particles], (method, budget, seed)
                    assert np.array_equal(a.log_weights, b.log_weights)


def test_checker_keep_advanced_commit_and_settle():
    """keep_advanced with a grammar matcher: each check peeks the token's next state (the
    matcher never moves), and commit moves to the kept state without running the parser
    again; a matcher that cannot peek is validated by a kept advance instead (rolled back by
    the next check or settle)."""
    vocab = toy_vocab()
    cfg = constrain.compile(constrain.grammar('start: ("ab" | "cd")*'), vocab)
    parser = cfg.parser
    runs = []
    real_run = parser.run
    parser.run = lambda pos, data: runs.append(data) or real_run(pos, data)
    m = cfg.matcher()
    chk = Checker(m, 10, None, None, keep_advanced=True)
    assert chk(4) and m.num_tokens() == 0  # "ab" valid, peeked: the matcher did not move
    assert not chk(1) and m.num_tokens() == 0  # "b" is invalid
    assert chk(5) and chk(EOS)
    n = len(runs)
    chk.commit(4)  # the kept state of "ab": no parser run
    assert len(runs) == n and m.num_tokens() == 1 and m.accepts_prefix_bytes(b"cd") and not m.is_terminated()
    chk2 = Checker(m, 10, None, None, keep_advanced=True)
    chk2.commit(5)  # never checked: a plain advance
    assert m.num_tokens() == 2 and len(runs) > n
    m.rollback(1)
    # a matcher that cannot peek: validated by a kept advance
    m.peek = None
    chk3 = Checker(m, 10, None, None, keep_advanced=True)
    assert chk3(4) and m.num_tokens() == 2  # "ab" validated by a kept advance
    assert not chk3(1) and m.num_tokens() == 1  # "b" is invalid: rolled back, state unchanged
    assert chk3(5) and m.num_tokens() == 2
    chk3.settle()
    assert m.num_tokens() == 1
    chk4 = Checker(m, 10, None, None, keep_advanced=True)
    assert chk4(5)
    chk4.commit(5)  # the kept advance itself
    assert m.num_tokens() == 2
    m.rollback(1)
    # without keep_advanced the matcher is never left advanced
    chk5 = Checker(m, 10)
    assert chk5(5) and m.num_tokens() == 1


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_peeking_checker_is_the_advancing_checker(data):
    """A grammar matcher's peek-based Checker gives the same verdicts, budget verdicts and
    statistics as the kept-advance one, and commit leaves the matcher in the same state, on
    random reachable states of a small grammar with a budget that often binds."""
    from constrain.sampling.stats import SamplingStats

    vocab = toy_vocab()
    cfg = constrain.compile(constrain.grammar('start: ("ab" | "cd" | "a" "b"?)* "c"?'), vocab)
    m1, m2 = cfg.matcher(), cfg.matcher()
    m2.peek = None
    for _ in range(data.draw(st.integers(0, 5))):
        ok = [t for t in range(len(vocab)) if m1.check(t) and t != EOS]
        if not ok:
            break
        t = data.draw(st.sampled_from(ok))
        m1.advance(t)
        m2.advance(t)
    remaining = data.draw(st.integers(1, 6))
    s1, s2 = SamplingStats(), SamplingStats()
    c1 = Checker(m1, remaining, s1, None, keep_advanced=True)
    c2 = Checker(m2, remaining, s2, None, keep_advanced=True)
    toks = data.draw(st.lists(st.integers(0, len(vocab) - 1), min_size=1, max_size=8))
    assert [c1(t) for t in toks] == [c2(t) for t in toks]
    assert [c1.fits_budget(t) for t in toks if c1(t)] == [c2.fits_budget(t) for t in toks if c2(t)]
    assert (s1.checks, s1.cache_hits, s1.budget_checks, c1.budget_rejected) == (
        s2.checks,
        s2.cache_hits,
        s2.budget_checks,
        c2.budget_rejected,
    )
    good = [t for t in toks if c1(t)]
    if good:
        c1.commit(good[-1])
        c2.commit(good[-1])
        assert m1.pos == m2.pos and m1.num_tokens() == m2.num_tokens() and m1.terminated == m2.terminated


def test_awrs_rows_that_fall_back_to_masking_stay_exact_and_properly_weighted():
    """After a step that needed the mask a row takes plain masked steps (exact local Z) until
    its next AWRS probe: samples still follow the locally constrained law, and the weights
    still give the global posterior and the language's probability.  The model fights the
    constraint at every step ('c'/'d' are never valid) and the valid mass depends on the
    context, so the posterior differs from masking's law and every weight matters."""
    vocab = constrain.Vocabulary.from_token_bytes([b"a", b"b", b"c", b"d", None], eos_token_ids=(4,))
    compiled = constrain.compile(constrain.regex(r"[ab]{3}"), vocab)
    lm = NGramLM(
        5,
        {(): [0.15, 0.05, 0.4, 0.4, 0.0], (0,): [0.03, 0.07, 0.5, 0.3, 0.1], (1,): [0.3, 0.3, 0.2, 0.1, 0.1]},
        default=[0.1, 0.1, 0.4, 0.3, 0.1],
    )
    post, lcd_exact, z = enumerate_language(lm, compiled, 4)
    assert total_variation(post, lcd_exact) > 0.2  # weights matter here
    n = 4000
    for seed in range(2):
        r = run(ToyDecoder(lm), compiled, method="awrs", n=n, max_new_tokens=4, seed=seed, budget=False, max_rejects=1)
        assert r.stats.masked_steps > n and r.stats.fallbacks > r.stats.masked_steps
        c = Counter(tuple(p.tokens) for p in r.particles)
        # (tolerances ~2x the worst of 6 seeds; a masked step that forgot its exact Z gives a
        # TV of ~0.39 and a Z 95x too large)
        assert total_variation({k: v / n for k, v in c.items()}, lcd_exact) < 0.05
        assert total_variation(weighted_distribution(r), post) < 0.12
        assert abs(math.exp(r.log_ml) - z) < 0.3 * z


def test_lazy_draw_is_used_for_peaked_and_skipped_for_flat_distributions():
    """Peaked logits (head tokens in a few envelope blocks) draw without the full softmax;
    flat ones (head tokens in most blocks) materialise it, which is cheaper there."""
    rng = np.random.default_rng(0)
    n = 20 * Proposal.EBLOCK
    peaked = rng.normal(0, 1, size=n).astype(np.float32)
    peaked[[5, 3 * Proposal.EBLOCK + 1, 17 * Proposal.EBLOCK + 9]] = 14.0  # 3 of 20 blocks
    p = Proposal(peaked)
    p.draw(rng)
    p.draw(rng)
    assert not p.materialized
    flat = rng.normal(0, 1, size=n).astype(np.float32)
    q = Proposal(flat)
    q.draw(rng)
    assert q.materialized


def test_awrs_probes_back_off_while_the_model_keeps_fighting():
    """A row whose probes keep failing probes after 8 masked steps, then 16, then 32 (the
    schedule looks only at past steps, so exactness is untouched); an agreeing step resets it."""
    from constrain.sampling.smc import MASK_PROBE

    toks = [b"a", b"b"] + [bytes([99 + i % 20]) * (1 + i // 20) for i in range(60)] + [None]
    vocab = constrain.Vocabulary.from_token_bytes(toks, eos_token_ids=(len(toks) - 1,))
    compiled = constrain.compile(constrain.regex(r"[ab]*"), vocab)
    fights = [1e-7, 1e-7] + [1.0] * 60 + [0.0]  # almost all mass on invalid tokens, no EOS
    lm = NGramLM(len(vocab), {}, default=fights)
    r = run(ToyDecoder(lm), compiled, method="awrs", max_new_tokens=40, seed=0, budget=False)
    assert r.stats.fallbacks == r.stats.steps == 40
    # step 0 (AWRS) and the probes at 8 and 8 + 16 = 24 consecutive fallbacks; the next would be 56
    assert MASK_PROBE == 8 and r.stats.masked_steps == 40 - 3


@pytest.mark.parametrize("method", ["awrs", "smc"])
def test_grammar_fast_step_is_identical_to_the_checker_path(monkeypatch, method):
    """The decoding loop peeks a grammar row's two first draws and, both valid and within the
    budget, takes the first without a Checker; with that path off every step goes through the
    Checker.  Same seeds: the same tokens, weights, tokens decoded and rejections, and the same
    checks, cache hits and budget checks (the fast path counts what the Checker would) -- steps
    whose second draw is rejected and whose next draw is the first again included."""
    import constrain.sampling.smc as smc

    vocab = toy_vocab()
    compiled = constrain.compile(constrain.grammar('start: ("ab" | "cd" | "a" "b"?)* "cdc"'), vocab)
    lm = NGramLM.random(len(vocab), np.random.default_rng(3), alpha=0.5)
    made = []

    class Counted(smc.Checker):
        def __init__(self, *a, **k):
            made.append(1)
            super().__init__(*a, **k)

    def decode():
        made.clear()
        out, steps = [], 0
        for s in range(10):
            r = run(ToyDecoder(lm), compiled, method=method, n=3, max_new_tokens=6, seed=s)
            st_ = r.stats
            out.append(
                (r.tokens, r.log_weights.tolist(), st_.tokens, st_.rejections, st_.checks, st_.cache_hits, st_.budget_checks)
            )
            steps += st_.steps
        return out, steps, len(made)

    monkeypatch.setattr(smc, "Checker", Counted)
    fast, steps, checkers = decode()
    assert steps - checkers >= 10 and sum(o[3] for o in fast) > 10  # fast steps taken; rejections too
    monkeypatch.setattr(smc, "_PAIR_FAST", False)
    slow, steps_slow, checkers_slow = decode()
    assert checkers_slow >= steps_slow
    assert slow == fast
