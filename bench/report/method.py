"""The report's "Method" section: how every number was measured."""

from __future__ import annotations

from typing import Any


def method(s: dict[str, Any]) -> list[str]:
    """The section's lines, for the run's settings ``s``."""
    return [
        "## Method",
        "",
        f"- Load generator: `loadtests`, {s['workers']} processes (own uvloop each), picows "
        "client, orjson; every frame is parsed and checked (per-room gapless seq, duplicates, "
        "own echo by cid); results exclude the ramp phase.",
        f"- Latency: server `ts` (ms, epoch) → receipt time on the same clock, sampled for every "
        f"{s['sample_every']}th delivered message (systematic sampling); `ts` has 1 ms "
        "resolution, so values are up to 1 ms pessimistic. Percentiles are nearest-rank from a "
        "histogram (0.1 ms buckets below 100 ms, ~1 % above), reported as the bucket's upper "
        "bound.",
        "- Peak searches step the total send rate up; a step holds if its p99 ≤ the bound and "
        "it saw no gap, duplicate, error or close (the baseline's reordering is reported, not "
        "counted as a failure). The search stops at once on a verification failure, and after "
        f"{s.get('peak_strikes', 1)} steps in a row over the p99 bound. Experiment 5 samples "
        "the persister's `/metrics` (`chat_persist_rows_written_total`, "
        "`chat_persist_lag_seconds`) once a second during the peak steps.",
        "- Experiment 7's ratio: this project's best deliveries/s at p99 ≤ the bound (the peak "
        "search's highest held step, or a verified run of the same 1000-user room within the "
        "bound) over the baseline's highest held step.",
        "- Experiment 3 and 6 connect to gateways directly (one user per gateway; 6: one "
        "gateway); all other runs go through nginx.",
        "- CPU% is per process tree (nginx with its workers), averaged over the measured "
        "phases; 100 % is one core. Experiments R and P: per step, and as µs of CPU per "
        "message in (CPU % x 10,000 / msgs/s sent).",
        "- Experiment P's peers are driven by the same load generator in its Socket.IO mode "
        "(Engine.IO v4 over a plain WebSocket): loss, order and duplicates from per-sender "
        "counters in the payload, latency from the send time in the payload (the peers stamp "
        "no server time), so their latency includes the way in that this project's omits.",
        "- Experiment 5 reports whether the persister kept up with the rate the peak search "
        "offered (its rows/s follow that rate); its capacity is experiment S, "
        "`bench.persister` (`make bench-persister`) run on its own Redis and MariaDB.",
    ]
