"""Model mode: constrained generation with a Hugging Face causal LM, per schema and engine.

The prompt follows the JSONSchemaBench paper's style (the schema in the prompt, then ask
for a JSON instance).  Masking engines share one greedy decoding loop — forward pass,
full mask, ``-inf`` outside it, argmax, advance — so the per-token times compare the
engines and not the loops.  Measured: grammar compile time, time to first token (prefill
+ first mask), time per output token after it, and compliance (the output parses and
validates with ``jsonschema``).  ``constrain-lcd`` / ``constrain-awrs`` call the project's
samplers through ``constrain.hf.generate`` when that layer is present, and record a clear
"sampler not available" compile error otherwise.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from constrain.cli.jsb.data import SchemaCase, is_valid
from constrain.cli.jsb.engines import ADAPTERS, CompileError

MODEL_ENGINES = ("constrain", "constrain-lcd", "constrain-awrs", "llguidance", "xgrammar", "outlines")

PROMPT = (
    "You need to generate a JSON object that matches the schema below. Output only the JSON.\n"
    "Schema:\n{schema}\nJSON:\n"
)


class ModelRunner:
    """Holds the model, the tokenizer and one adapter per engine for a worker's lifetime."""

    def __init__(self, config: dict[str, Any]) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(1)
        self.torch = torch
        self.model_dir = config["model"]
        self.tokenizer_dir = config.get("tokenizer") or self.model_dir
        self.model = AutoModelForCausalLM.from_pretrained(self.model_dir)
        self.model.eval()
        self.hf_tok = AutoTokenizer.from_pretrained(self.tokenizer_dir)
        self.max_new_tokens = int(config.get("max_new_tokens", 64))
        self.adapters: dict[str, Any] = {}
        self._hf_vocab: Any = None

    def _adapter(self, engine: str) -> Any:
        if engine not in self.adapters:
            a = ADAPTERS[engine](self.tokenizer_dir)
            a.load()
            self.adapters[engine] = a
        return self.adapters[engine]

    def run(self, case: SchemaCase, engine: str, on_phase: Callable[[str], None]) -> dict[str, Any]:
        prompt = PROMPT.format(schema=json.dumps(case.schema))
        if engine in ("constrain-lcd", "constrain-awrs"):
            return self._run_sampler(case, engine.split("-")[1], prompt, on_phase)
        adapter = self._adapter(engine)
        on_phase("compile")
        t0 = time.perf_counter()
        try:
            compiled = adapter.compile(case.schema)
        except CompileError as exc:
            return {"status": "compile_error", "compile_s": time.perf_counter() - t0, "error": str(exc)[:500]}
        except Exception as exc:  # noqa: BLE001
            return {"status": "crash", "compile_s": time.perf_counter() - t0, "error": repr(exc)[:500]}
        compile_s = time.perf_counter() - t0
        on_phase("match")
        try:
            out = self._masked_greedy(adapter, compiled, prompt)
        except Exception as exc:  # noqa: BLE001
            return {"status": "crash", "compile_s": compile_s, "error": repr(exc)[:500]}
        return {"status": "ok", "compile_s": compile_s, **out, **self._compliance(case, out["text"])}

    def _masked_greedy(self, adapter: Any, compiled: Any, prompt: str) -> dict[str, Any]:
        torch = self.torch
        ids = self.hf_tok(prompt, return_tensors="pt").input_ids
        m = adapter.matcher(compiled)
        eos = set(adapter.eos_ids)
        out_tokens: list[int] = []
        stamps: list[float] = []
        finished = False
        past = None
        inp = ids
        start = time.perf_counter()
        with torch.no_grad():
            for _ in range(self.max_new_tokens):
                res = self.model(input_ids=inp, past_key_values=past, use_cache=True)
                past = res.past_key_values
                logits = res.logits[0, -1].float()
                words = adapter.fill(m)
                allowed = np.unpackbits(np.ascontiguousarray(words).view(np.uint8), bitorder="little").astype(
                    bool
                )
                n = min(len(allowed), logits.shape[0])
                masked = torch.full_like(logits, float("-inf"))
                keep = torch.from_numpy(allowed[:n])
                masked[:n][keep] = logits[:n][keep]
                if not bool(torch.isfinite(masked).any()):
                    break  # dead end: the engine allows nothing
                tok = int(torch.argmax(masked))
                stamps.append(time.perf_counter())
                if tok in eos:
                    finished = True
                    break
                if not adapter.advance(m, tok):
                    break
                out_tokens.append(tok)
                inp = torch.tensor([[tok]])
        text = adapter.vocab.decode_bytes(out_tokens).decode("utf-8", errors="replace")
        ttft = stamps[0] - start if stamps else None
        tpot = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else None
        return {
            "text": text,
            "out_tokens": len(out_tokens),
            "finished": finished,
            "ttft_s": ttft,
            "tpot_s": tpot,
        }

    def _run_sampler(
        self, case: SchemaCase, method: str, prompt: str, on_phase: Callable[[str], None]
    ) -> dict:
        """Our samplers through ``constrain.hf.generate``; absent layer -> a clear compile error.

        The constraint is compiled here (timed) against ``constrain.hf.vocabulary_for`` the
        model, so generation time is not mixed with compile time.  Greedy, so runs repeat.
        """
        on_phase("compile")
        t0 = time.perf_counter()
        try:
            import constrain
            from constrain.integrations import hf

            if self._hf_vocab is None:
                vs = getattr(self.model.config, "vocab_size", None)
                self._hf_vocab = hf.vocabulary_for(self.hf_tok, vs)
            t0 = time.perf_counter()
            compiled = constrain.compile(constrain.json_schema(case.schema), self._hf_vocab)
        except (ImportError, AttributeError, NotImplementedError) as exc:
            return {
                "status": "compile_error",
                "compile_s": time.perf_counter() - t0,
                "error": f"sampler not available: {type(exc).__name__}: {exc}"[:500],
            }
        except Exception as exc:  # noqa: BLE001 - ConstrainError from the schema layer, etc.
            return {
                "status": "compile_error",
                "compile_s": time.perf_counter() - t0,
                "error": repr(exc)[:500],
            }
        compile_s = time.perf_counter() - t0
        on_phase("match")
        t1 = time.perf_counter()
        try:
            res = hf.generate(
                self.model,
                self.hf_tok,
                prompt,
                compiled,
                method=method,
                max_new_tokens=self.max_new_tokens,
                greedy=True,
                seed=0,
            )
        except TypeError as exc:
            return {
                "status": "compile_error",
                "compile_s": compile_s,
                "error": f"sampler API mismatch: {exc}"[:500],
            }
        except Exception as exc:  # noqa: BLE001
            return {"status": "crash", "compile_s": compile_s, "error": repr(exc)[:500]}
        total = time.perf_counter() - t1
        text = res.text if hasattr(res, "text") else str(res)
        n = max(1, len(getattr(res, "tokens", []) or []))
        # hf.generate does not expose the first-token stamp: report its average per token
        out = {
            "text": text,
            "out_tokens": n,
            "finished": bool(getattr(res, "eos", False)),
            "ttft_s": None,
            "tpot_s": total / n,
        }
        return {"status": "ok", "compile_s": compile_s, **out, **self._compliance(case, text)}

    @staticmethod
    def _compliance(case: SchemaCase, text: str) -> dict[str, Any]:
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, ValueError):
            return {"compliant": False, "parses": False}
        return {"compliant": is_valid(case.schema, value), "parses": True}
