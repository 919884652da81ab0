"""Hugging Face transformers integration (``constrain.hf``).

* :class:`LogitsProcessor` -- a batch-aware drop-in for ``model.generate(logits_processor=...)``
  doing token masking (optionally budget-aware when given ``max_new_tokens``).
* :func:`generate` -- our own decoding loop (``method="lcd" | "awrs" | "smc"``) with KV-cache
  reuse, particles batched as rows of one cache (resampling reorders the rows) and
  budget-aware completion: output cut by ``max_new_tokens`` still satisfies the constraint.
  Returns a :class:`~constrain.sampling.smc.SamplingResult` (``.text``, ``.tokens``,
  ``.log_weights``, ``.stats``, ``.particles``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from constrain.engine.compile import compile as compile_constraint
from constrain.engine.matcher import CompiledConstraint
from constrain.errors import ConstrainError
from constrain.sampling.budget import budget_mask
from constrain.sampling.lcd import batch_masks
from constrain.sampling.smc import SamplingResult, run
from constrain.vocab import Vocabulary

try:  # transformers is a dependency, but keep import errors readable
    import torch
    from transformers import LogitsProcessor as _HFLogitsProcessor
except ImportError as exc:  # pragma: no cover
    raise ImportError("constrain.hf needs torch and transformers installed") from exc


def _model_vocab_size(model: Any, tokenizer: Any) -> int:
    n = getattr(getattr(model, "config", None), "vocab_size", None)
    return int(n) if n else len(tokenizer)


def vocabulary_for(tokenizer: Any, vocab_size: int | None = None) -> Vocabulary:
    """The exact :class:`Vocabulary` of ``tokenizer`` padded to the model's ``vocab_size``."""
    if isinstance(tokenizer, Vocabulary):
        return tokenizer
    n = max(vocab_size or 0, len(tokenizer))
    return Vocabulary.from_hf(tokenizer, vocab_size=n)


def _compiled(constraint: Any, vocab: Vocabulary) -> CompiledConstraint:
    if isinstance(constraint, CompiledConstraint):
        if len(constraint.vocab) != len(vocab):
            raise ConstrainError(
                f"the compiled constraint's vocabulary has {len(constraint.vocab)} tokens but the model "
                f"produces {len(vocab)} logits; compile against constrain.hf.vocabulary_for(tokenizer, vocab_size)"
            )
        return constraint
    return compile_constraint(constraint, vocab)


class LogitsProcessor(_HFLogitsProcessor):
    """Masks disallowed tokens to ``-inf`` for every row of ``model.generate``.

    Rows are tracked by position (greedy/sampling with ``num_return_sequences`` work; beam
    search reorders rows and is not supported).  With ``max_new_tokens`` the mask also keeps
    the budget rule, so the output is complete when ``generate`` stops at the budget.
    """

    def __init__(self, constraint: Any, tokenizer: Any, *, vocab_size: int | None = None,
                 max_new_tokens: int | None = None) -> None:
        self.vocab = vocabulary_for(tokenizer, vocab_size)
        self.compiled = _compiled(constraint, self.vocab)
        self.max_new_tokens = max_new_tokens
        self.matchers: list | None = None
        self.prompt_len = 0
        self._last_len = -2

    def reset(self) -> None:
        """Forget the sequences (call between ``generate`` calls, or make a new processor)."""
        self.matchers = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        b, length = input_ids.shape
        # a new generate call (different batch, or the sequence did not grow by one) starts over
        if self.matchers is None or len(self.matchers) != b or length != self._last_len + 1:
            self.matchers = [self.compiled.matcher() for _ in range(b)]
            self.prompt_len = length
        else:
            last = input_ids[:, -1].tolist()
            for m, t in zip(self.matchers, last, strict=True):
                if not m.is_terminated():
                    m.advance(int(t))
        self._last_len = length
        v = len(self.vocab)
        masks = batch_masks(self.matchers, v)
        step = length - self.prompt_len
        for i, m in enumerate(self.matchers):
            if m.is_terminated():  # generate pads finished rows; keep the row finite
                masks[i, list(self.vocab.eos_token_ids)] = True
            elif self.max_new_tokens is not None:
                masks[i] = budget_mask(m, masks[i], self.max_new_tokens - step)
        vs = scores.shape[-1]
        full = np.zeros((b, vs), dtype=bool)
        full[:, : min(v, vs)] = masks[:, : min(v, vs)]
        allowed = torch.from_numpy(full).to(scores.device)
        return scores.masked_fill(~allowed, float("-inf"))


class HFDecoder:
    """:class:`~constrain.sampling.smc.Decoder` over a causal LM with one shared KV cache.

    All rows start from the same prompt (encoded once, repeated); ``reorder`` selects cache
    rows so resampled particles keep their own history without recomputation.
    """

    def __init__(self, model: Any, prompt_ids: list[int], vocab_size: int) -> None:
        if not prompt_ids:
            raise ConstrainError("the prompt encodes to no tokens and the tokenizer has no BOS to start from")
        self.model = model
        self.prompt_ids = prompt_ids
        self.vocab_size = vocab_size
        self.device = next(model.parameters()).device
        self.past: Any = None

    def _out(self, out: Any) -> np.ndarray:
        self.past = out.past_key_values
        logits = out.logits[:, -1, : self.vocab_size].float().cpu().numpy()
        if logits.shape[1] < self.vocab_size:  # tokenizer larger than the embedding: pad
            pad = np.full((logits.shape[0], self.vocab_size - logits.shape[1]), -np.inf, dtype=np.float32)
            logits = np.concatenate([logits, pad], axis=1)
        return logits

    @torch.no_grad()
    def start(self, n: int) -> np.ndarray:
        ids = torch.tensor([self.prompt_ids], device=self.device).repeat(n, 1)
        return self._out(self.model(input_ids=ids, use_cache=True))

    @torch.no_grad()
    def step(self, tokens: np.ndarray) -> np.ndarray:
        ids = torch.as_tensor(np.asarray(tokens, dtype=np.int64), device=self.device)[:, None]
        return self._out(self.model(input_ids=ids, past_key_values=self.past, use_cache=True))

    def reorder(self, index: np.ndarray) -> None:
        idx = torch.as_tensor(np.asarray(index, dtype=np.int64), device=self.device)
        if hasattr(self.past, "reorder_cache"):
            self.past.reorder_cache(idx)
        else:  # legacy tuple caches
            self.past = tuple(tuple(t.index_select(0, idx) for t in layer) for layer in self.past)


def _prompt_ids(tokenizer: Any, prompt: str | list[int]) -> list[int]:
    if isinstance(prompt, list):
        ids = [int(t) for t in prompt]
    else:
        ids = list(tokenizer(prompt, add_special_tokens=True)["input_ids"]) if prompt else []
    if not ids:
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        if start is None:
            raise ConstrainError("empty prompt and the tokenizer has neither BOS nor EOS to start from")
        ids = [int(start)]
    return ids


def generate(
    model: Any,
    tokenizer: Any,
    prompt: str | list[int],
    constraint: Any,
    *,
    method: str = "awrs",
    max_new_tokens: int = 128,
    seed: int | Sequence[int] | None = None,
    n_particles: int = 1,
    num_samples: int = 1,
    smc_groups: int = 1,
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
) -> SamplingResult:
    """Generate constrained text from a Hugging Face causal LM.

    ``constraint`` is anything :func:`constrain.compile` accepts (``constrain.regex(...)``,
    ``constrain.json_schema(...)``, a grammar) or an already compiled constraint.  ``method``
    picks token masking (``"lcd"``), AWRS (``"awrs"``) or SMC (``"smc"``, ``n_particles``
    particles, AWRS proposals).  ``num_samples`` > 1 draws that many independent LCD/AWRS
    samples as rows of one batch (``result.particles``); ``smc_groups`` > 1 runs that many
    independent SMC runs of ``n_particles`` each in one batch (``result.chosen``).  The output is complete and valid even when cut by
    ``max_new_tokens``; :class:`~constrain.sampling.budget.BudgetTooSmall` is raised up front
    when no valid output fits.

    ``seed`` may be a list of ints: one independent random stream per sample row
    (``lcd``/``awrs``; ``num_samples`` defaults to its length) or per SMC run (``smc``;
    ``smc_groups`` defaults to its length).  Each row's output then depends only on its own
    seed, so ``generate(..., seed=[s1, ..., s20])`` is twenty seeded runs in one batch.
    """
    if seed is not None and not isinstance(seed, int | np.integer):
        seed = [int(x) for x in seed]
        if not seed:
            raise ValueError("seed is an empty list; pass an int or at least one seed")
        if method == "smc":
            smc_groups = len(seed) if smc_groups == 1 else smc_groups
        elif num_samples == 1:
            num_samples = len(seed)
        torch.manual_seed(seed[0])
    elif seed is not None:
        torch.manual_seed(int(seed))
    vocab = vocabulary_for(tokenizer, _model_vocab_size(model, tokenizer))
    compiled = _compiled(constraint, vocab)
    decoder = HFDecoder(model, _prompt_ids(tokenizer, prompt), len(vocab))
    n = n_particles * smc_groups if method == "smc" else num_samples
    was_training = model.training
    model.eval()
    try:
        return run(
            decoder,
            compiled,
            method=method,
            n=n,
            max_new_tokens=max_new_tokens,
            seed=seed,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            greedy=greedy,
            proposal=proposal,
            ess_threshold=ess_threshold,
            resampling=resampling,
            potential=potential,
            potential_every=potential_every,
            max_rejects=max_rejects,
            groups=smc_groups if method == "smc" else 1,
        )
    finally:
        model.train(was_training)
