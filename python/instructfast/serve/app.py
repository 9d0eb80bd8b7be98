"""The ASGI app of ``instructfast serve``: one :class:`~instructfast.BatchingScorer` behind FastAPI.

``POST /score`` takes a JSON list of records (``application/json``) or an Arrow IPC stream
(``application/vnd.apache.arrow.stream``) and answers with the same records and their indicator
columns, as JSON or, when ``Accept`` asks for it, as an Arrow IPC stream whose schema metadata holds
the request's report. Every request goes through the scorer's queue, so concurrent requests share
batches. ``GET /indicators`` lists what is served, ``/healthz`` answers while the process is up,
``/readyz`` once the models are loaded (and until shutdown begins), ``/metrics`` in Prometheus text.

Errors are JSON ``{"error": class, "detail": message}``, plus ``index`` and ``field`` for a bad
record: 400 for a body that is not JSON or Arrow, 413 past ``serve_max_body_mb``, 415 for another
content type, 406 for an ``Accept`` that names neither format, 422 for records, schemas and
indicators that cannot be scored, 503 with ``Retry-After`` when the queue is full (or the models are
not loaded yet), 500 when scoring failed for a reason that is not the request's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pyarrow as pa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ..batcher import BatchingScorer
from ..errors import (
    IndicatorUnavailableError,
    InputFormatError,
    InstructfastError,
    MissingDependencyError,
    ModelError,
    ModelNotFoundError,
    Overloaded,
    RecordError,
)
from ..indicators import describe, provider_of
from .metrics import Metrics, process_exited

JSON = "application/json"
ARROW = "application/vnd.apache.arrow.stream"
CONFIG_ENV = "INSTRUCTFAST_SERVE_CONFIG"
_PATHS = ("/score", "/indicators", "/healthz", "/readyz", "/metrics")
# Bodies larger than this are parsed off the event loop, so other requests keep being answered.
_PARSE_IN_THREAD = 1 << 20
log = logging.getLogger("instructfast.serve")


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    """What a server scores with; the CLI's options (``instructfast serve --help``) map onto it.

    ``options`` holds flat option keys (``serve_max_wait_ms``, ``knn_pool``, ...), as for
    :func:`instructfast.score`.
    """

    indicators: list[str] | None = None
    rule: str | None = None
    columns: dict[str, str] | None = None
    models: dict[str, str] | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    threads: int | None = None
    device: str | None = None

    def scorer(self, *, observer: Metrics | None = None, load: bool = True) -> BatchingScorer:
        return BatchingScorer(**dataclasses.asdict(self), observer=observer, load=load)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        return cls(**json.loads(text))


class _State:
    """The app's scorer, built (models loaded) in a thread after start-up so /healthz answers meanwhile."""

    def __init__(self, config: ServeConfig, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.scorer: BatchingScorer | None = None
        self.failed: str | None = None
        self.closing = False

    async def load(self) -> None:
        try:
            self.scorer = await asyncio.to_thread(self.config.scorer, observer=self.metrics)
            log.info("instructfast serve: ready (%s)", ", ".join(self.scorer.columns))
        except Exception as e:  # reported by /readyz; /score answers 503 with the reason
            self.failed = f"{type(e).__name__}: {e}"
            log.error("instructfast serve: loading failed: %s", self.failed)

    async def close(self) -> None:
        self.closing = True
        if self.scorer is not None:
            await asyncio.to_thread(self.scorer.close)  # accepted requests are scored first


def create_app(config: ServeConfig | None = None) -> FastAPI:
    """The app for ``config`` (default: every available indicator); run it with any ASGI server."""
    config = config or ServeConfig()
    metrics = Metrics()
    state = _State(config, metrics)
    limit = _body_limit(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(state.load())
        try:
            yield
        finally:
            # the server stopped taking connections and finished those in flight; queued work drains here
            await loading
            await state.close()
            process_exited(os.getpid())

    app = FastAPI(title="instructfast", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.instructfast = state

    @app.middleware("http")
    async def count(request: Request, call_next):
        t0 = time.perf_counter()
        response = await call_next(request)
        path = request.url.path if request.url.path in _PATHS else "other"
        metrics.http.labels(method=request.method, path=path, status=str(response.status_code)).inc()
        metrics.http_seconds.labels(path=path).observe(time.perf_counter() - t0)
        return response

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "pid": os.getpid()}  # which worker answered, with --workers N

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        if state.closing:
            return JSONResponse({"status": "shutting down"}, status_code=503)
        if state.failed is not None:
            return JSONResponse({"status": "failed", "detail": state.failed}, status_code=503)
        if state.scorer is None:
            return JSONResponse({"status": "loading"}, status_code=503, headers={"Retry-After": "1"})
        return JSONResponse({"status": "ready", "columns": state.scorer.columns})

    @app.get("/metrics")
    async def metrics_text() -> Response:
        body, ctype = metrics.render()
        return Response(body, media_type=ctype)

    @app.get("/indicators")
    async def indicators() -> JSONResponse:
        bs = state.scorer
        if bs is None:
            return _not_ready(state)
        served = {p.name for c in bs.columns if (p := provider_of(c)) is not None}
        infos = [
            {
                "name": i.name,
                "columns": list(i.columns),
                "models": list(i.models),
                "served": i.name in served,
                "available": i.availability.ok,
                "reason": bs.unavailable.get(i.name) or (i.availability.explain() or None),
            }
            for i in describe(bs.options)
        ]
        return JSONResponse(
            {
                "columns": bs.columns,
                "indicators": infos,
                "unavailable": bs.unavailable,
                "rule": bs.report.rule,
                "column_map": bs.column_map,
                "serving": bs.report.run.serving,
            }
        )

    @app.post("/score")
    async def score(request: Request, indicators: str | None = None) -> Response:
        bs = state.scorer
        if bs is None or state.closing:
            return _not_ready(state)
        ctype = (request.headers.get("content-type") or JSON).split(";")[0].strip().lower()
        if ctype not in (JSON, ARROW):
            return _error(415, "UnsupportedMediaType", f"content-type must be {JSON} or {ARROW}, got {ctype!r}")
        reply = _reply_type(request.headers.get("accept"))
        if reply is None:
            return _error(406, "NotAcceptable", f"Accept must allow {JSON} or {ARROW}")
        body = await _read_body(request, limit)
        if body is None:
            mb = limit / 2**20
            return _error(413, "PayloadTooLarge", f"request body over {mb:g} MiB (serve_max_body_mb)")
        try:
            if len(body) > _PARSE_IN_THREAD:
                records = await asyncio.to_thread(_parse, body, ctype)
            else:
                records = _parse(body, ctype)
        except InputFormatError as e:  # the body as a whole (a bad record is a 422)
            return _error(400, "MalformedBody", str(e))
        want = [x.strip() for x in indicators.split(",") if x.strip()] if indicators else None
        try:
            table = await bs.ascore(records, indicators=want)
        except Exception as e:
            return _failure(e)
        if reply == ARROW:
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            return Response(sink.getvalue().to_pybytes(), media_type=ARROW)
        return Response(json.dumps(table.to_pylist(), ensure_ascii=False, default=str), media_type=JSON)

    return app


def app_from_env() -> FastAPI:
    """The app of one ``--workers N`` process: its config comes from the parent in ``INSTRUCTFAST_SERVE_CONFIG``."""
    return create_app(ServeConfig.from_json(os.environ[CONFIG_ENV]))


def _parse(body: bytes, ctype: str) -> Any:
    if ctype == ARROW:
        try:
            return pa.ipc.open_stream(pa.BufferReader(body)).read_all()
        except (pa.ArrowInvalid, OSError) as e:
            raise InputFormatError(f"not an Arrow IPC stream: {e}") from None
    try:
        return json.loads(body)
    except json.JSONDecodeError as e:
        raise InputFormatError(f"malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise InputFormatError(f"JSON body is not UTF-8 text: {e}") from None


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or ``None`` once it passes ``limit`` bytes (announced or streamed)."""
    announced = request.headers.get("content-length")
    if announced is not None and announced.isdigit() and int(announced) > limit:
        return None
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


def _reply_type(accept: str | None) -> str | None:
    if not accept:
        return JSON
    kinds = [a.split(";")[0].strip().lower() for a in accept.split(",")]
    if ARROW in kinds:
        return ARROW
    if any(k in (JSON, "*/*", "application/*") for k in kinds):
        return JSON
    return None


def _body_limit(config: ServeConfig) -> int:
    from ..options import ScoreOptions

    mb = ScoreOptions.build(options=config.options).serve.max_body_mb
    return int(mb * 2**20)


def _error(
    status: int, error: str, detail: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail, **extra}, status_code=status, headers=dict(headers or {}))


def _not_ready(state: _State) -> JSONResponse:
    if state.closing:
        return _error(503, "ShuttingDown", "the server is shutting down")
    if state.failed is not None:
        return _error(503, "NotReady", f"the scorer failed to start: {state.failed}")
    return _error(503, "NotReady", "models are loading", headers={"Retry-After": "1"})


# Errors about the server's own models are not the request's fault, although some are ValueErrors.
_SERVER_SIDE = (ModelError, ModelNotFoundError, MissingDependencyError)


def _failure(e: Exception) -> JSONResponse:
    name = type(e).__name__
    if isinstance(e, RecordError):
        return _error(422, name, str(e), index=e.index, field=e.field)
    if isinstance(e, Overloaded):
        if e.retry_after is None:
            return _error(503, name, str(e))
        return _error(503, name, str(e), headers={"Retry-After": str(max(1, round(e.retry_after)))})
    if isinstance(e, InstructfastError) and not isinstance(e, _SERVER_SIDE):
        if isinstance(e, (ValueError, IndicatorUnavailableError)):
            return _error(422, name, str(e))
    log.exception("instructfast serve: scoring failed", exc_info=e)
    return _error(500, name, str(e))


__all__ = ["ARROW", "CONFIG_ENV", "JSON", "ServeConfig", "app_from_env", "create_app"]
