"""``python -m gateway.mint USER [--rooms a,b*] [--ttl S]``: a signed token for local testing.

Uses ``CHAT_AUTH_SECRET`` like the gateway. A real application mints these in its own login
flow (same secret, HS256, ``sub`` = user name, a short ``exp``, optional ``rooms``).
"""

from __future__ import annotations

import argparse
import sys

from gateway.auth import mint
from shared.config import Settings


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.mint", description=__doc__)
    parser.add_argument("user")
    parser.add_argument("--rooms", help="comma-separated room names or patterns (team-*)")
    parser.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    args = parser.parse_args(argv)
    settings = Settings()
    if not settings.auth_secret:
        print("CHAT_AUTH_SECRET is not set", file=sys.stderr)
        return 2
    rooms = [r.strip() for r in args.rooms.split(",")] if args.rooms else None
    print(mint(settings.auth_secret, args.user, args.ttl, rooms))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
