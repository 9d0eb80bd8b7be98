"""Scoring output tokens with a causal LM: exact token boundaries, length buckets, fused log-probs.

Prompt and output are tokenised **separately** and their ids concatenated, so the boundary
between scored and unscored tokens is exact (a joint tokenisation can merge tokens across
the join). The model body runs on length-sorted, right-padded batches; only the hidden states
at the positions that predict output tokens go through the LM head, via the fused
log-probability op, so full-vocabulary logits never exist for the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..batching import length_buckets
from .causal_lm import LoadedLM

ALPACA_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
    "\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)
ALPACA_INPUT_TEMPLATE = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)


@dataclass(frozen=True)
class PromptTemplate:
    """How instruction (+ input, + earlier turns) become the context the output is scored under.

    ``with_input`` is used when the row has a non-empty input; ``{history}`` (earlier turns of
    a multi-turn record) is prepended with ``history_prefix`` when present.
    """

    without_input: str = ALPACA_TEMPLATE
    with_input: str = ALPACA_INPUT_TEMPLATE
    history_prefix: str = "{history}\n\n"

    @classmethod
    def named(cls, name: str) -> "PromptTemplate":
        if name == "alpaca":
            return cls()
        if name == "plain":  # instruction and input joined by a newline, then a newline
            return cls("{instruction}\n", "{instruction}\n{input}\n")
        if "{instruction}" in name:  # a user-supplied format string
            return cls(name, name)
        msg = f"`prompt_template` must be 'alpaca', 'plain' or a format string with {{instruction}}, got {name!r}"
        raise ValueError(msg)

    def render(self, instruction: str, input: str | None, history: str | None) -> str:
        if input:
            text = self.with_input.format(instruction=instruction, input=input)
        else:
            text = self.without_input.format(instruction=instruction, input="")
        if history:
            text = self.history_prefix.format(history=history) + text
        return text


@dataclass
class Encoded:
    """Token ids of one row: context (not scored) then target (scored)."""

    context: list[int]
    target: list[int]


class LMScorer:
    """Sums of log p(target | context) for many rows, batched by length under a token budget."""

    def __init__(
        self,
        lm: LoadedLM,
        *,
        token_budget: int = 8192,
        max_rows: int = 64,
        max_length: int | None = None,
        slack: float | None = None,
    ):
        import torch

        self.lm = lm
        self.model = lm.model
        self.tok = lm.tokenizer
        self.token_budget = int(token_budget)
        self.max_rows = int(max_rows)
        self.max_length = int(max_length or lm.max_length)
        self.slack = slack
        self.device = next(self.model.parameters()).device
        self.pad_id = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        self.bos = self._bos_prefix()
        head = self.model.get_output_embeddings()
        self.head_weight = head.weight
        self.head_bias = getattr(head, "bias", None)
        self.body = getattr(self.model, self.model.base_model_prefix)
        cfg = self.model.config
        # Models that post-process logits (soft-capping, scaling) are scored from full logits.
        self.fused_ok = not (getattr(cfg, "final_logit_softcapping", None) or getattr(cfg, "logit_scale", None))
        self._torch = torch

    def _bos_prefix(self) -> list[int]:
        """The BOS the tokenizer adds on its own (none for tokenizers that declare but do not add it)."""
        bos = self.tok.bos_token_id
        if bos is None:
            return []
        ids = self.tok("a", add_special_tokens=True)["input_ids"]
        return [bos] if ids and ids[0] == bos else []

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        return self.tok(list(texts), add_special_tokens=False)["input_ids"]

    def logprob_sums(self, rows: Sequence[Encoded]) -> tuple[np.ndarray, np.ndarray]:
        """(sum of target log-probs, number of target tokens) per row, in input order.

        Each row must satisfy ``1 <= len(context)`` and ``len(context) + len(target) <= max_length``
        (the caller truncates); rows with no target give (0, 0).
        """
        n = len(rows)
        sums = np.zeros(n, dtype=np.float64)
        counts = np.zeros(n, dtype=np.int64)
        lengths = np.array([len(r.context) + len(r.target) for r in rows], dtype=np.int64)
        live = np.array([len(r.target) > 0 for r in rows], dtype=bool)
        idx_live = np.nonzero(live)[0]
        if not len(idx_live):
            return sums, counts
        for part in length_buckets(lengths[idx_live], self.token_budget, self.max_rows, self.slack):
            batch = idx_live[part]
            s, c = self._batch(rows, batch)
            sums[batch] = s
            counts[batch] = c
        return sums, counts

    def _batch(self, rows: Sequence[Encoded], batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        from ..indicators.logprob import fused_linear_logprobs, token_logprobs

        seqs = [rows[i].context + rows[i].target for i in batch]
        L = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), L), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), L), dtype=torch.long)
        b_idx, p_idx, tgt, seg = [], [], [], []
        for j, i in enumerate(batch):
            s = seqs[j]
            ids[j, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[j, : len(s)] = 1
            c, t = len(rows[i].context), len(rows[i].target)
            # the hidden state at position p predicts token p + 1
            b_idx.append(np.full(t, j))
            p_idx.append(np.arange(c - 1, c + t - 1))
            tgt.append(rows[i].target)
            seg.append(t)
        b_idx_t = torch.from_numpy(np.concatenate(b_idx)).to(self.device)
        p_idx_t = torch.from_numpy(np.concatenate(p_idx)).to(self.device)
        targets = torch.tensor([x for t in tgt for x in t], dtype=torch.long, device=self.device)
        # Without padding the mask is dropped so attention can take its plain causal path.
        attn = None if bool(mask.all()) else mask.to(self.device)
        with torch.inference_mode():
            out = self.body(input_ids=ids.to(self.device), attention_mask=attn)
            hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state
            h = hidden[b_idx_t, p_idx_t]
            if self.fused_ok:
                lp = fused_linear_logprobs(h, self.head_weight, targets, bias=self.head_bias)
            else:
                # Soft-capped / scaled logits: take them from the full model (correct, more memory).
                full = self.model(input_ids=ids.to(self.device), attention_mask=attn).logits
                lp = token_logprobs(full[b_idx_t, p_idx_t], targets)
        lp64 = lp.double().cpu().numpy()
        seg = np.asarray(seg)
        starts = np.concatenate([[0], np.cumsum(seg)[:-1]])
        return np.add.reduceat(lp64, starts), seg
