"""``logprob``: the ``perplexity`` and ``ifd`` columns, from one causal-LM pass machinery.

``perplexity`` = exp(mean negative log-likelihood of the output tokens) given the prompt
template filled with instruction (+ input, + earlier turns); the prompt tokens are not
scored. ``ifd`` (Cherry LLM) = that conditional perplexity / the unconditional perplexity of
the output (context: BOS only; for tokenizers that add no BOS the first output token is the
context and is not scored in the unconditional pass).

The LM engine is :mod:`instructfast.models.lm_scorer`; the per-token log-probabilities come from
:mod:`instructfast.ops.logprob` (Triton kernels in ``kernels/logprob.py`` and
``kernels/fused_linear_logprob.py`` on CUDA, the torch twin elsewhere).

Options (:class:`instructfast.options.LMOptions`; ``score(..., options={...})``):
``prompt_template`` ("alpaca" default, "plain" or a format string with ``{instruction}`` and
``{input}``), ``lm_token_budget`` (padded tokens per batch, default 8192 on CPU, 65536 on CUDA),
``lm_max_rows`` (64), ``lm_pad_slack`` (padding allowed per batch as a fraction of real tokens:
0.05 on CPU, where the forward pass is compute-bound, 0.5 on CUDA), ``lm_max_length`` (the
model's window), ``lm_precision`` ("fp32", "bf16", "fp16", "auto"; default ``precision``, else fp32 on
CPU and bf16 on CUDA; ``lm_dtype`` is its deprecated spelling), ``lm_share_prefix`` (True: the
prompt template's preamble, shared by every row, runs through the model once per group of rows
instead of once per row; exact, since attention is causal); and ``on_overflow`` ("null" default:
an output that alone does not fit the window gives null; "truncate": score its first tokens).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa

from ..columns import CanonicalBatch
from ..models.long_text import cut_texts
from ..models.precision import TORCH_DTYPES, TORCH_FORMATS, Ask, resolve_torch
from ..models.registry import resolve, slot_status
from ..options import ScoreOptions
from ..prompts import PromptTemplate
from ..run_record import RunRecord
from .base import NULL_INSTRUCTION, NULL_OUTPUT, Availability, Indicator, NullCounter, OutputColumn, masked

NO_TOKENS = "output has no tokens"
TOO_LONG = "output alone exceeds the LM window"
TOO_SHORT_IFD = "output has one token and the tokenizer adds no BOS (no unconditional context)"
PROMPT_TRUNCATED = "prompt truncated from the left to fit the LM window"
OUTPUT_TRUNCATED = "output truncated to the LM window (on_overflow='truncate')"


class LogProb(Indicator):
    name = "logprob"  # the engine's name; "perplexity" and "ifd" are its columns
    models = ("lm",)
    columns: ClassVar = (
        OutputColumn("perplexity", pa.float64(), "exp(mean NLL of the output tokens | prompt template)"),
        OutputColumn("ifd", pa.float64(), "conditional / unconditional output perplexity (Cherry LLM IFD)"),
    )

    @classmethod
    def availability(cls, options: ScoreOptions) -> Availability:
        return Availability.of(slot_status("lm", options.models))

    def start(self) -> None:
        from ..models.causal_lm import load_causal_lm
        from ..models.lm_scorer import LMScorer

        opts, lm = self.options, self.options.lm
        dev = opts.resolved_device()
        cuda = dev.startswith("cuda")
        self.template = PromptTemplate.named(lm.prompt_template)  # a bad template fails before the load
        # a precision the machine cannot run fails here, before the model loads
        self.precision = resolve_torch("lm", Ask(lm.precision, opts.model.precision).of(TORCH_FORMATS), dev)
        self.lm = load_causal_lm(
            resolve("lm", opts.models),
            device=dev,
            dtype=TORCH_DTYPES[self.precision.precision],
            verify=opts.model.verify_models,
        )
        self.scorer = LMScorer(
            self.lm,
            token_budget=lm.token_budget or (65_536 if cuda else 8192),
            max_rows=lm.max_rows,
            max_length=lm.max_length,
            slack=lm.pad_slack if lm.pad_slack is not None else (0.5 if cuda else 0.05),
            share_prefix=lm.share_prefix,
        )
        self.on_overflow = opts.model.on_overflow
        self.device = dev

    def record(self, run: RunRecord) -> None:
        from ..ops.logprob import resolve_impl

        run.add_model({**self.lm.source.record(), "verified": self.lm.verified})
        run.implementations["lm device"] = self.device
        run.implementations["lm dtype"] = str(self.lm.model.dtype).removeprefix("torch.")
        self.record_precision(run)
        run.implementations["logprob"] = resolve_impl(self.device, "fused_linear_logprob")[1]

    def compute(self, batch: CanonicalBatch, nulls: NullCounter) -> dict[str, pa.Array]:
        from ..models.lm_scorer import Encoded

        n = batch.num_rows
        self.note_precision(nulls, n)
        inst = batch.instruction.to_pylist()
        outs = batch.output.to_pylist()
        inps = batch.input.to_pylist() if batch.input is not None else [None] * n
        hist = batch.history.to_pylist() if batch.history is not None else [None] * n
        reason: list[str | None] = [None] * n
        for i in range(n):
            if outs[i] is None:
                reason[i] = NULL_OUTPUT
            elif inst[i] is None:
                reason[i] = NULL_INSTRUCTION
        ok = [i for i in range(n) if reason[i] is None]
        bos = self.scorer.bos
        window = self.scorer.max_length
        # Texts far past the window are cut first (the prompt keeps its end, the output its start):
        # the overflow policy sees the same answer, without tokenising all of a book (models.long_text).
        enc = self.scorer.encoder
        prompts, _ = cut_texts(
            [self.template.render(inst[i], inps[i], hist[i]) for i in ok], window, enc.count, enc.per_token, tail=True
        )
        outputs, _ = cut_texts([outs[i] for i in ok], window, enc.count, enc.per_token)
        ctx_ids = self.scorer.tokenize(prompts)
        out_ids = self.scorer.tokenize(outputs)
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
