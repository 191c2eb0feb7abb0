"""What the benchmark ran on: CPU, memory, OS and the versions of everything measured."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import subprocess
import timeit

import psutil

PACKAGES = ("uvicorn", "starlette", "websockets", "redis", "orjson", "picows", "uvloop")


def _version(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else "?"


def _package(name: str) -> str:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "-"


def cpu_speed() -> str:
    """One core's speed, so runs on different machines can be compared: the best time of a fixed
    pure-Python loop (measured while nothing else of the bench runs)."""
    best = min(timeit.repeat("sum(range(1000))", number=10_000, repeat=5)) / 10_000
    return f"sum(range(1000)) in {best * 1e6:.1f} µs, best of 5 (lower is faster)"


def machine() -> dict[str, str]:
    """The report's "Machine" table: name → description."""
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "one core": cpu_speed(),
        "ram_gb": f"{psutil.virtual_memory().total / 2**30:.1f}",
        "os": platform.platform(),
        "python": platform.python_version(),
        "redis": _version(["redis-server", "--version"]),
        "mariadb": _version(["/usr/sbin/mariadbd", "--version"]),
        "nginx": _version(["/usr/sbin/nginx", "-v"]),
        "python packages": ", ".join(f"{n} {_package(n)}" for n in PACKAGES),
    }
