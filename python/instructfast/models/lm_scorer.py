"""Scoring output tokens with a causal LM: exact token boundaries, length buckets, fused log-probs.

Prompt and output are tokenised **separately** and their ids concatenated, so the boundary
between scored and unscored tokens is exact (a joint tokenisation can merge tokens across
the join). The model body runs on length-sorted, right-padded batches; only the hidden states
at the positions that predict output tokens go through the LM head, via the fused
log-probability op, so full-vocabulary logits never exist for the batch.

Rows that start with the same tokens (every row of a prompt template shares its preamble)
are grouped, and the group's shared prefix runs through the model once: its keys and values
are computed for one row and broadcast to each batch of the group, and only the rest of each
row goes through the layers. Causal attention makes this exact (the prefix's states do not depend on what
follows); on a CPU, where the forward pass is compute-bound, the preamble is a quarter of
the tokens of an Alpaca record.
"""

from __future__ import annotations

import copy
import functools
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..batching import length_buckets
from .causal_lm import LoadedLM, TextEncoder, text_encoder


@dataclass
class Encoded:
    """Token ids of one row: context (not scored) then target (scored)."""

    context: list[int]
    target: list[int]


@functools.cache
def _frozen_layer_class():
    """A dynamic cache layer whose ``update`` returns prefix + new states and stores nothing."""
    import torch
    from transformers.cache_utils import DynamicLayer

    class FrozenPrefixLayer(DynamicLayer):
        def update(self, key_states, value_states, *args, **kwargs):
            # _batch_view gives every frozen layer the prefix's keys and values
            assert self.keys is not None and self.values is not None
            return torch.cat([self.keys, key_states], dim=-2), torch.cat([self.values, value_states], dim=-2)

    return FrozenPrefixLayer


def _batch_view(cache, rows: int):
    """A copy of a one-row prefix KV cache that serves ``rows`` rows and is never written to.

    Keys/values are broadcast views of the prefix's (no copy), and the batch's own keys and
    values are freed layer by layer instead of being held for the whole forward pass.
    """
    frozen = _frozen_layer_class()
    view = copy.copy(cache)
    view.layers = []
    for layer in cache.layers:
        lv = copy.copy(layer)
        lv.__class__ = frozen
        lv.keys = layer.keys.expand(rows, *layer.keys.shape[1:])
        lv.values = layer.values.expand(rows, *layer.values.shape[1:])
        view.layers.append(lv)
    return view


class LMScorer:
    """Sums of log p(target | context) for many rows, batched by length under a token budget.

    ``share_prefix``: run a token prefix shared by a group's rows once (see the module notes);
    ``min_shared`` is the shortest prefix worth it. Rows are first grouped by their first
    ``group_tokens`` context tokens so that rows of one template land in the same batches.
    """

    group_tokens = 16
    min_group = 8

    def __init__(
        self,
        lm: LoadedLM,
        *,
        token_budget: int = 8192,
        max_rows: int = 64,
        max_length: int | None = None,
        slack: float | None = None,
        share_prefix: bool = True,
        min_shared: int = 8,
    ):
        import torch

        self.lm = lm
        self.model = lm.model
        self.tok = lm.tokenizer
        self.token_budget = int(token_budget)
        self.max_rows = int(max_rows)
        self.max_length = int(max_length or lm.max_length)
        self.slack = slack
        self.share_prefix = bool(share_prefix)
        self.min_shared = int(min_shared)
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

    @property
    def encoder(self) -> TextEncoder:
        """Thread-safe token ids (transformers' ``__call__`` is not), made on first use: a caller that
        scores token ids only (the GPU check, with a stub tokenizer) never needs one."""
        return text_encoder(self.tok)

    def _bos_prefix(self) -> list[int]:
        """The BOS the tokenizer adds on its own (none for tokenizers that declare but do not add it)."""
        bos = self.tok.bos_token_id
        if bos is None:
            return []
        ids = self.tok("a", add_special_tokens=True)["input_ids"]
        return [bos] if ids and ids[0] == bos else []

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of ``texts`` without special tokens (safe from many threads)."""
        return self.encoder.encode(list(texts))

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
        with self.lm.run_lock:  # one pass at a time per model (see LoadedLM.run_lock)
            self._run_groups(rows, idx_live, lengths, sums, counts)
        return sums, counts

    def _run_groups(
        self, rows: Sequence[Encoded], idx_live: np.ndarray, lengths: np.ndarray, sums: np.ndarray, counts: np.ndarray
    ) -> None:
        for group in self._groups(rows, idx_live):
            shared = self._shared_prefix(rows, group)
            prefix = self._prefix_cache(rows[group[0]].context[:shared]) if shared else None
            shared = shared if prefix is not None else 0
            # the shared prefix runs once per group, so it does not count against the budget
            for part in length_buckets(lengths[group] - shared, self.token_budget, self.max_rows, self.slack):
                batch = group[part]
                s, c = self._batch(rows, batch, shared, prefix)
                sums[batch] = s
                counts[batch] = c

    def _groups(self, rows: Sequence[Encoded], idx: np.ndarray) -> list[np.ndarray]:
        """Row positions grouped by their first ``group_tokens`` context tokens.

        Keys shared by fewer than ``min_group`` rows (no template, or a rare one) go to one
        mixed group, so grouping never fragments batches.
        """
        g = self.group_tokens
        if not self.share_prefix or not self.fused_ok:
            return [idx]
        keys = [tuple(rows[i].context[:g]) if len(rows[i].context) > g else None for i in idx]
        common = {k for k, c in Counter(keys).items() if k is not None and c >= self.min_group}
        out: dict[object, list[int]] = {}
        for i, k in zip(idx, keys):
            out.setdefault(k if k in common else None, []).append(int(i))
        return [np.asarray(v, dtype=np.int64) for v in out.values()]

    def _shared_prefix(self, rows: Sequence[Encoded], batch: np.ndarray) -> int:
        """Tokens every row of ``batch`` starts with, leaving each row at least one context token
        after it (the hidden state that predicts the first target token must be computed)."""
        if not self.share_prefix or not self.fused_ok or len(batch) < 2:
            return 0
        cap = min(len(rows[i].context) for i in batch) - 1
        p = len(os.path.commonprefix([rows[i].context[:cap] for i in batch]))
        return p if p >= self.min_shared else 0

    def _prefix_cache(self, prefix: list[int]):
        """The one-row KV cache of ``prefix``, or None for cache layouts we do not share
        (sliding-window and other non-plain layers)."""
        from transformers.cache_utils import DynamicLayer

        torch = self._torch
        with torch.inference_mode():
            ids = torch.tensor([prefix], dtype=torch.long, device=self.device)
            cache = self.body(input_ids=ids, use_cache=True).past_key_values
        layers = getattr(cache, "layers", None)
        if not layers or any(type(layer) is not DynamicLayer for layer in layers):
            return None
        return cache

    def _batch(
        self, rows: Sequence[Encoded], batch: np.ndarray, shared: int = 0, prefix=None
    ) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        from ..ops.logprob import fused_linear_logprobs, token_logprobs

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
            if self.fused_ok:
                # positions before `shared` come from the group's prefix cache
                past = _batch_view(prefix, len(batch)) if shared else None
                out = self.body(input_ids=ids[:, shared:].to(self.device), attention_mask=attn, past_key_values=past)
                hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state
                h = hidden[b_idx_t, p_idx_t - shared]
                lp = fused_linear_logprobs(h, self.head_weight, targets, bias=self.head_bias)
            else:
                # Soft-capped / scaled logits: take them from the full model (correct, more memory).
                full = self.model(input_ids=ids.to(self.device), attention_mask=attn).logits
                lp = token_logprobs(full[b_idx_t, p_idx_t], targets)
        lp64 = lp.double().cpu().numpy()
        seg_lens = np.asarray(seg)
        starts = np.concatenate([[0], np.cumsum(seg_lens)[:-1]])
        return np.add.reduceat(lp64, starts), seg_lens
