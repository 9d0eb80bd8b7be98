"""``textstats``: word statistics and MTLD of the output, character counts, on the native text core.

The op and its pure-Python twin are :mod:`instructfast.ops.textstats` and
:mod:`instructfast.ops.textstats_py`; the C++ core is ``csrc/textstats.cpp`` and ``csrc/mtld.cpp``.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from .. import _native
from ..columns import CanonicalBatch
from ..ops.textstats import text_stats
from ..run_record import RunRecord
from .base import NULL_INSTRUCTION, NULL_OUTPUT, Indicator, NullCounter, OutputColumn, masked

NO_WORDS = "output has no words after MTLD tokenisation"


class TextStats(Indicator):
    name = "textstats"
    columns = (
        OutputColumn("output_words", pa.int64(), "words of the output under the lexicalrichness tokenizer"),
        OutputColumn("output_unique_words", pa.int64(), "distinct words of the output (same tokenizer)"),
        OutputColumn("output_ttr", pa.float64(), "type-token ratio: unique words / words"),
        OutputColumn("mtld", pa.float64(), "MTLD lexical diversity (lexicalrichness 0.5.1 semantics)"),
        OutputColumn("output_chars", pa.int64(), "Unicode code points of the output"),
        OutputColumn("output_bytes", pa.int64(), "UTF-8 bytes of the output"),
        OutputColumn("input_chars", pa.int64(), "Unicode code points of instruction plus input"),
    )

    def record(self, run: RunRecord) -> None:
        run.implementations["text core"] = _native.IMPL_REASON

    def compute(self, batch: CanonicalBatch, nulls: NullCounter) -> dict[str, pa.Array]:
        want = set(self.wanted)
        need_words = bool(want & {"output_words", "output_unique_words", "output_ttr", "mtld"})
        st = text_stats(
            batch.output,
            threshold=self.options.text.mtld_threshold,
            threads=self.options.resolved_threads,
            mtld="mtld" in want,
        )
        null_out = ~st["valid"]
        no_words = st["valid"] & (st["words"] == 0)
        out: dict[str, pa.Array] = {}

        def emit(col, values, invalid, type_, reasons):
            if col not in want:
                return
            for reason, mask in reasons:
                nulls.add(col, reason, int(mask.sum()))
            out[col] = masked(values, invalid, type_)

        for col, key in (("output_words", "words"), ("output_unique_words", "unique_words")):
            if need_words:
                emit(col, st[key], null_out, pa.int64(), [(NULL_OUTPUT, null_out)])
        for col, key in (("output_ttr", "ttr"), ("mtld", "mtld")):
            emit(col, st[key], null_out | no_words, pa.float64(), [(NULL_OUTPUT, null_out), (NO_WORDS, no_words)])
        for col, key in (("output_chars", "chars"), ("output_bytes", "bytes")):
            emit(col, st[key], null_out, pa.int64(), [(NULL_OUTPUT, null_out)])
        if "input_chars" in want:
            n = pc.utf8_length(batch.instruction).cast(pa.int64())
            if batch.input is not None:
                n = pc.add(n, pc.fill_null(pc.utf8_length(batch.input).cast(pa.int64()), 0))
            nulls.add("input_chars", NULL_INSTRUCTION, n.null_count)
            out["input_chars"] = n
        return out
