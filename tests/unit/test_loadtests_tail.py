"""The runner's whole-run tail check: room-wide seq, or per gateway (memory broker)."""

from __future__ import annotations

from typing import Any

from loadtests.runner import LoadConfig, LoadResult, _tail


def _user(name: str, gateway: str, last: int) -> dict[str, Any]:
    return {"user": name, "gateway": gateway, "open": True, "last": {"r": last}, "missing": 0,
            "pending": 0, "sent": 1, "senders": {}}  # fmt: skip


def _result(per_gateway: bool) -> LoadResult:
    config = LoadConfig(urls=["ws://x"], users=3, phases=[], seq_per_gateway=per_gateway)
    result = LoadResult(config, [])
    result.__dict__["_users"] = [_user("a", "g0", 10), _user("b", "g1", 9), _user("c", "g1", 9)]
    return result


def test_room_wide_seq_flags_a_tail_behind() -> None:
    result = _result(per_gateway=False)
    _tail(result)
    assert result.tail_missing == 2


def test_per_gateway_seq_compares_within_each_gateway() -> None:
    result = _result(per_gateway=True)
    _tail(result)
    assert result.tail_missing == 0
    assert result.last_seq == {"g0/r": 10, "g1/r": 9}
