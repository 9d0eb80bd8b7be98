"""Named crash points for the kill tests of resumable runs (test-only; inert unless the variable is set).

``INSTRUCTFAST_FAULT=<point>[:<n>]`` makes the process kill itself with SIGKILL the n-th time
(default the first) it reaches :func:`point` with that name: no ``finally`` block, no atexit
handler, no flush runs, exactly as when a machine dies. With ``INSTRUCTFAST_FAULT_ONCE=<path>``
only the first process to get there dies (it creates the file first): a restarted worker then
runs on, as after a real crash. The tests use it to stop a run at a
chosen moment of each phase (per-row work, the pool pass, the final write) and check that the
rerun loses nothing. Nothing else in the package reads the variable.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

FAULT_ENV = "INSTRUCTFAST_FAULT"
ONCE_ENV = "INSTRUCTFAST_FAULT_ONCE"
_seen: Counter[str] = Counter()


def point(name: str) -> None:
    """Die here if ``INSTRUCTFAST_FAULT`` names this point (and this is the chosen visit)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    target, sep, nth = spec.rpartition(":")
    if not sep or not nth.isdigit():  # no count: the whole value is the point's name (names hold colons)
        target, nth = spec, ""
    if target != name:
        return
    _seen[name] += 1
    if _seen[name] != (int(nth) if nth else 1):
        return
    once = os.environ.get(ONCE_ENV)
    if once:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    os.kill(os.getpid(), signal.SIGKILL)


__all__ = ["FAULT_ENV", "ONCE_ENV", "point"]
