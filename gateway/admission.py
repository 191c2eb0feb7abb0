"""Who may open a connection: origin allow-list, gateway capacity, per-IP connection rate."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Mapping

from gateway.limits import TokenBucket
from shared import errors
from shared.config import Settings
from shared.errors import Refused

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Admission:
    """Decides, before ``hello``, whether a new connection may stay."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.origins = {o.rstrip("/") for o in settings.allowed_origin_list}
        self.trusted: list[Network] = [
            ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxy_list
        ]
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._pruned = clock()

    def client_ip(self, peer: str | None, headers: Mapping[str, str]) -> str:
        """The client's address: X-Forwarded-For is believed only from a trusted proxy."""
        ip = peer or "unknown"
        forwarded = headers.get("x-forwarded-for")
        if forwarded and self._trusted(ip):
            # The right-most address not belonging to a trusted proxy is the client.
            for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
                ip = hop
                if not self._trusted(hop):
                    break
        return ip

    def _trusted(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in net for net in self.trusted)

    def check(self, origin: str | None, ip: str, connections: int) -> None:
        """Raise :class:`Refused` when the connection must not stay."""
        if self.origins and origin is not None and origin.rstrip("/") not in self.origins:
            raise Refused(errors.POLICY_VIOLATION, "origin not allowed")
        if connections >= self.settings.max_connections:
            raise Refused(errors.TRY_AGAIN_LATER, "gateway at capacity")
        if not self._bucket(ip).take():
            raise Refused(errors.TRY_AGAIN_LATER, "too many new connections from this address")

    def _bucket(self, ip: str) -> TokenBucket:
        now = self._clock()
        if now - self._pruned > 60:
            # Forget addresses whose bucket is full again: they are indistinguishable from new.
            self._pruned = now
            burst = self.settings.conn_burst_per_ip
            self._buckets = {k: b for k, b in self._buckets.items() if b.level() < burst}
        bucket = self._buckets.get(ip)
        if bucket is None:
            bucket = self._buckets[ip] = TokenBucket(
                self.settings.conn_rate_per_ip, self.settings.conn_burst_per_ip, self._clock
            )
        return bucket
