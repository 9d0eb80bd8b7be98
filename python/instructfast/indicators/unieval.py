"""``naturalness``, ``coherence``, ``understandability``: UniEval dialog scores on ONNX Runtime.

Each score is P(Yes) / (P(Yes) + P(No)) at the first decoder step of the T5
``MingZhong/unieval-dialog`` (the exported graph returns only those two logits, so the
score is ``sigmoid(logit_yes - logit_no)``). Boolean-QA inputs, verbatim from the UniEval
repository (:func:`instructfast.prompts.unieval_input` builds them):

* naturalness: ``question: Is this a natural response in the dialogue? </s> response: {output}``
* coherence: ``question: Is this a coherent response given the dialogue history? </s> response: {output} </s> dialogue history: {history}``
* understandability: ``question: Is this an understandable response in the dialogue? </s> response: {output}``

history = instruction (+ "\\n" + input when present) + "\\n\\n"; a multi-turn record's earlier
turns come first, each on its own line. Inputs are truncated at 1024 tokens (the
``max_length`` of the export), as UniEval does; truncated rows are counted in the report notes.

Nulls (counted by reason): null output, empty output; for ``coherence`` also a null instruction.

Options: ``unieval_token_budget``, ``unieval_max_rows``, ``unieval_slack``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..columns import CanonicalBatch
from ..models.registry import slot_status
from ..options import ScoreOptions
from ..prompts import UNIEVAL_QUESTIONS, dialogue_prompts, unieval_input
from ..run_record import RunRecord
from .base import (
    EMPTY_OUTPUT,
    NULL_INSTRUCTION,
    NULL_OUTPUT,
    Availability,
    Indicator,
    NullCounter,
    OutputColumn,
    masked,
)

TRUNCATED = "input truncated at the UniEval window (1024 tokens)"


def yes_probability(logits: np.ndarray) -> np.ndarray:
    """P(Yes)/(P(Yes)+P(No)) from [n, 2] (yes, no) logits, computed stably in float64.

    >>> yes_probability(np.array([[2.0, 2.0], [0.0, -np.log(3.0)]])).round(6).tolist()
    [0.5, 0.75]
    """
    d = logits[:, 1].astype(np.float64) - logits[:, 0].astype(np.float64)
    return 1.0 / (1.0 + np.exp(d))


class UniEval(Indicator):
    name = "unieval"
    models = ("unieval",)
    columns = tuple(OutputColumn(d, pa.float64(), "UniEval dialog P(Yes)/(P(Yes)+P(No))") for d in UNIEVAL_QUESTIONS)

    @classmethod
    def availability(cls, options: ScoreOptions) -> Availability:
        return Availability.of(slot_status("unieval", options.models))

    def start(self) -> None:
        from ..models.slots import load_onnx_slot

        self.model, self.precision = load_onnx_slot("unieval", self.options, kinds=("unieval",))

    def record(self, run: RunRecord) -> None:
        run.add_model({**self.model.source_record(), "slot": "unieval"})
        run.implementations["onnx provider"] = self.model.provider
        self.record_precision(run)

    def compute(self, batch: CanonicalBatch, nulls: NullCounter) -> dict[str, pa.Array]:
        n = batch.num_rows
        self.note_precision(nulls, n)
        outs = batch.output.to_pylist()
        prompts = dialogue_prompts(batch) if "coherence" in self.wanted else [None] * n
        base: list[str | None] = [None] * n
        for i in range(n):
            if outs[i] is None:
                base[i] = NULL_OUTPUT
            elif not outs[i].strip():
                base[i] = EMPTY_OUTPUT
        result: dict[str, pa.Array] = {}
        for dim in self.wanted:
            reason = list(base)
            if dim == "coherence":
                for i in range(n):
                    if reason[i] is None and prompts[i] is None:
                        reason[i] = NULL_INSTRUCTION
            ok = [i for i in range(n) if reason[i] is None]
            texts = self.model.cut([unieval_input(dim, outs[i], prompts[i]) for i in ok])  # bounded work
            full, _ = self.model.encode(texts, truncate=False)
            long = self.model.too_long(full)
            nulls.note(dim, TRUNCATED, int(long.sum()))
            ids = [x for x in full] if not long.any() else self.model.encode(texts, truncate=True)[0]
            values = np.full(n, np.nan)
            if ok:
                values[ok] = yes_probability(self.model.run(ids))
            for r in {x for x in reason if x}:
                nulls.add(dim, r, reason.count(r))
            bad = np.array([r is not None for r in reason], dtype=bool)
            result[dim] = masked(values, bad, pa.float64())
        return result
