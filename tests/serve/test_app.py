"""instructfast serve's app, live on a loopback port: every endpoint, both formats, every error case.

Scored values are compared with :func:`instructfast.score` on the same records (JSON floats round-trip
exactly). The text statistics need no model, so each server starts in well under a second; the
batcher under model indicators is tested in tests/test_batcher.py.
"""

from __future__ import annotations

import json
import os
import threading
import time

import httpx
import pyarrow as pa
import pytest
from prometheus_client.parser import text_string_to_metric_families

import instructfast
from instructfast.indicators.textstats import TextStats
from instructfast.serve.app import ARROW, ServeConfig
from tests.serve.conftest import running

RECORDS = [
    {"instruction": "Name three primary colours.", "input": "", "output": "Red, yellow and blue.", "source": "a"},
    {"instruction": "Say hi.", "input": None, "output": "", "source": "b"},
    {"instruction": "Count.", "input": "to three", "output": "One, two, three; one two.", "source": "c"},
    {"instruction": "Nothing.", "input": "", "output": None, "source": "d"},
]


def _offline(records, **kw) -> pa.Table:
    with pytest.warns(instructfast.NullValuesWarning):
        return instructfast.score(records, indicators=["textstats"], **kw)


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def _samples(client: httpx.Client) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(client.get("/metrics").text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_json_in_json_out_equals_offline_score(textstats_server, sample_records):
    records = [dict(r) for r in sample_records[:20]] + RECORDS
    r = textstats_server.post("/score", json=records)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == _offline(records).to_pylist()


def test_arrow_in_and_out_with_the_request_report(textstats_server):
    table = pa.Table.from_pylist(RECORDS)
    r = textstats_server.post("/score", content=_ipc(table), headers={"content-type": ARROW, "accept": ARROW})
    assert r.status_code == 200 and r.headers["content-type"] == ARROW
    got = pa.ipc.open_stream(r.content).read_all()
    want = _offline(table)
    assert (
        got.drop_columns([]).to_pylist() == want.to_pylist()
        and got.schema.remove_metadata() == want.schema.remove_metadata()
    )
    rep = instructfast.ScoreReport.from_table(got)
    assert rep.rows == 4 and rep.nulls["mtld"] == {
        "one of: output has no words after MTLD tokenisation; output is null": 2
    }
    assert rep.run.serving["batch_requests"] >= 1
    # the formats mix: Arrow in, JSON out; JSON in, Arrow out
    r = textstats_server.post("/score", content=_ipc(table), headers={"content-type": ARROW})
    assert r.json() == want.to_pylist()
    r = textstats_server.post("/score", json=RECORDS, headers={"accept": f"{ARROW}, application/json;q=0.5"})
    assert pa.ipc.open_stream(r.content).read_all().to_pylist() == want.to_pylist()


def test_any_layout_and_a_subset_of_indicators(textstats_server):
    dolly = [{"instruction": "Add.", "context": "", "response": "Four, four."}]
    sharegpt = [{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello there hello"}]}]
    assert textstats_server.post("/score", json=dolly).json() == _offline_quiet(dolly)
    assert textstats_server.post("/score", json=sharegpt).json()[0]["mtld"] == 3.0
    r = textstats_server.post("/score", params={"indicators": "mtld,output_words"}, json=RECORDS[:1])
    assert list(r.json()[0]) == ["instruction", "input", "output", "source", "mtld", "output_words"]
    assert textstats_server.post("/score", json=[]).json() == []


def _offline_quiet(records):
    return instructfast.score(records, indicators=["textstats"]).to_pylist()


BAD = [
    # (what is sent, status, error, index, field, words in the detail)
    ({"content": b'[{"instruction": "q", "output": "a"},]'}, 400, "MalformedBody", None, None, "line 1, column 38: Expecting value"),
    ({"content": b"\xff\xfe", "headers": {"content-type": ARROW}}, 400, "MalformedBody", None, None, "Arrow IPC"),
    ({"json": {"instruction": "q", "output": "a"}}, 422, "RecordError", None, None, "expected a list of records"),
    ({"json": [{"instruction": "q", "output": "a"}, 7]}, 422, "RecordError", 1, None, "record 1"),
    ({"json": [{"instruction": "q", "output": "a"}, {"output": "b"}]}, 422, "RecordError", 1, "instruction", "missing"),
    ({"json": [{"instruction": "q", "output": 12}]}, 422, "RecordError", 0, "output", "got int 12"),
    ({"json": [{"question": "q", "answer": "a"}]}, 422, "RecordError", None, None, "found columns"),
    ({"json": [{"instruction": "q", "output": "a"}], "params": {"indicators": "mtdl"}}, 422, "ArgumentError", None,
     None, "did you mean 'mtld'"),
    ({"json": [{"instruction": "q", "output": "a"}], "params": {"indicators": "perplexity"}}, 422, "ArgumentError",
     None, None, "not served"),
    ({"json": [{"instruction": "q", "output": "a"}], "params": {"indicators": "knn_6"}}, 422,
     "IndicatorUnavailableError", None, None, "knn_pool"),
    ({"content": "instruction,output", "headers": {"content-type": "text/csv"}}, 415, "UnsupportedMediaType", None,
     None, "text/csv"),
    ({"json": [], "headers": {"accept": "text/html"}}, 406, "NotAcceptable", None, None, "Accept"),
]  # fmt: skip


@pytest.mark.parametrize(("send", "status", "error", "index", "field", "words"), BAD)
def test_bad_requests_name_record_and_field(textstats_server, send, status, error, index, field, words):
    r = textstats_server.post("/score", **send)
    body = r.json()
    assert (r.status_code, body["error"]) == (status, error), body
    assert words in body["detail"]
    if error == "RecordError":
        assert (body["index"], body["field"]) == (index, field)
    # the server goes on serving
    assert textstats_server.post("/score", json=RECORDS[:1]).status_code == 200


def test_bodies_over_the_limit_get_413_announced_or_streamed():
    with running(ServeConfig(indicators=["mtld"], options={"serve_max_body_mb": 0.001})) as client:  # 1,048 bytes
        big = [{"instruction": "q", "output": "word " * 300}]
        r = client.post("/score", json=big)
        assert r.status_code == 413 and r.json()["error"] == "PayloadTooLarge"
        chunks = (json.dumps(big).encode()[i : i + 100] for i in range(0, 1600, 100))  # no content-length
        r = client.post("/score", content=chunks)
        assert r.status_code == 413
        assert client.post("/score", json=[{"instruction": "q", "output": "a b a"}]).json()[0]["mtld"] == 3.0


def test_a_full_queue_gets_503_with_retry_after():
    opts = {"serve_max_wait_ms": 1500, "serve_max_queue_rows": 2}
    with running(ServeConfig(indicators=["mtld"], options=opts)) as client:
        first: list[httpx.Response] = []
        t = threading.Thread(target=lambda: first.append(client.post("/score", json=RECORDS[:2])))
        t.start()
        deadline = time.monotonic() + 10
        while _samples(client).get(("instructfast_queue_rows", ()), 0) < 2:  # the first request is queued
            assert time.monotonic() < deadline
            time.sleep(0.02)
        r = client.post("/score", json=RECORDS[:1])
        assert r.status_code == 503 and r.json()["error"] == "Overloaded"
        assert int(r.headers["retry-after"]) >= 1
        t.join(30)
        assert first[0].status_code == 200 and len(first[0].json()) == 2
        assert _samples(client)[("instructfast_requests_total", (("outcome", "overloaded"),))] == 1


def test_an_internal_error_in_a_batch_fails_only_its_request_with_500(monkeypatch):
    compute = TextStats.compute

    def failing(self, batch, nulls):
        if "POISON" in batch.output.to_pylist():
            raise RuntimeError("the text core failed on this batch")
        return compute(self, batch, nulls)

    monkeypatch.setattr(TextStats, "compute", failing)
    bodies = [[{"instruction": "q", "output": f"{w} and {w}"}] for w in ("red", "blue", "green", "gold", "pink")]
    bodies[3] = [{"instruction": "q", "output": "POISON"}]
    with running(ServeConfig(indicators=["mtld"], options={"serve_max_wait_ms": 500})) as client:
        out: dict[int, httpx.Response] = {}
        barrier = threading.Barrier(len(bodies))

        def post(i: int) -> None:
            barrier.wait()
            out[i] = client.post("/score", json=bodies[i])

        threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert out[3].status_code == 500
        assert out[3].json() == {"error": "RuntimeError", "detail": "the text core failed on this batch"}
        for i in (0, 1, 2, 4):
            assert out[i].status_code == 200 and out[i].json()[0]["mtld"] == 3.0
        samples = _samples(client)
        assert samples[("instructfast_requests_total", (("outcome", "error"),))] == 1
        assert (
            samples[("instructfast_batch_requests_bucket", (("le", "1.0"),))]
            < samples[("instructfast_batch_requests_count", ())]
        )  # the five were merged into a batch before the retries
        assert client.post("/score", json=bodies[0]).status_code == 200  # still serving


def test_health_ready_indicators_and_metrics(textstats_server):
    assert textstats_server.get("/healthz").json() == {"status": "ok", "pid": os.getpid()}
    ready = textstats_server.get("/readyz").json()
    assert ready["status"] == "ready" and "mtld" in ready["columns"]
    before = _samples(textstats_server)
    records = [{"instruction": "q", "output": f"w{i} w{i} x"} for i in range(3)]
    assert textstats_server.post("/score", json=records).status_code == 200
    info = textstats_server.get("/indicators").json()
    assert info["columns"] == ["output_words", "output_unique_words", "output_ttr", "mtld", "output_chars",
                               "output_bytes", "input_chars"]  # fmt: skip
    served = {i["name"]: i["served"] for i in info["indicators"]}
    assert served["textstats"] and not served["logprob"]
    assert info["serving"]["max_wait_ms"] == 50.0 and info["serving"]["requests"] >= 1
    after = _samples(textstats_server)

    def grew(name: str, labels: tuple = ()) -> float:
        return after[(name, labels)] - before.get((name, labels), 0)

    assert grew("instructfast_requests_total", (("outcome", "ok"),)) == 1
    assert grew("instructfast_rows_total") == 3
    assert grew("instructfast_indicator_seconds_count", (("indicator", "textstats"),)) == 1
    assert grew("instructfast_batch_rows_sum") == 3
    assert grew("instructfast_http_requests_total", (("method", "POST"), ("path", "/score"), ("status", "200"))) == 1
    assert after[("instructfast_queue_rows", ())] == 0


def test_a_scorer_that_fails_to_load_is_not_ready(tmp_path):
    config = ServeConfig(indicators=["knn_6"], options={"knn_pool": str(tmp_path / "no-pool")})
    with running(config, ready=False) as client:
        deadline = time.monotonic() + 30
        while (r := client.get("/readyz")).json()["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert r.status_code == 503 and r.json()["status"] == "failed" and "no-pool" in r.json()["detail"]
        assert client.get("/healthz").status_code == 200
        r = client.post("/score", json=RECORDS[:1])
        assert r.status_code == 503 and "no-pool" in r.json()["detail"]
