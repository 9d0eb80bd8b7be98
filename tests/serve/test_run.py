"""``instructfast serve`` as a process: SIGTERM drains the requests in flight, and --workers N share metrics.

Each server listens on 127.0.0.1 on a port the OS picks (``--port 0``; the log names it) and is
stopped by the test; nothing here leaves the loopback interface.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import instructfast


class Server:
    def __init__(self, proc: subprocess.Popen, log: Path) -> None:
        self.proc, self.log, self.url = proc, log, ""


def _start(tmp_path: Path, started: list[Server], *args: str, env: dict[str, str] | None = None) -> Server:
    log = tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "instructfast", "serve", "--port", "0", "-i", "textstats", *args]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    server = Server(proc, log)
    started.append(server)  # stopped by the fixture whatever happens next
    deadline = time.monotonic() + 60
    while not (m := re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", log.read_text())):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    server.url = m.group(1)
    while not _ready(server.url):
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    return server


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz").status_code == 200
    except httpx.ConnectError:  # with --workers the socket listens once a worker has started
        return False


def _stopped(server: Server) -> None:
    """The process ended after a graceful shutdown (uvicorn re-raises SIGTERM once it is done)."""
    assert server.proc.wait(60) in (0, -signal.SIGTERM), server.log.read_text()
    assert "Application shutdown complete" in server.log.read_text()


@pytest.fixture
def started(tmp_path) -> Iterator[list[Server]]:
    servers: list[Server] = []
    yield servers
    for s in servers:  # a failed test must not leave its server (and its workers) behind
        if s.proc.poll() is None:
            s.proc.send_signal(signal.SIGTERM)
            try:
                s.proc.wait(30)
            except subprocess.TimeoutExpired:
                s.proc.kill()
                s.proc.wait(30)


def test_sigterm_finishes_accepted_requests_and_refuses_new_ones(tmp_path, started):
    server = _start(tmp_path, started, "--max-wait-ms", "2000")  # requests wait in the queue 2 s: in flight for sure
    bodies = [
        [{"instruction": f"q{i}", "output": f"{w} and {w} or {w}"}] * (1 + i % 3) for i, w in enumerate("abcdefgh")
    ]
    responses: dict[int, httpx.Response] = {}

    def post(i: int) -> None:
        responses[i] = httpx.post(server.url + "/score", json=bodies[i], timeout=60)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while "instructfast_queue_requests 8.0" not in httpx.get(server.url + "/metrics").text:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    server.proc.send_signal(signal.SIGTERM)
    while True:  # new connections are refused while the accepted requests are still waiting
        try:
            httpx.get(server.url + "/healthz", timeout=1)
        except httpx.ConnectError:
            break
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert not responses, "requests finished before the listening socket closed; the test proves nothing"
    for t in threads:
        t.join(60)
    _stopped(server)
    for i, body in enumerate(bodies):
        assert responses[i].status_code == 200
        assert responses[i].json() == instructfast.score(body, indicators=["textstats"]).to_pylist()


def test_workers_share_one_metrics_view(tmp_path, started):
    prom = tmp_path / "prom"
    prom.mkdir()
    server = _start(tmp_path, started, "--workers", "2", env={"PROMETHEUS_MULTIPROC_DIR": str(prom)})
    pids: set[int] = set()
    deadline = time.monotonic() + 30
    sent = 0
    while len(pids) < 2 or sent < 10:  # a new connection each time: the kernel spreads them over workers
        r = httpx.post(
            server.url + "/score", json=[{"instruction": "q", "output": "a b a"}], headers={"connection": "close"}
        )
        assert r.status_code == 200 and r.json()[0]["mtld"] == 3.0
        sent += 1
        pids.add(httpx.get(server.url + "/healthz", headers={"connection": "close"}).json()["pid"])
        assert time.monotonic() < deadline, f"one worker answered everything: {pids}"
    totals = set()
    for _ in range(6):  # whichever worker answers, it reports every worker's requests
        text = httpx.get(server.url + "/metrics", headers={"connection": "close"}).text
        ok = [
            s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "instructfast_requests_total" and s.labels == {"outcome": "ok"}
        ]
        totals.add(ok[0])
    assert totals == {float(sent)}
    assert {p.name.split("_")[-1] for p in prom.glob("counter_*.db")} >= {f"{p}.db" for p in pids}
    server.proc.send_signal(signal.SIGTERM)
    _stopped(server)
