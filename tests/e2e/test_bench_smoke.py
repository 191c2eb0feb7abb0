"""A tiny run of the real load generator against the real stack: the benchmark machinery works
and its verification passes. It asserts completion and correctness, never a speed."""

from __future__ import annotations

from pathlib import Path

from bench.settings import BenchSettings
from loadtests.runner import LoadConfig, run_load
from loadtests.worker import Phase
from stack.topology import Stack, StackConfig
from tests.conftest import free_port


def test_load_generator_runs_and_verifies(tmp_path: Path) -> None:
    env = BenchSettings().chat_env()
    stack = Stack(StackConfig(tmp_path / "stack", gateways=2, port=free_port(), env=env))
    stack.start()
    try:
        stack.wait_ready()
        pids = {f"gateway{i}": g.proc.pid for i, g in enumerate(stack.gateways) if g.proc}
        config = LoadConfig(
            urls=[stack.ws_url],
            users=12,
            phases=[Phase("ramp", 1.0, 30.0, measured=False), Phase("steady", 2.0, 30.0)],
            rooms=["smoke"],
            workers=2,
            sample_every=1,
            progress=False,
        )
        result = run_load(config, pids)
    finally:
        stack.stop()
    assert result.problems() == []
    assert result.connected == 12
    measured = result.measured
    assert measured.counts["sent"] > 0
    # Everyone receives every message of the room: deliveries = messages x users.
    total = result.last_seq["smoke"]
    assert total == sum(p.counts.get("sent", 0) for p in result.phases)
    assert sum(p.counts.get("delivered", 0) for p in result.phases) == total * 12
    assert measured.latency.count > 0
    assert set(measured.procs) >= {"gateway0", "gateway1", "loadgen0", "loadgen1"}
