"""LM indicators: ``input_tokens``/``output_tokens``, ``perplexity`` and ``ifd``.

``perplexity`` = exp(mean negative log-likelihood of the output tokens) given the prompt
template filled with instruction (+ input, + earlier turns); the prompt tokens are not
scored. ``ifd`` (Cherry LLM) = that conditional perplexity / the unconditional perplexity of
the output (context: BOS only; for tokenizers that add no BOS the first output token is the
context and is not scored in the unconditional pass).

Options (``score(..., options={...})``): ``prompt_template`` ("alpaca" default, "plain" or a
format string with ``{instruction}`` and ``{input}``), ``lm_token_budget`` (padded tokens per
batch, default 8192 on CPU, 65536 on CUDA), ``lm_max_rows`` (64), ``lm_pad_slack`` (padding allowed per batch as a fraction of real
tokens: 0.05 on CPU, where the forward pass is compute-bound, 0.5 on CUDA), ``lm_max_length`` (the
model's window), ``on_overflow`` ("null" default: an output that alone does not fit the window
gives null; "truncate": score its first tokens), ``lm_dtype`` ("float32", "bfloat16", "float16"), ``lm_share_prefix`` (True: the prompt
template's preamble, shared by every row, runs through the model once per group of rows
instead of once per row; exact, since attention is causal).
"""

from __future__ import annotations

import importlib.util
from typing import ClassVar

import numpy as np
import pyarrow as pa

from ..columns import CanonicalBatch
from ..models.registry import ModelNotFound, resolve
from .base import Availability, Indicator, NullCounter, OutputColumn, ScoreOptions, masked

NULL_OUTPUT = "output is null"
NULL_INSTRUCTION = "instruction is null"
NO_TOKENS = "output has no tokens"
TOO_LONG = "output alone exceeds the LM window"
TOO_SHORT_IFD = "output has one token and the tokenizer adds no BOS (no unconditional context)"
PROMPT_TRUNCATED = "prompt truncated from the left to fit the LM window"
OUTPUT_TRUNCATED = "output truncated to the LM window (on_overflow='truncate')"


def _lm_availability(options: ScoreOptions) -> Availability:
    for mod in ("torch", "transformers"):
        if importlib.util.find_spec(mod) is None:
            return Availability(
                False,
                f"{mod} is not installed",
                "pip install torch==2.13.0 first, then pip install 'instructfast[models]'",
            )
    try:
        src = resolve("lm", options.models)
    except ModelNotFound as e:
        return Availability(False, str(e))
    return Availability(True, src.describe())


class _LMIndicator(Indicator):
    models = ("lm",)

    @classmethod
    def availability(cls, options: ScoreOptions) -> Availability:
        return _lm_availability(options)

    def _device(self) -> str:
        if self.options.device:
            return self.options.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def start(self) -> None:
        from ..models.causal_lm import load_causal_lm
        from ..models.lm_scorer import LMScorer, PromptTemplate

        dev = self._device()
        ex = self.options.extra
        self.lm = load_causal_lm(resolve("lm", self.options.models), device=dev, dtype=ex.get("lm_dtype"))
        budget = int(ex.get("lm_token_budget", 65_536 if dev.startswith("cuda") else 8192))
        self.scorer = LMScorer(
            self.lm,
            token_budget=budget,
            max_rows=int(ex.get("lm_max_rows", 64)),
            max_length=ex.get("lm_max_length"),
            slack=float(ex.get("lm_pad_slack", 0.5 if dev.startswith("cuda") else 0.05)),
            share_prefix=str(ex.get("lm_share_prefix", True)).lower() not in ("false", "0", "no"),
        )
        self.template = PromptTemplate.named(str(ex.get("prompt_template", "alpaca")))
        self.on_overflow = str(ex.get("on_overflow", "null"))
        if self.on_overflow not in ("null", "truncate"):
            msg = f"`on_overflow` must be 'null' or 'truncate', got {self.on_overflow!r}"
            raise ValueError(msg)


class Tokens(_LMIndicator):
    name = "tokens"
    columns = (
        OutputColumn("input_tokens", pa.int64(), "LM tokens of instruction+input (no special tokens)"),
        OutputColumn("output_tokens", pa.int64(), "LM tokens of the output (no special tokens); the rule's Len"),
    )

    def start(self) -> None:
        from ..models.causal_lm import load_lm_tokenizer

        self.tok = load_lm_tokenizer(resolve("lm", self.options.models))

    def _count(self, arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        texts = arr.to_pylist()
        valid = np.array([t is not None for t in texts], dtype=bool)
        ids = self.tok([t for t in texts if t is not None], add_special_tokens=False)["input_ids"] if valid.any() else []
        counts = np.zeros(len(texts), dtype=np.int64)
        counts[valid] = [len(x) for x in ids]
        return counts, ~valid

    def compute(self, batch: CanonicalBatch, nulls: NullCounter) -> dict[str, pa.Array]:
        out: dict[str, pa.Array] = {}
        if "input_tokens" in self.wanted:
            c, bad = self._count(batch.prompt_text())
            nulls.add("input_tokens", NULL_INSTRUCTION, int(bad.sum()))
            out["input_tokens"] = masked(c, bad, pa.int64())
        if "output_tokens" in self.wanted:
            c, bad = self._count(batch.output)
            nulls.add("output_tokens", NULL_OUTPUT, int(bad.sum()))
            out["output_tokens"] = masked(c, bad, pa.int64())
        return out


class Perplexity(_LMIndicator):
    name = "logprob"  # the engine's name; "perplexity" and "ifd" are its columns
    columns: ClassVar = (
        OutputColumn("perplexity", pa.float64(), "exp(mean NLL of the output tokens | prompt template)"),
        OutputColumn("ifd", pa.float64(), "conditional / unconditional output perplexity (Cherry LLM IFD)"),
    )

    def compute(self, batch: CanonicalBatch, nulls: NullCounter) -> dict[str, pa.Array]:
        from ..models.lm_scorer import Encoded

        n = batch.num_rows
        inst = batch.instruction.to_pylist()
        outs = batch.output.to_pylist()
        inps = batch.input.to_pylist() if batch.input is not None else [None] * n
        hist = batch.history.to_pylist() if batch.history is not None else [None] * n
        reason = [None] * n
        for i in range(n):
            if outs[i] is None:
                reason[i] = NULL_OUTPUT
            elif inst[i] is None:
                reason[i] = NULL_INSTRUCTION
        ok = [i for i in range(n) if reason[i] is None]
        prompts = [self.template.render(inst[i], inps[i], hist[i]) for i in ok]
        ctx_ids = self.scorer.tokenize(prompts)
        out_ids = self.scorer.tokenize([outs[i] for i in ok])
        bos = self.scorer.bos
        window = self.scorer.max_length
        cond: list[Encoded] = [Encoded([], [])] * n
        uncond: list[Encoded] = [Encoded([], [])] * n
        want_ifd = "ifd" in self.wanted
        for k, i in enumerate(ok):
            tgt = out_ids[k]
            if not tgt:
                reason[i] = NO_TOKENS
                continue
            room = window - max(len(bos), 1)  # at least one context token precedes the output
            if len(tgt) > room:
                if self.on_overflow == "null":
                    reason[i] = TOO_LONG
                    continue
                tgt = tgt[:room]
                nulls.note("perplexity", OUTPUT_TRUNCATED, 1)
            body = ctx_ids[k]
            if len(bos) + len(body) + len(tgt) > window:
                keep = window - len(tgt) - len(bos)  # >= 1 when there is no BOS (room above)
                body = body[len(body) - keep :] if keep > 0 else []
                nulls.note("perplexity", PROMPT_TRUNCATED, 1)
            ctx = bos + body
            if not ctx:  # empty prompt and no BOS: the first output token becomes the context
                ctx, tgt = tgt[:1], tgt[1:]
            cond[i] = Encoded(ctx, tgt)
            if want_ifd:
                uncond[i] = Encoded(bos, tgt) if bos else Encoded(tgt[:1], tgt[1:])
        s, c = self.scorer.logprob_sums(cond)
        ppl = np.full(n, np.nan)
        has = c > 0
        ppl[has] = np.exp(-s[has] / c[has])
        bad = np.array([r is not None for r in reason], dtype=bool)
        for r in set(x for x in reason if x):
            nulls.add("perplexity", r, reason.count(r))
        result = {}
        if "perplexity" in self.wanted:
            result["perplexity"] = masked(ppl, bad | ~has, pa.float64())
        if want_ifd:
            su, cu = self.scorer.logprob_sums(uncond)
            ifd = np.full(n, np.nan)
            has_u = has & (cu > 0)
            ifd[has_u] = ppl[has_u] / np.exp(-su[has_u] / cu[has_u])
            short = ~bad & has & ~has_u
            for r in set(x for x in reason if x):
                nulls.add("ifd", r, reason.count(r))
            nulls.add("ifd", TOO_SHORT_IFD, int(short.sum()))
            result["ifd"] = masked(ifd, ~has_u, pa.float64())
        return result
