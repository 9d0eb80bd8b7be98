"""pytest-benchmark timings of MTLD + word statistics on 2,000 real outputs.

Run with timings::

    .venv/bin/python -m pytest bench/test_bench_textstats.py --benchmark-enable

Under the project's default options (``--benchmark-disable``) each test runs its call once and
checks the result, so the file doubles as a smoke test. The full comparison, with peers in
separate processes and streaming memory, is ``bench/bench_textstats.py``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import _common
from bench_textstats import THRESHOLD, lexicalrichness_pass

N_TEXTS = 2_000
SEED = 0
GROUP = f"mtld: {N_TEXTS:,} outputs (alpaca 5k + alpaca-gpt4 1k + dolly 3k, seed {SEED})"


@pytest.fixture(scope="module")
def texts() -> list[str]:
    base, _ = _common.load_output_texts()
    order = np.random.default_rng(SEED).permutation(len(base))
    return [base[i] for i in order[:N_TEXTS]]


@pytest.fixture(scope="module")
def expected_words(texts) -> int:
    from lexicalrichness import LexicalRichness

    return sum(LexicalRichness(t).words for t in texts)


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("threads", [1, 2], ids=lambda t: f"threads={t}")
def test_instructfast_native(benchmark, texts, expected_words, threads):
    from instructfast._native import IMPL
    from instructfast.ops.textstats import text_stats

    if IMPL != "native":
        pytest.skip(f"native core not in use ({IMPL})")
    arr = pa.array(texts, type=pa.string())
    st = benchmark(text_stats, arr, threshold=THRESHOLD, threads=threads)
    assert int(st["words"].sum()) == expected_words
    assert np.isfinite(st["mtld"][st["words"] > 0]).all()


@pytest.mark.benchmark(group=GROUP)
def test_lexicalrichness(benchmark, texts, expected_words):
    assert benchmark(lexicalrichness_pass, texts) == expected_words
