"""Every record text format in one place: what each model reads for a record.

* :class:`PromptTemplate`: the context a causal LM scores the output under (``perplexity``,
  ``ifd``); Alpaca's template by default;
* :func:`dialogue_prompts`: instruction (+ "\\n" + input), after a multi-turn record's earlier
  turns; what the reward model and UniEval's dialogue history read;
* :func:`oasst_text`: the single string the OpenAssistant GPT-NeoX reward models score;
* :func:`unieval_input`: UniEval's Boolean-QA input for one dimension (verbatim from the
  UniEval repository);
* :func:`embedding_texts`: the text a sentence embedder reads (``knn_<i>``, diverse selection).

Models, exports and indicators import these; none of them spells a format of its own, so an
ONNX export is verified on exactly the strings the indicator later feeds it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .columns import CanonicalBatch
from .errors import OptionError

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

    Examples
    --------
    >>> PromptTemplate.named("plain").render("Add.", "2+2", None)
    'Add.\\n2+2\\n'
    >>> PromptTemplate.named("Q: {instruction}\\nA: ").render("Why?", None, "User: hi")
    'User: hi\\n\\nQ: Why?\\nA: '
    """

    without_input: str = ALPACA_TEMPLATE
    with_input: str = ALPACA_INPUT_TEMPLATE
    history_prefix: str = "{history}\n\n"

    @classmethod
    def named(cls, name: str) -> PromptTemplate:
        """``"alpaca"``, ``"plain"`` (instruction and input joined by newlines) or a format string."""
        if name == "alpaca":
            return cls()
        if name == "plain":
            return cls("{instruction}\n", "{instruction}\n{input}\n")
        if "{instruction}" in name:  # a user-supplied format string
            return cls(name, name)
        msg = f"`prompt_template` must be 'alpaca', 'plain' or a format string with {{instruction}}, got {name!r}"
        raise OptionError(msg)

    def render(self, instruction: str, input: str | None, history: str | None) -> str:
        if input:
            text = self.with_input.format(instruction=instruction, input=input)
        else:
            text = self.without_input.format(instruction=instruction, input="")
        if history:
            text = self.history_prefix.format(history=history) + text
        return text


def dialogue_prompts(batch: CanonicalBatch) -> list[str | None]:
    """instruction (+ "\\n" + input) per row, after the earlier turns of a multi-turn record.

    Examples
    --------
    >>> import pyarrow as pa
    >>> b = CanonicalBatch(instruction=pa.array(["Hi?", None]), output=pa.array(["a", "b"]),
    ...                    history=pa.array(["User: x", None]), num_rows=2)
    >>> dialogue_prompts(b)
    ['User: x\\nHi?', None]
    """
    prompt = batch.prompt_text().to_pylist()
    if batch.history is None:
        return prompt
    hist = batch.history.to_pylist()
    return [p if (p is None or not h) else f"{h}\n{p}" for p, h in zip(prompt, hist, strict=True)]


OASST_TEMPLATE = "<|prompter|>{prompt}<|endoftext|><|assistant|>{output}<|endoftext|>"


def oasst_text(prompt: str, output: str) -> str:
    """The single string the OpenAssistant GPT-NeoX reward models score.

    >>> oasst_text("Hi?", "Hello.")
    '<|prompter|>Hi?<|endoftext|><|assistant|>Hello.<|endoftext|>'
    """
    return OASST_TEMPLATE.format(prompt=prompt, output=output)


UNIEVAL_QUESTIONS = {
    "naturalness": "question: Is this a natural response in the dialogue? </s> response: {output}",
    "coherence": (
        "question: Is this a coherent response given the dialogue history? </s> response: {output} "
        "</s> dialogue history: {history}"
    ),
    "understandability": "question: Is this an understandable response in the dialogue? </s> response: {output}",
}


def unieval_input(dimension: str, output: str, prompt: str | None = None) -> str:
    """The UniEval dialog input for one dimension; ``prompt`` is instruction (+ "\\n" + input).

    The dialogue history is the prompt followed by a blank line, as UniEval's ``add_question``.

    >>> unieval_input("coherence", "Paris.", "Capital of France?")
    'question: Is this a coherent response given the dialogue history? </s> response: Paris. </s> dialogue history: Capital of France?\\n\\n'
    """
    history = "" if prompt is None else prompt + "\n\n"
    return UNIEVAL_QUESTIONS[dimension].format(output=output, history=history)


def embedding_texts(batch: CanonicalBatch) -> list[str]:
    """The text embedded for each record: instruction, input (if non-empty), output, joined by "\\n".

    Null pieces are left out (a row with every piece null gives ``""``).

    Examples
    --------
    >>> import pyarrow as pa
    >>> b = CanonicalBatch(instruction=pa.array(["Add.", "Hi"]), output=pa.array(["4", None]),
    ...                    input=pa.array(["2+2", ""]), num_rows=2)
    >>> embedding_texts(b)
    ['Add.\\n2+2\\n4', 'Hi']
    """
    # (pyarrow's binary_join_element_wise(null_handling="skip") drops trailing all-null rows
    # in pyarrow 26: joined here in Python, which costs nothing next to the model)
    prompts = batch.prompt_text().to_pylist()
    outputs = batch.output.to_pylist()
    return ["\n".join(x for x in (p, o) if x is not None) for p, o in zip(prompts, outputs, strict=True)]


def embedding_text(instruction: str | None, input: str | None, output: str | None) -> str:
    """:func:`embedding_texts` for one record given as strings.

    >>> embedding_text("Add.", "2+2", "4"), embedding_text("Hi", "", None)
    ('Add.\\n2+2\\n4', 'Hi')
    """
    prompt = instruction if instruction is None or not input else f"{instruction}\n{input}"
    return "\n".join(x for x in (prompt, output) if x is not None)


__all__ = [
    "ALPACA_INPUT_TEMPLATE",
    "ALPACA_TEMPLATE",
    "OASST_TEMPLATE",
    "UNIEVAL_QUESTIONS",
    "PromptTemplate",
    "dialogue_prompts",
    "embedding_text",
    "embedding_texts",
    "oasst_text",
    "unieval_input",
]
