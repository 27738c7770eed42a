"""Facts about the machine a benchmark ran on."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

import numpy as np

import ferroptim as fo


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what :mod:`platform` knows."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware") and value.strip():
            return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def machine_info() -> dict[str, str | int | float]:
    """CPU, cores, SIMD level, kernel threads, versions and the date, for the report header."""
    return {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "logical_cpus": os.cpu_count() or 1,
        "simd": fo.simd_level(),
        "threads": fo.get_num_threads(),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "ferroptim": fo.__version__,
        "platform": platform.platform(),
        "loadavg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else -1.0,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def header_line(info: dict[str, str | int | float]) -> str:
    """One line of the facts that matter for reading the numbers."""
    return (
        f"CPU: {info['cpu']} | cores: {info['cores']} | SIMD: {info['simd']} | "
        f"threads: {info['threads']} | numpy {info['numpy']} | Python {info['python']} | "
        f"load avg (1 min) at start: {info['loadavg_1m']} | {info['date']}"
    )
