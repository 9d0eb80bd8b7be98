"""How many CPUs this process may use (one answer for native threads, torch and ONNX Runtime)."""

from __future__ import annotations

import os


def available_cores() -> int:
    """CPUs in this process's affinity mask (cgroup cpusets included), not the host's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)
