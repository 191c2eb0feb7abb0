"""``python -m loadtests --url ws://127.0.0.1:8080/ws --users 100 --rate 50 --duration 20``"""

from __future__ import annotations

import argparse
import json

from loadtests.runner import LoadConfig, run_load
from loadtests.worker import Phase


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", action="append", required=True, help="ws://host:port/ws (repeat)")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--rate", type=float, default=50.0, help="messages/s over all senders")
    parser.add_argument("--senders", type=int, default=None, help="users that send (default all)")
    parser.add_argument("--room", action="append", default=None)
    parser.add_argument("--room-mode", choices=["all", "spread"], default="all")
    parser.add_argument("--ramp", type=float, default=3.0, help="seconds excluded from results")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--text-bytes", type=int, default=32)
    parser.add_argument("--sample-every", type=int, default=10)
    parser.add_argument("--client", choices=["picows", "websockets"], default="picows")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args()
    config = LoadConfig(
        urls=args.url,
        users=args.users,
        phases=[
            Phase("ramp", args.ramp, args.rate, measured=False),
            Phase("steady", args.duration, args.rate),
        ],
        rooms=args.room or ["bench"],
        room_mode=args.room_mode,
        senders=args.senders,
        workers=args.workers,
        text_bytes=args.text_bytes,
        sample_every=args.sample_every,
        client=args.client,
    )
    result = run_load(config)
    summary = {
        **result.measured.summary(),
        "connected": result.connected,
        "verified": result.ok,
        "problems": result.problems(),
        "anomalies": result.anomalies[:5],
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key, value in summary.items():
            print(f"{key:>18}: {value}")
    raise SystemExit(0 if result.ok else 1)


if __name__ == "__main__":
    main()
