"""Client address resolution and admission rules, without sockets."""

from __future__ import annotations

import pytest

from gateway.admission import Admission
from shared.config import Settings
from shared.errors import Refused


def admission(**settings: object) -> Admission:
    return Admission(Settings(**settings))  # type: ignore[arg-type]


def test_forwarded_for_only_from_trusted_proxies() -> None:
    adm = admission(trusted_proxies="127.0.0.1/32, 10.0.0.0/8")
    assert adm.client_ip("127.0.0.1", {"x-forwarded-for": "203.0.113.7"}) == "203.0.113.7"
    assert adm.client_ip("192.0.2.1", {"x-forwarded-for": "203.0.113.7"}) == "192.0.2.1"
    # Chains: the right-most hop that is not a trusted proxy is the client; spoofed left parts lose.
    chain = {"x-forwarded-for": "6.6.6.6, 203.0.113.7, 10.1.2.3"}
    assert adm.client_ip("127.0.0.1", chain) == "203.0.113.7"
    assert adm.client_ip("127.0.0.1", {}) == "127.0.0.1"
    assert adm.client_ip(None, {}) == "unknown"


def test_origin_capacity_and_rate() -> None:
    adm = admission(
        allowed_origins="https://a.example", max_connections=5, conn_rate_per_ip=0.001,
        conn_burst_per_ip=2,
    )  # fmt: skip
    adm.check("https://a.example", "1.1.1.1", 0)
    adm.check(None, "1.1.1.1", 0)
    with pytest.raises(Refused) as info:
        adm.check(None, "1.1.1.1", 0)
    assert info.value.code == 1013
    with pytest.raises(Refused) as info:
        adm.check("https://b.example", "2.2.2.2", 0)
    assert info.value.code == 1008
    with pytest.raises(Refused) as info:
        adm.check(None, "3.3.3.3", 5)
    assert info.value.code == 1013


def test_short_auth_secrets_are_refused_at_start_up() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="at least 32 bytes"):
        Settings(auth_secret="too-short")
    assert Settings(auth_secret="x" * 32).auth_mode == "token"
