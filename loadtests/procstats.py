"""CPU% and RSS of the service processes (each with its children: nginx workers)."""

from __future__ import annotations

import contextlib
import time

import psutil


class ProcessSampler:
    """``sample()`` returns {name: (cpu % since the last sample, RSS bytes)}; 100 % = one core."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = dict(pids)
        self._cache: dict[int, psutil.Process] = {}
        self._last: dict[str, tuple[float, float]] = {}  # name → (wall, cpu seconds)
        self.sample()

    def _proc(self, pid: int) -> psutil.Process:
        proc = self._cache.get(pid)
        if proc is None:
            proc = self._cache[pid] = psutil.Process(pid)
        return proc

    def _tree(self, pid: int) -> tuple[float, int]:
        cpu = 0.0
        rss = 0
        try:
            root = self._proc(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return cpu, rss
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                cpu += times.user + times.system
                rss += proc.memory_info().rss
        return cpu, rss

    def sample(self) -> dict[str, tuple[float, int]]:
        out: dict[str, tuple[float, int]] = {}
        now = time.monotonic()
        for name, pid in self.pids.items():
            cpu, rss = self._tree(pid)
            last = self._last.get(name)
            self._last[name] = (now, cpu)
            if last is None or now <= last[0]:
                out[name] = (0.0, rss)
            else:
                out[name] = (max(0.0, 100 * (cpu - last[1]) / (now - last[0])), rss)
        return out

    def rss(self, name: str) -> int:
        return self._tree(self.pids[name])[1]
