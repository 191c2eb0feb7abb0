"""``make chaos`` in short: 20 s of traffic through the native stack while a fixed schedule
kills Redis (restarted from its AOF), a gateway and the persister; the run must PASS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_chaos_with_three_faults_passes(tmp_path: Path) -> None:
    report = tmp_path / "chaos.md"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CHAOS_")},
        "CHAOS_SECONDS": "20",
        "CHAOS_USERS": "60",
        "CHAOS_ROOMS": "12",
        "CHAOS_RATE": "2",
        "CHAOS_SEED": "13",
        "CHAOS_SCHEDULE": "2:redis,8:gateway,13:persister",
        "CHAOS_DRAIN_S": "30",
        "CHAOS_OUT": str(report),
    }
    result = subprocess.run(
        [sys.executable, "-m", "bench.chaos"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    text = report.read_text()
    assert "**Verdict: PASS**" in text and "**Seed 13**" in text
    # Every fault came back, and messages were acknowledged again after each one.
    table = text.split("## Faults", 1)[1]
    rows = [line.split("|") for line in table.splitlines() if line.startswith("| ")]
    faults = [r for r in rows if r[1].strip().isdigit()]
    assert [r[5].strip() for r in faults] == ["redis", "gateway", "persister"], table
    for row in faults:
        back, first_ack = row[7].strip(), row[8].strip()
        assert back != "-" and first_ack != "-", row
