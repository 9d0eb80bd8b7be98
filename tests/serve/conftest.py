"""The service in-process: uvicorn in a thread on a loopback port the OS picked, stopped after the test."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from instructfast.serve.app import ServeConfig, create_app


@contextlib.contextmanager
def running(config: ServeConfig, *, ready: bool = True) -> Iterator[httpx.Client]:
    """A client of a live server for ``config`` (bound to 127.0.0.1 only; stopped, drained, on exit)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_level="warning", timeout_graceful_shutdown=30))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        try:
            while not server.started:
                assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
                time.sleep(0.02)
            while ready and client.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, client.get("/readyz").text
                time.sleep(0.05)
            yield client
        finally:
            server.should_exit = True
            thread.join(60)
            sock.close()
    assert not thread.is_alive()


@pytest.fixture(scope="module")
def textstats_server() -> Iterator[httpx.Client]:
    """A server of the text statistics (no model to load), merging requests within 50 ms."""
    with running(ServeConfig(indicators=["textstats"], options={"serve_max_wait_ms": 50})) as client:
        yield client
