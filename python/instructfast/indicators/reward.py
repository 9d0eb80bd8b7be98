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
``reward_max_rows``, ``reward_slack`` (see :class:`instructfast.models.onnx_runtime.OnnxModel`).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pyarrow as pa

from ..columns import CanonicalBatch
from ..models.registry import ModelNotFound, ModelSource, resolve
from .base import Availability, Indicator, NullCounter, OutputColumn, ScoreOptions, masked

NULL_OUTPUT = "output is null"
EMPTY_OUTPUT = "output is empty"
NULL_INSTRUCTION = "instruction is null"
TOO_LONG = "text exceeds the reward model's window"
TRUNCATED = "text truncated to the reward model's window (on_overflow='truncate')"

OASST_TEMPLATE = "<|prompter|>{prompt}<|endoftext|><|assistant|>{output}<|endoftext|>"


def oasst_text(prompt: str, output: str) -> str:
    """The single string the OpenAssistant GPT-NeoX reward models score.

    >>> oasst_text("Hi?", "Hello.")
    '<|prompter|>Hi?<|endoftext|><|assistant|>Hello.<|endoftext|>'
    """
    return OASST_TEMPLATE.format(prompt=prompt, output=output)


def onnx_availability(slot: str, options: ScoreOptions) -> tuple[Availability, ModelSource | None]:
    """Availability of an ONNX-runtime indicator whose model fills ``slot``."""
    for mod in ("onnxruntime", "tokenizers"):
        if importlib.util.find_spec(mod) is None:
            return Availability(False, f"{mod} is not installed", "pip install 'instructfast[models]'"), None
    try:
        src = resolve(slot, options.models)
    except ModelNotFound as e:
        return Availability(False, str(e)), None
    if src.kind == "gguf":
        return Availability(False, f"{src.describe()}: a GGUF file cannot fill the {slot} slot"), None
    if src.kind != "onnx-folder":
        for mod in ("torch", "transformers", "onnxscript"):
            if importlib.util.find_spec(mod) is None:
                return (
                    Availability(
                        False,
                        f"{src.describe()} needs a one-time ONNX export, which needs {mod}",
                        f"run `instructfast export` where torch is installed, then --models {slot}=DIR",
                    ),
                    None,
                )
    return Availability(True, src.describe()), src


def load_onnx_slot(slot: str, options: ScoreOptions):
    """The shared ONNX model filling ``slot`` (exported into the cache first when given an HF folder)."""
    from ..models.export import cached_export
    from ..models.onnx_runtime import model_options, shared_model

    folder = cached_export(slot, resolve(slot, options.models))
    return shared_model(folder, device=options.device, threads=options.threads, **model_options(options.extra, slot))


def prompts_of(batch: CanonicalBatch) -> list[str | None]:
    """instruction (+ "\\n" + input), after the earlier turns of a multi-turn record."""
    prompt = batch.prompt_text().to_pylist()
    if batch.history is None:
        return prompt
    hist = batch.history.to_pylist()
    return [p if (p is None or not h) else f"{h}\n{p}" for p, h in zip(prompt, hist)]


class Reward(Indicator):
    name = "reward"
    models = ("reward",)
    columns = (OutputColumn("reward", pa.float64(), "raw reward-model logit on (instruction+input, output)"),)

    @classmethod
    def availability(cls, options: ScoreOptions) -> Availability:
        return onnx_availability("reward", options)[0]

    def start(self) -> None:
        self.model = load_onnx_slot("reward", self.options)
        if not self.model.kind.startswith("reward-"):
            msg = f"{folder} holds a {self.model.kind!r} export, not a reward model"
            raise ValueError(msg)
        self.on_overflow = str(self.options.extra.get("on_overflow", "null"))
        if self.on_overflow not in ("null", "truncate"):
            msg = f"`on_overflow` must be 'null' or 'truncate', got {self.on_overflow!r}"
            raise ValueError(msg)

    def compute(self, batch: CanonicalBatch, nulls: NullCounter) -> dict[str, pa.Array]:
        n = batch.num_rows
        prompts = prompts_of(batch)
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
        if self.model.kind == "reward-pair":
            items: list = [(prompts[i], outs[i]) for i in ok]
        else:
            items = [oasst_text(prompts[i], outs[i]) for i in ok]
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
