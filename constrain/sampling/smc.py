"""The decoding loop shared by all three methods, and sequential Monte Carlo.

``run(decoder, compiled, method=...)`` drives any model behind the small :class:`Decoder`
protocol (toy n-gram models in tests, Hugging Face models in :mod:`constrain.hf`):

* ``"lcd"``  -- token masking; ``n`` independent samples;
* ``"awrs"`` -- adaptive weighted rejection sampling; ``n`` independent samples, each with
  the log of its product of unbiased ``Z`` estimates (its importance weight);
* ``"smc"``  -- ``n`` particles proposing with AWRS (or masking: ``proposal="lcd"``),
  log-weights incremented by ``log Z_hat``, effective-sample-size triggered resampling
  (systematic or multinomial) that also reorders the decoder's rows (KV cache), optional
  extra potentials on the text.  The weighted particles approximate the *global* posterior
  ``p(x | x in language)``; ``log_ml`` (log of the mean weight) estimates ``log P(language)``.

With one particle and no resampling SMC is AWRS sampling.  Every method keeps the budget
rule of :mod:`constrain.sampling.budget`, so outputs cut at ``max_new_tokens`` are complete.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from constrain.errors import ConstrainError
from constrain.sampling.awrs import PSI_ESTIMATE_MAX, Draw, awrs_queued, awrs_sample, greedy_sample
from constrain.sampling.budget import _dfa_parts, _max_distance, require_budget
from constrain.sampling.core import Checker, Proposal, first_fill, has_first_fill, prepare_logits, raw_source
from constrain.sampling.lcd import batch_masks, lcd_sample
from constrain.sampling.stats import SamplingStats

METHODS = ("lcd", "awrs", "smc")
_F32 = np.dtype(np.float32)  # (numpy's builtin dtypes are singletons: an identity test)
_LOG2 = math.log(2)  # (log n+1 of a step with one rejection: its weight is -log 2)
_PAIR_FAST = True  # DFA rows' one-call fast step (tests turn it off to compare with the Checker path)
MASK_PROBE = 8  # a row on masked steps first tries AWRS again after MASK_PROBE steps,
MASK_PROBE_MAX = 64  # then after twice as many each time a probe fails, up to this many


class Decoder(Protocol):
    """A batch of ``n`` sequences sharing one prompt; rows can be reordered (resampling)."""

    vocab_size: int

    def start(self, n: int) -> np.ndarray:
        """Start ``n`` rows from the prompt; the first next-token logits, shape ``(n, V)``."""

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """Append one token per row; the next logits ``(n, V)``."""

    def reorder(self, index: np.ndarray) -> None:
        """Row ``i`` becomes old row ``index[i]`` (duplicates and drops allowed)."""


@dataclass
class Particle:
    tokens: list[int]
    text: bytes
    log_weight: float
    finished: bool  # ended with EOS or at the budget in an accepting state
    alive: bool  # False after a dead end or a potential of -inf


@dataclass
class SamplingResult:
    """What every method returns.  ``text``/``tokens`` are the chosen sample (for SMC a draw
    from the weighted particles; otherwise the first sample)."""

    text: str
    tokens: list[int]
    log_weights: np.ndarray
    particles: list[Particle]
    stats: SamplingStats
    log_ml: float
    method: str
    eos: bool = field(default=False)

    @property
    def text_bytes(self) -> bytes:
        return self.particles[self.index].text if self.particles else b""

    index: int = 0
    chosen: list[int] = field(default_factory=list)  # SMC: one posterior draw per group
    log_ml_groups: list[float] = field(default_factory=list)


def systematic_resample(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Systematic resampling: one uniform, ``n`` evenly spaced points through the CDF."""
    n = len(weights)
    c = np.cumsum(weights / weights.sum())
    c[-1] = 1.0
    u = (rng.random() + np.arange(n)) / n
    return np.searchsorted(c, u, side="right").clip(0, n - 1)


def multinomial_resample(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(len(weights), size=len(weights), p=weights / weights.sum())


def ess(log_weights: np.ndarray) -> float:
    """Effective sample size ``(sum w)^2 / sum w^2`` (0 when every weight is zero)."""
    finite = np.isfinite(log_weights)
    if not finite.any():
        return 0.0
    w = np.exp(log_weights[finite] - log_weights[finite].max())
    return float(w.sum() ** 2 / (w * w).sum())


def _logmeanexp(x: np.ndarray) -> float:
    if not np.isfinite(x).any():
        return -math.inf
    m = x[np.isfinite(x)].max()
    return float(m + np.log(np.exp(x - m).mean()))


def run(
    decoder: Decoder,
    compiled,
    *,
    method: str = "awrs",
    n: int = 1,
    max_new_tokens: int = 128,
    seed: int | Sequence[int] | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    proposal: str = "awrs",
    ess_threshold: float = 0.5,
    resampling: str = "systematic",
    potential: Callable[[bytes], float] | None = None,
    potential_every: int = 1,
    max_rejects: int = 32,
    budget: bool = True,
    raise_on_dead: bool = True,
    groups: int = 1,
) -> SamplingResult:
    """Decode ``n`` sequences from ``decoder`` under ``compiled`` (see the module docstring).

    ``potential(text) -> log phi`` is evaluated every ``potential_every`` steps and at the end
    (SMC only); the weight changes by the difference from its previous value.
    ``raise_on_dead``: for ``lcd``/``awrs`` raise :class:`ConstrainError` when a sample hits
    a dead end (only possible with matchers whose completions are not exact); SMC just drops
    such particles and raises only when every particle is dead.
    ``groups`` (SMC) splits the ``n`` rows into that many *independent* SMC runs of
    ``n // groups`` particles sharing one batched model call (resampling stays inside a
    group); ``result.chosen`` holds one posterior draw per group.
    ``seed`` may be a list: one independent random stream per row (``lcd``/``awrs``, length
    ``n``) or per SMC group (length ``groups``), so a row's output depends only on its own
    seed (and the model), not on its position in the batch or on the other seeds.
    """
    if method not in METHODS:
        raise ConstrainError(f"unknown method {method!r}; expected one of {METHODS}")
    if proposal not in ("awrs", "lcd"):
        raise ConstrainError(f"unknown SMC proposal {proposal!r}; expected 'awrs' or 'lcd'")
    if resampling not in ("systematic", "multinomial"):
        raise ConstrainError(f"unknown resampling {resampling!r}; expected 'systematic' or 'multinomial'")
    if n < 1:
        raise ValueError(f"need at least one sequence/particle, got n={n}")
    if greedy and method == "smc":
        raise ConstrainError("greedy decoding is not defined for SMC (it needs random proposals)")
    if groups < 1 or n % groups:
        raise ValueError(f"n={n} particles cannot be split into {groups} equal groups")
    size = n // groups
    if seed is not None and not isinstance(seed, int | np.integer):
        seeds = [int(x) for x in seed]
        want = groups if method == "smc" else n
        if len(seeds) != want:
            unit = "SMC groups" if method == "smc" else "rows"
            raise ValueError(f"got {len(seeds)} seeds for {want} {unit}; pass one seed per {unit[:-1]}")
        streams = [np.random.default_rng(x) for x in seeds]
        rng = streams[0]
        group_rng = streams if method == "smc" else [rng]
        row_rng = [streams[i // size] for i in range(n)] if method == "smc" else streams
    else:
        rng = np.random.default_rng(seed)
        group_rng = [rng] * groups
        row_rng = [rng] * n
    stats = SamplingStats()
    vocab = compiled.vocab
    eos = set(vocab.eos_token_ids)
    pad = vocab.eos_token_ids[0] if vocab.eos_token_ids else 0
    matchers = [compiled.matcher() for _ in range(n)]
    if budget:
        require_budget(matchers[0], max_new_tokens)
    logw = np.zeros(n)
    done = np.zeros(n, dtype=bool)
    alive = np.ones(n, dtype=bool)
    ended_eos = np.zeros(n, dtype=bool)
    toks: list[list[int]] = [[] for _ in range(n)]
    phi_last = np.zeros(n)
    step_method = proposal if method == "smc" else method
    # adaptive, from past steps only (so every draw stays exact and every weight properly
    # weighted): a row whose last step needed the full mask (the model fights the constraint
    # there) takes masked steps -- exact draw, exact local Z -- and probes AWRS again after
    # MASK_PROBE steps with only a few draws before its mask; each failed probe doubles the
    # wait (up to MASK_PROBE_MAX): a failed probe costs its draws *and* a mask in Gumbel order
    # (~6 masked steps on a 128k vocabulary), so a model that keeps fighting probes rarely
    fallback = [0] * n  # consecutive steps of each row that needed the full mask
    probe_at = [MASK_PROBE] * n  # the value of fallback[i] at which row i probes next
    probe_gap = [MASK_PROBE] * n
    lazy = step_method != "lcd"
    temp = 1.0 if greedy else temperature

    # the AWRS fast path (see the loop) needs the C first fill and no nucleus filter (top-p
    # builds the full weights first), and awrs_sample's own fast path (max_rejects >= 1)
    fast = lazy and max_rejects >= 1 and not (top_p is not None and 0 < top_p < 1) and has_first_fill()
    bm_buf = np.empty(0, dtype=np.float32)  # block maxima of one row's step, reused
    limit = 0  # (the head-block limit for bm_buf's size, set with it)
    width = -1  # (the logits' width bm_buf was made for)
    # each row's generator as first_fill's C call draws from it directly (the same raw values)
    row_src = [raw_source(r) for r in row_rng] if fast else []
    raw_logits = temp == 1.0 and top_k is None  # the decoder's rows are the proposal's logits
    parts = _dfa_parts(matchers[0])
    # rows of a DFA with the C extension: the fast step's checks in one C call (try_pair)
    dfa_rows = _PAIR_FAST and parts is not None and getattr(matchers[0], "_cursor", None) is not None
    # rows of a matcher that can peek a token's next state (grammars): the fast step peeks
    peek_rows = _PAIR_FAST and parts is None and getattr(matchers[0], "peek", None) is not None
    max_dist = _max_distance(parts[0]) if parts is not None else 0  # budget free while remaining > this
    out_buf = np.empty(Proposal.LAZY_BATCH, dtype=np.int64)
    active: list[int] | None = None  # rows alive and unfinished, recomputed when that changes
    t0 = time.perf_counter()
    logits = decoder.start(n)
    stats.model_time += time.perf_counter() - t0

    for step in range(max_new_tokens):
        te = time.perf_counter()
        remaining = max_new_tokens - step if budget else None
        rem_c = remaining if remaining is not None and remaining <= max_dist else -1  # (C: -1 = budget free)
        cache: dict = {}
        # per-step bookkeeping in plain Python where it is per row (no small-array numpy
        # calls: at one row they cost more than the sampler's own work)
        nxt = [pad] * n
        if active is None:  # only after rows finished, died or were reordered
            active = np.flatnonzero(alive & ~done).tolist()
        running = len(active)  # rows still alive and unfinished after this step
        stepped = active
        masks = None
        if step_method == "lcd" and active:
            masks = batch_masks([matchers[i] for i in active], len(vocab))
            stats.masks += len(active)
        for j, i in enumerate(stepped):
            fb = fallback[i]
            mask_step = lazy and not greedy and fb > 0 and fb != probe_at[i]
            # an AWRS step draws at once: its proposal makes the first draws in the same
            # compiled call as the block maxima (the same draws as drawing later)
            drawing = lazy and not greedy and not mask_step
            step_rejects = min(4, max_rejects) if fb else max_rejects  # (a probe: few draws)
            chk = None
            d = prop = None
            if drawing and fast:
                # the agreeing model's usual step without a proposal object: the two first
                # draws come out of one C call and, both valid, are exactly awrs_sample's fast
                # path (token = first draw, Z_hat = 1); otherwise the proposal those draws
                # came from is rebuilt and awrs_sample starts from the same two draws
                x = logits[i]
                if not (raw_logits and x.dtype is _F32 and x.ndim == 1):
                    x = prepare_logits(x, temp, top_k)
                if x.flags.c_contiguous:
                    if len(x) != width:  # (first step; logits may be wider than the vocabulary)
                        width = len(x)
                        bm_buf = np.empty(-(-width // Proposal.EBLOCK), dtype=np.float32)
                        limit = Proposal._limit_for(len(bm_buf))
                    mx, got, hm = first_fill(x, row_src[i], bm_buf, out_buf, limit)
                    if got >= 2 and mx == mx:  # (NaN: Proposal raises below)
                        # a DFA row: one C call tests both draws' bits in the state's held
                        # mask, and the budget rule (once some state is beyond it) by each
                        # one's distance -- the Checker's verdicts exactly -- and, both valid,
                        # moves the row's cursor by the first.  A grammar row peeks both draws
                        # (once when they are the same token, as in most steps of a model that
                        # agrees) and moves to the first's peeked state
                        t0 = t1 = -1
                        m = matchers[i]
                        nrej = 0  # (a grammar row's step with x1 rejected, below)
                        if dfa_rows:
                            r = m._cursor.try_pair(out_buf, rem_c)
                            if r.__class__ is tuple:
                                t0, t1, nx = r
                                bc = (1 if t0 == t1 else 2) if rem_c >= 0 else 0
                                nc, nh = (1, 1) if t0 == t1 else (2, 0)
                        elif peek_rows:
                            ta, t1 = int(out_buf[0]), int(out_buf[1])
                            pk = m.peek(ta)
                            fit0 = pk is not None and (remaining is None or m.completion_of(pk) < remaining)
                            if t1 == ta:
                                pk1 = pk
                                if fit0:
                                    t0, nc, nh, bc = ta, 1, 1, int(remaining is not None)
                            else:
                                pk1 = m.peek(t1)
                                if fit0 and pk1 is not None and (remaining is None or m.completion_of(pk1) < remaining):
                                    t0, nc, nh, bc = ta, 2, 0, 0 if remaining is None else 2
                                elif fit0 and got >= 3 and step_rejects > 1 and hm == hm and out_buf[2] == ta:
                                    # awrs_queued's "x1 rejected" step whose walk draws x0 again
                                    # (the usual rejection of a model that agrees: x1 was noise):
                                    # token x0, one rejection, log Z_hat = -log 2; its checks are
                                    # x0 and x1, then x1 and x0 again from the cache
                                    t0, nc, nh, nrej = ta, 2, 2, 1
                                    bc = 0 if remaining is None else 1 + (pk1 is not None)
                        if t0 >= 0:
                            # accepted (awrs_sample's answer): the Checker's counts and the
                            # bookkeeping of the loop's tail, inline (this is most steps of a
                            # model that agrees; going through the tail measured ~8% more
                            # engine time per token)
                            stats.budget_checks += bc
                            stats.checks += nc
                            stats.cache_hits += nh
                            if nrej:
                                stats.rejections += nrej
                                logw[i] -= _LOG2
                            stats.steps += 1
                            stats.tokens += 1
                            if step_method == "awrs":
                                stats.masks_avoided += 1
                            fallback[i] = 0
                            if not dfa_rows:
                                m.advance_to(t0, pk)
                            elif nx >= 0:  # (the cursor has moved already)
                                m.history.append(m.pos)
                                m.pos = nx
                            else:  # EOS
                                m.advance(t0)
                            toks[i].append(t0)
                            nxt[i] = t0
                            if t0 in eos:
                                done[i] = ended_eos[i] = True
                                running -= 1
                            continue
                        # a step with a rejection or two: awrs_sample on the queued draws,
                        # without its objects (None: it needs more than the queue)
                        if dfa_rows:  # (the same in C, with the state's verdicts and the Checker's counts)
                            q = matchers[i]._cursor.queued(
                                out_buf, got, x, mx, hm, rem_c, step_rejects, PSI_ESTIMATE_MAX, Proposal.HEAD
                            )
                            stats.checks += q[3]
                            stats.cache_hits += q[4]
                            stats.budget_checks += q[5]
                            if q[0] is not None:
                                d = Draw(q[0], q[1], q[2], False)
                            else:  # awrs_sample goes on from these verdicts
                                chk = Checker(matchers[i], remaining, stats, cache)
                                chk.seed(q[1], q[2], q[6])
                        else:
                            chk = Checker(matchers[i], remaining, stats, cache, keep_advanced=True)
                            if t1 >= 0:  # (a grammar row's peeks above: not repeated, counted when used)
                                chk.prime(ta, pk)
                                chk.prime(t1, pk1)
                            got_d = awrs_queued(out_buf[:got].tolist(), x, mx, hm, chk, step_rejects)
                            if got_d is not None:
                                d = Draw(got_d[0], got_d[1], got_d[2], False)
                    if d is None:
                        prop = Proposal.after_first_fill(x, mx, bm_buf, out_buf, got, hm)
            if chk is None and d is None:
                chk = Checker(matchers[i], remaining, stats, cache, keep_advanced=True)
            if d is None and prop is None:
                prop = Proposal(
                    logits[i],
                    temp,
                    top_k,
                    top_p,
                    lazy=lazy and not mask_step,
                    rng=row_rng[i] if drawing else None,
                )
            if d is not None:
                pass
            elif step_method == "lcd":
                d = lcd_sample(prop, chk, row_rng[i], greedy=greedy, mask=masks[j])
            elif greedy:
                d = greedy_sample(prop, chk, max_rejects=max_rejects)
            elif mask_step:
                d = lcd_sample(prop, chk, row_rng[i])
                stats.masked_steps += 1
            else:
                d = awrs_sample(prop, chk, row_rng[i], max_rejects=step_rejects)
            if d.used_mask and not mask_step:
                # a plain step that needed the mask starts the schedule; a failed probe
                # doubles the wait before the next one
                probe_gap[i] = MASK_PROBE if fb == 0 else min(2 * probe_gap[i], MASK_PROBE_MAX)
                probe_at[i] = fb + probe_gap[i]
            fallback[i] = fb + 1 if d.used_mask else 0
            if step_method == "awrs":
                stats.masks_avoided += 0 if d.used_mask else 1
                stats.fallbacks += int(d.used_mask)
            stats.rejections += d.rejections
            stats.steps += 1
            if d.token is None:
                chk.settle()
                alive[i] = False
                logw[i] = -math.inf
                stats.dead_particles += 1
                running -= 1
                continue
            logw[i] += d.log_z
            if chk is None:  # (the DFA fast path: nothing kept)
                matchers[i].advance(d.token)
            else:
                chk.commit(d.token)  # = matchers[i].advance(d.token), reusing a kept advance
            toks[i].append(d.token)
            nxt[i] = d.token
            stats.tokens += 1
            if d.token in eos:
                done[i] = True
                ended_eos[i] = True
                running -= 1
        if running != len(stepped):
            active = None
        last = step == max_new_tokens - 1 or running == 0
        if method == "smc" and potential is not None and ((step + 1) % potential_every == 0 or last):
            for i in np.flatnonzero(alive):
                val = float(potential(vocab.decode_bytes(toks[i])))
                logw[i] += val - phi_last[i]
                phi_last[i] = val
                if val == -math.inf:
                    alive[i] = False
                    active = None
        if method == "smc":
            for g in range(groups):
                if not alive[g * size : (g + 1) * size].any():
                    raise ConstrainError(f"every SMC particle of group {g} hit a dead end by step {step + 1}")
        idx = None
        if method == "smc" and not last:
            for g in range(groups):
                sl = slice(g * size, (g + 1) * size)
                lw = logw[sl]
                if ess(lw) < ess_threshold * size:
                    if idx is None:
                        idx = np.arange(n)
                    w = np.exp(lw - lw[np.isfinite(lw)].max())
                    sub = (systematic_resample if resampling == "systematic" else multinomial_resample)(
                        w, group_rng[g]
                    )
                    idx[sl] = g * size + sub
                    logw[sl] = _logmeanexp(lw)
                    stats.resamples += 1
        reorder = idx is not None and bool((idx != np.arange(n)).any())
        if reorder:
            active = None
            matchers = [matchers[k].copy() for k in idx]
            toks = [list(toks[k]) for k in idx]
            done, alive, ended_eos, phi_last = done[idx], alive[idx], ended_eos[idx], phi_last[idx]
            nxt = [nxt[k] for k in idx]
            fallback = [fallback[k] for k in idx]
            probe_at = [probe_at[k] for k in idx]
            probe_gap = [probe_gap[k] for k in idx]
        step_tokens = np.array(nxt, dtype=np.int64)
        stats.engine_time += time.perf_counter() - te
        if reorder:
            tm = time.perf_counter()
            decoder.reorder(idx)
            stats.model_time += time.perf_counter() - tm
        if last:
            break
        tm = time.perf_counter()
        logits = decoder.step(step_tokens)
        stats.model_time += time.perf_counter() - tm

    # rows cut by the budget must be complete: the budget rule guarantees it for exact
    # completions; anything else is reported as dead, never returned as if valid
    particles = []
    for i in range(n):
        complete = ended_eos[i] or matchers[i].is_accepting()
        if alive[i] and not complete:
            alive[i] = False
            logw[i] = -math.inf
        particles.append(
            Particle(toks[i], vocab.decode_bytes(toks[i]), float(logw[i]), bool(complete), bool(alive[i]))
        )
    if method != "smc" and raise_on_dead and not alive.all():
        raise ConstrainError(
            "decoding reached a dead end (no valid token, or the budget ran out before the text was complete)"
        )
    chosen_idx: list[int] = []
    for g in range(groups if method == "smc" else 1):
        sl = np.arange(g * size, (g + 1) * size) if method == "smc" else np.arange(n)
        a = alive[sl]
        if method == "smc" and a.any():
            w = np.exp(logw[sl] - logw[sl][a].max())
            w[~a] = 0
            chosen_idx.append(int(sl[group_rng[g].choice(len(sl), p=w / w.sum())]))
        else:
            chosen_idx.append(int(sl[np.flatnonzero(a)[0]]) if a.any() else int(sl[0]))
    index = chosen_idx[0]
    chosen = particles[index]
    return SamplingResult(
        text=chosen.text.decode("utf-8", errors="replace"),
        tokens=list(chosen.tokens),
        log_weights=logw.copy(),
        particles=particles,
        stats=stats,
        log_ml=_logmeanexp(logw),
        method=method,
        eos=bool(ended_eos[index]),
        index=index,
        chosen=chosen_idx,
        log_ml_groups=[_logmeanexp(logw[g * size : (g + 1) * size]) for g in range(groups)],
    )
