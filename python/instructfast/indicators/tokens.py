"""``tokens``: ``input_tokens`` and ``output_tokens``, counted with the LM slot's tokenizer.

The rule's ``Len`` is ``output_tokens`` (the paper counted LLaMA-2 tokens). No special tokens
are counted; only the tokenizer is loaded, never the model.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..columns import CanonicalBatch
from ..models.long_text import PIECE_CHARS, count_long
from ..models.registry import resolve, slot_status
from ..options import ScoreOptions
from ..run_record import RunRecord
from .base import NULL_INSTRUCTION, NULL_OUTPUT, Availability, Indicator, NullCounter, OutputColumn, masked

COUNTED_IN_PIECES = f"text over {PIECE_CHARS:,} characters counted in pieces split where a word starts"


class Tokens(Indicator):
    name = "tokens"
    models = ("lm",)
    columns = (
        OutputColumn("input_tokens", pa.int64(), "LM tokens of instruction+input (no special tokens)"),
        OutputColumn("output_tokens", pa.int64(), "LM tokens of the output (no special tokens); the rule's Len"),
    )

    @classmethod
    def availability(cls, options: ScoreOptions) -> Availability:
        return Availability.of(slot_status("lm", options.models))

    def start(self) -> None:
        from ..models.causal_lm import load_lm_tokenizer, text_encoder

        self.source = resolve("lm", self.options.models)
        self.tok = load_lm_tokenizer(self.source, verify=self.options.model.verify_models)
        self.encoder = text_encoder(self.tok)  # thread-safe (transformers' __call__ is not)

    def record(self, run: RunRecord) -> None:
        from ..models.causal_lm import verified

        run.add_model({**self.source.record(), "verified": verified(self.source)})

    def _count(self, arr: pa.Array, nulls: NullCounter, column: str) -> tuple[np.ndarray, np.ndarray]:
        texts = arr.to_pylist()
        valid = np.array([t is not None for t in texts], dtype=bool)
        counts = np.zeros(len(texts), dtype=np.int64)
        # A text of millions of characters is counted in word-aligned pieces (bounded memory).
        long = [i for i, t in enumerate(texts) if t is not None and len(t) > PIECE_CHARS]
        short = [i for i in np.flatnonzero(valid) if len(texts[i]) <= PIECE_CHARS]
        counts[short] = [len(x) for x in self.encoder.encode([texts[i] for i in short])]
        for i in long:
            counts[i] = count_long(texts[i], self.encoder.encode)
        nulls.note(column, COUNTED_IN_PIECES, len(long))
        return counts, ~valid

    def compute(self, batch: CanonicalBatch, nulls: NullCounter) -> dict[str, pa.Array]:
        out: dict[str, pa.Array] = {}
        if "input_tokens" in self.wanted:
            c, bad = self._count(batch.prompt_text(), nulls, "input_tokens")
            nulls.add("input_tokens", NULL_INSTRUCTION, int(bad.sum()))
            out["input_tokens"] = masked(c, bad, pa.int64())
        if "output_tokens" in self.wanted:
            c, bad = self._count(batch.output, nulls, "output_tokens")
            nulls.add("output_tokens", NULL_OUTPUT, int(bad.sum()))
            out["output_tokens"] = masked(c, bad, pa.int64())
        return out
