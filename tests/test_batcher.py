"""BatchingScorer: concurrent callers merged into shared batches, each getting exactly its own rows back.

The reference is the offline engine, :func:`instructfast.score`, on the same rows with the same
options: text statistics must be equal, model values (perplexity, and knn against a reference pool)
within the batch-invariance tolerance (1e-4 relative). Requests are released together (a barrier)
and ``max_wait_ms`` is generous, so merging really happens and is asserted from the scorer's counts.
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pyarrow as pa
import pytest

import instructfast
from instructfast import BatchingScorer, IndicatorUnavailableError, Overloaded, RecordError, SchemaError, ScoreReport

TEXT = ["output_words", "output_unique_words", "output_ttr", "mtld", "output_chars", "output_bytes", "input_chars"]
MODEL = ["perplexity", "knn_1", "knn_6"]
CALLERS = 16


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    """A two-layer Llama with SmolLM2's tokenizer: the LM code path in a fraction of SmolLM2's time."""
    from tests.tiny_models import tiny_llama_folder

    folder, _ = tiny_llama_folder(tmp_path_factory.mktemp("llama"))
    return {"lm": str(folder)}


@pytest.fixture(scope="module")
def pool(tmp_path_factory, sample_records):
    """A reference pool of 40 records (MiniLM embeddings) that the scored records are not part of."""
    path = tmp_path_factory.mktemp("pool") / "pool"
    instructfast.build_pool(sample_records[150:190]).save(path)
    return str(path)


@pytest.fixture(scope="module")
def requests(sample_records):
    """16 callers' requests of 1 to 3 records (30 in all), with an empty and a null output among them."""
    rows = [{k: r[k] for k in ("instruction", "input", "output")} for r in sample_records[:30]]
    rows[4]["output"] = ""
    rows[11]["output"] = None
    sizes = [1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 2, 1]
    assert sum(sizes) == len(rows) and len(sizes) == CALLERS
    out, start = [], 0
    for n in sizes:
        out.append(rows[start : start + n])
        start += n
    return out


@pytest.fixture(scope="module")
def offline(requests, pool, tiny_lm):
    """score() on all 30 rows at once (rows are independent of their batch-mates, so this is each caller's truth)."""
    rows = [r for req in requests for r in req]
    with pytest.warns(instructfast.NullValuesWarning):
        return instructfast.score(rows, indicators=TEXT + MODEL, models=tiny_lm, options={"knn_pool": pool})


def _check(got: list[pa.Table], requests, offline: pa.Table) -> None:
    start = 0
    for req, table in zip(requests, got):
        want = offline.slice(start, len(req))
        start += len(req)
        assert table.column_names == offline.column_names
        assert table.select(["instruction", "output"]).to_pylist() == [
            {"instruction": r["instruction"], "output": r["output"]} for r in req
        ]
        for c in TEXT:
            assert table.column(c).to_pylist() == want.column(c).to_pylist(), c
        for c in MODEL:
            a, b = table.column(c).to_pylist(), want.column(c).to_pylist()
            assert [x is None for x in a] == [x is None for x in b], c
            assert [x for x in a if x is not None] == pytest.approx([x for x in b if x is not None], rel=1e-4), c


def test_threads_get_their_own_rows_equal_to_offline_score(requests, offline, pool, tiny_lm):
    got: list[pa.Table | None] = [None] * CALLERS
    errors: list[BaseException] = []
    with BatchingScorer(indicators=TEXT + MODEL, models=tiny_lm, options={"knn_pool": pool}, max_wait_ms=500) as bs:
        barrier = threading.Barrier(CALLERS)

        def call(i: int) -> None:
            try:
                barrier.wait()
                got[i] = bs.score(requests[i])
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(CALLERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        serving = bs.report.run.serving
    assert not errors
    _check([t for t in got if t is not None], requests, offline)
    # merged: fewer batches than requests, every request and row accounted for
    assert serving["requests"] == CALLERS and serving["rows"] == 30
    assert serving["batches"] < CALLERS and serving["mean_batch_requests"] > 1
    rep = ScoreReport.from_table(got[3])
    assert rep.rows == 1 and rep.run.serving["batch_requests"] >= 1
    assert "perplexity" in rep.columns and rep.run.models  # the request's report names the models that scored it


def test_asyncio_callers_equal_offline_score_and_nulls_are_counted(requests, offline, pool, tiny_lm):
    async def main(bs: BatchingScorer) -> list[pa.Table]:
        return await asyncio.gather(*(bs.ascore(r) for r in requests))

    with BatchingScorer(indicators=TEXT + MODEL, models=tiny_lm, options={"knn_pool": pool}, max_wait_ms=300) as bs:
        got = asyncio.run(main(bs))
        total = bs.report
    _check(got, requests, offline)
    assert total.run.serving["batches"] < CALLERS
    off = ScoreReport.from_table(offline)
    assert total.nulls == off.nulls  # the batches' reasons add up to the offline run's
    # the request holding the null output (row 11: request 5, its third row) counts it, with its reason
    # where the merged batch had only that one for the column, as `output_words` has
    rep = ScoreReport.from_table(got[5])
    assert rep.nulls["output_words"] == {"output is null": 1}
    assert rep.nulls["mtld"] in (
        {"output is null": 1},
        {"one of: output has no words after MTLD tokenisation; output is null": 1},
    )


def test_default_set_leaves_pool_indicators_out_without_a_pool():
    with BatchingScorer(indicators=None, load=False) as bs:
        assert "knn" in bs.unavailable and "knn_pool" in bs.unavailable["knn"]
        assert not any(c.startswith("knn_") for c in bs.columns)
    with pytest.raises(IndicatorUnavailableError, match="knn_pool"):
        BatchingScorer(indicators=["mtld", "knn_6"])
    with pytest.raises(IndicatorUnavailableError, match="knn_pool"):
        BatchingScorer(indicators=["mtld"], rule={"name": "r", "intercept": 0, "coefficients": {"knn_6": 1.0}})


def test_a_failed_merged_batch_fails_only_the_bad_request(tmp_path, rng):
    """A vector of the wrong length fails the merged batch; each request is then scored alone."""
    vecs = rng.normal(size=(30, 8)).astype(np.float32)
    pool = tmp_path / "pool"
    instructfast.build_pool(
        pa.table({"instruction": ["q"] * 30, "output": ["a"] * 30, "emb": list(vecs)}), vectors_column="emb"
    ).save(pool)
    reqs = [[{"instruction": f"q{i}", "output": f"answer {i}", "emb": rng.normal(size=8).tolist()}] for i in range(6)]
    reqs[2][0]["emb"] = [1.0, 2.0, 3.0]
    opts = {"knn_pool": str(pool), "knn_vectors": "emb"}
    results: dict[int, object] = {}
    with BatchingScorer(indicators=["mtld", "knn_1"], options=opts, max_wait_ms=1000) as bs:
        barrier = threading.Barrier(len(reqs))

        def call(i: int) -> None:
            barrier.wait()
            try:
                results[i] = bs.score(reqs[i])
            except Exception as e:
                results[i] = e

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(reqs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        serving = bs.report.run.serving
    assert isinstance(results[2], SchemaError) and "3 values" in str(results[2])
    for i in (0, 1, 3, 4, 5):
        table = results[i]
        assert isinstance(table, pa.Table)
        want = instructfast.score(reqs[i], indicators=["mtld", "knn_1"], options=opts)
        assert table.column("knn_1").to_pylist() == pytest.approx(want.column("knn_1").to_pylist(), rel=1e-6)
        assert ScoreReport.from_table(table).run.serving["retried_alone"] is True
    assert serving["retried_alone"] == len(reqs) and serving["failed_requests"] == 1
    assert serving["batches"] == 1  # all six were merged, then retried one by one


def test_full_queue_refuses_with_overloaded_then_drains_on_close():
    rec = [{"instruction": "q", "output": "one two three"}] * 2
    bs = BatchingScorer(indicators=["mtld"], max_wait_ms=10_000, max_queue_rows=4)
    first = bs.submit(rec)
    second = bs.submit(rec)
    assert bs.queued == (4, 2)
    with pytest.raises(Overloaded, match="queue full") as e:
        bs.submit(rec)
    assert e.value.retry_after is not None and e.value.retry_after >= 1
    bs.close()  # accepted requests are scored before close returns, without waiting out max_wait_ms
    assert first.result(0).column("mtld").to_pylist() == [3.0, 3.0]
    assert second.result(0).num_rows == 2
    with pytest.raises(Overloaded, match="shutting down") as e:
        bs.score(rec)
    assert e.value.retry_after is None
    assert bs.report.run.serving["overloaded"] == 2 and bs.report.run.serving["batches"] == 1


class _Depth:
    """An observer that keeps the deepest queue it saw and every event's kind."""

    def __init__(self) -> None:
        self.max_rows = 0
        self.events: list[str] = []
        self.lock = threading.Lock()

    def queue(self, rows: int, requests: int) -> None:
        with self.lock:
            self.max_rows = max(self.max_rows, rows)

    def batch(self, rows: int, requests: int, seconds: float) -> None:
        with self.lock:
            self.events.append("batch")

    def indicator(self, name: str, rows: int, seconds: float) -> None:
        with self.lock:
            self.events.append(name)

    def request(self, rows: int, seconds: float, outcome: str) -> None:
        with self.lock:
            self.events.append(outcome)


def test_on_full_wait_blocks_callers_instead_of_refusing():
    depth = _Depth()
    rec = [{"instruction": "q", "output": "a b a"}]
    with BatchingScorer(indicators=["mtld"], max_wait_ms=20, max_queue_rows=2, on_full="wait", observer=depth) as bs:
        futures = [bs.submit(rec) for _ in range(12)]  # would be refused under "reject"
        assert [f.result(30).column("mtld").to_pylist() for f in futures] == [[3.0]] * 12
    assert depth.max_rows <= 2
    assert depth.events.count("ok") == 12 and "overloaded" not in depth.events and "textstats" in depth.events


def test_schemas_are_scored_apart_and_indicator_columns_brought_along_are_kept(tiny_lm):
    with BatchingScorer(models=tiny_lm) as bs:  # the default set: text statistics, tokens, perplexity and ifd
        assert {"mtld", "output_tokens", "perplexity", "ifd"} <= set(bs.columns)
        alpaca = bs.score([{"instruction": "q", "output": "one two one"}])
        dolly = bs.score([{"instruction": "q", "context": "", "response": "one two one"}])
        kept = bs.score([{"instruction": "q", "output": "one two one", "mtld": 99.0}])
        with pytest.raises(RecordError, match="record 1: missing field `output`"):
            bs.score([{"instruction": "q", "output": "x"}, {"instruction": "q"}])
        assert bs.score([]).num_rows == 0
    assert alpaca.column("mtld").to_pylist() == dolly.column("mtld").to_pylist() == [3.0]
    assert alpaca.column("perplexity").to_pylist() == pytest.approx(dolly.column("perplexity").to_pylist(), rel=1e-4)
    assert kept.column("mtld").to_pylist() == [99.0] and kept.column("output_words").to_pylist() == [3]
    assert ScoreReport.from_table(kept).kept_from_input == ["mtld"]


def test_a_request_may_ask_for_some_of_the_served_indicators_only():
    with BatchingScorer(indicators=["textstats"]) as bs:
        got = bs.score([{"instruction": "q", "output": "one two one"}], indicators=["mtld"])
        assert got.column_names == ["instruction", "output", "mtld"]
        with pytest.raises(instructfast.ArgumentError, match="not served"):
            bs.score([{"instruction": "q", "output": "x"}], indicators=["perplexity"])


def test_scorers_kept_for_request_schemas_are_bounded():
    with BatchingScorer(indicators=["mtld"], max_schemas=2) as bs:
        for extra in ("a", "b", "c", "d"):  # four schemas, and the layout's own
            got = bs.score([{"instruction": "q", "output": "one two one", extra: 1}])
            assert got.column_names == ["instruction", "output", extra, "mtld"]
        assert bs.report.run.serving["schemas"] == 2


class _BatchSizes(_Depth):
    """Also keeps each merged batch's request count, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[int] = []

    def batch(self, rows: int, requests: int, seconds: float) -> None:
        with self.lock:
            self.requests.append(requests)


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_callers_a_batch_answered_rejoin_the_next_one_within_the_rejoin_window(fraction):
    """Four closed-loop callers whose round trips (10-40 ms) outlast ``max_wait_ms`` (1 ms).

    Batches are slowed to 0.4 s so that the window (half of that) is long against thread wake-ups.
    Without the window the first caller back runs alone and the others form a second cohort, which
    then alternates with it; with it every batch but the first two and the last holds all four callers.
    """
    sizes = _BatchSizes()
    rec = [{"instruction": "q", "output": "a b a"}]
    opts = {"serve_rejoin_fraction": fraction}
    with BatchingScorer(indicators=["mtld"], max_wait_ms=1, options=opts, observer=sizes) as bs:
        fast = bs._score

        def slow(reqs, **kw):
            time.sleep(0.4)
            return fast(reqs, **kw)

        bs._score = slow  # type: ignore[method-assign]
        start = threading.Barrier(4)

        def caller(k: int) -> None:
            start.wait()
            for _ in range(6):
                assert bs.score(rec).column("mtld").to_pylist() == [3.0]
                time.sleep(0.01 * (k + 1))  # the round trip: answer out, next request in

        threads = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert sum(sizes.requests) == 24
    if fraction:
        # the first batch may start before every caller is in, and so end one caller's run early
        assert set(sizes.requests[2:-1]) == {4}, sizes.requests
    else:
        assert min(sizes.requests[2:-1]) < 4, sizes.requests
    assert bs.report.run.serving["rejoin_fraction"] == fraction
