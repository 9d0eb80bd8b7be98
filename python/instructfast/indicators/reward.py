"""``reward``: the raw scalar logit of a reward model on (instruction+input, output), on ONNX Runtime.

Two input formats, chosen by the exported folder's manifest kind:

* ``reward-pair`` (e.g. ``OpenAssistant/reward-model-deberta-v3-large-v2``): the text pair
  (prompt, output) into a sequence classifier; score = its logit;
* ``reward-oasst`` (the paper's ``OpenAssistant/oasst-rm-2.1-pythia-1.4b-epoch-2.5``): one
  string ``<|prompter|>{prompt}<|endoftext|><|assistant|>{output}<|endoftext|>``; score = the
  scalar head at the last token.

prompt = instruction, plus "\\n" + input when the input is non-empty; a multi-turn record's
earlier turns (``history``) come first, followed by "\\n". The value is on the raw logit
scale of the model used: a rule's reward coefficient only applies to the model it was fitted with.

Nulls (counted by reason): null output, empty output, null instruction, and text longer than
the model's window (``on_overflow="null"``, the default; ``"truncate"`` scores the first
``max_length`` tokens instead: the pair is cut longest-first, the OASST string at its end).

Options (``score(..., options={...})``): ``on_overflow``, ``reward_token_budget``,
``reward_max_rows``, ``reward_slack`` (:class:`instructfast.options.RewardOptions`; see
:class:`instructfast.models.onnx_runtime.OnnxModel`). The OASST string is
:func:`instructfast.prompts.oasst_text`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..columns import CanonicalBatch
from ..models.registry import slot_status
from ..options import ScoreOptions
from ..prompts import dialogue_prompts, oasst_text
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

TOO_LONG = "text exceeds the reward model's window"
TRUNCATED = "text truncated to the reward model's window (on_overflow='truncate')"


class Reward(Indicator):
    name = "reward"
    models = ("reward",)
    columns = (OutputColumn("reward", pa.float64(), "raw reward-model logit on (instruction+input, output)"),)

    @classmethod
    def availability(cls, options: ScoreOptions) -> Availability:
        return Availability.of(slot_status("reward", options.models))

    def start(self) -> None:
        from ..models.slots import load_onnx_slot

        self.model, self.precision = load_onnx_slot("reward", self.options, kinds=("reward-oasst", "reward-pair"))
        self.on_overflow = self.options.model.on_overflow

    def record(self, run: RunRecord) -> None:
        run.add_model({**self.model.source_record(), "slot": "reward"})
        run.implementations["onnx provider"] = self.model.provider
        self.record_precision(run)

    def compute(self, batch: CanonicalBatch, nulls: NullCounter) -> dict[str, pa.Array]:
        n = batch.num_rows
        self.note_precision(nulls, n)
        prompts = dialogue_prompts(batch)
        outs = batch.output.to_pylist()
        reason: list[str | None] = [None] * n
        for i in range(n):
            if outs[i] is None:
                reason[i] = NULL_OUTPUT
            elif not outs[i].strip():
                reason[i] = EMPTY_OUTPUT
            elif prompts[i] is None:
                reason[i] = NULL_INSTRUCTION
        ok = [i for i in range(n) if reason[i] is None]
        # texts far past the window are cut first: the same overflow answer, without tokenising a book
        cut_prompts = self.model.cut([prompts[i] or "" for i in ok])
        cut_outs = self.model.cut([outs[i] for i in ok])
        if self.model.kind == "reward-pair":
            items: list = list(zip(cut_prompts, cut_outs))
        else:
            items = self.model.cut([oasst_text(p, o) for p, o in zip(cut_prompts, cut_outs)])
        ids, types = self.model.encode(items, truncate=False)
        long = self.model.too_long(ids)
        if long.any():
            if self.on_overflow == "null":
                for k in np.nonzero(long)[0]:
                    reason[ok[k]] = TOO_LONG
                keep = ~long
                ids = [x for x, k in zip(ids, keep) if k]
                types = None if types is None else [x for x, k in zip(types, keep) if k]
                ok = [i for i, k in zip(ok, keep) if k]
            else:
                nulls.note("reward", TRUNCATED, int(long.sum()))
                if self.model.kind == "reward-pair":
                    redo = [items[k] for k in np.nonzero(long)[0]]
                    r_ids, r_types = self.model.encode(redo, truncate=True)
                    for j, k in enumerate(np.nonzero(long)[0]):
                        ids[k] = r_ids[j]
                        if types is not None and r_types is not None:
                            types[k] = r_types[j]
                else:
                    ids = [x[: self.model.max_length] for x in ids]
        values = np.full(n, np.nan)
        if ok:
            values[ok] = self.model.run(ids, types).astype(np.float64)
        for r in {x for x in reason if x}:
            nulls.add("reward", r, reason.count(r))
        bad = np.array([r is not None for r in reason], dtype=bool)
        return {"reward": masked(values, bad, pa.float64())}
