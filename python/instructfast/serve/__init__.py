"""``instructfast serve``: scoring over HTTP, with requests from many clients merged into shared batches.

The app (:func:`create_app`, FastAPI) puts one :class:`~instructfast.BatchingScorer` behind
``POST /score``; :func:`run` serves it with uvicorn, in one process or, with ``workers > 1``, in
several (each batches its own requests; Prometheus metrics in multiprocess mode). Needs the
``serve`` extra: ``pip install 'instructfast[serve]'``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from typing import TYPE_CHECKING, Any

from ..errors import MissingDependencyError

if TYPE_CHECKING:
    from .app import ServeConfig

_NEEDS = {"fastapi": "fastapi", "uvicorn": "uvicorn", "prometheus_client": "prometheus-client"}


def require() -> None:
    """Raise :class:`~instructfast.MissingDependencyError` (with the pip command) unless the extra is installed."""
    missing = [dist for mod, dist in _NEEDS.items() if importlib.util.find_spec(mod) is None]
    if missing:
        msg = f"instructfast serve needs {', '.join(missing)}: pip install 'instructfast[serve]'"
        raise MissingDependencyError(msg)


def run(
    config: ServeConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    graceful_timeout: float = 30.0,
    log_level: str = "info",
    access_log: bool = True,
) -> None:
    """Serve ``config`` until SIGTERM / SIGINT: then new connections are refused, accepted requests finish.

    ``workers > 1`` starts that many processes on one socket; each loads the models and batches its
    own requests. Their metrics meet in ``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary folder
    unless it is set; one that is set should be emptied between runs, as prometheus-client asks).
    """
    require()
    import uvicorn

    from .app import CONFIG_ENV, create_app
    from .metrics import MULTIPROC_ENV

    logging.getLogger("instructfast").setLevel(log_level.upper())
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "timeout_graceful_shutdown": graceful_timeout,
        "log_level": log_level,
        "access_log": access_log,
    }
    if workers <= 1:
        uvicorn.run(create_app(config), **common)
        return
    own = None
    if not os.environ.get(MULTIPROC_ENV):
        own = tempfile.mkdtemp(prefix="instructfast-metrics-")
        os.environ[MULTIPROC_ENV] = own  # workers inherit it and import prometheus-client in that mode
    os.environ[CONFIG_ENV] = config.to_json()
    try:
        uvicorn.run("instructfast.serve.app:app_from_env", factory=True, workers=workers, **common)
    finally:
        if own is not None:
            shutil.rmtree(own, ignore_errors=True)


__all__ = ["require", "run"]
