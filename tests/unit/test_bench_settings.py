"""``BENCH_*`` and ``SOAK_*`` variables: names, defaults, comma lists and the quick preset."""

from __future__ import annotations

import pytest

from bench.settings import BenchSettings, chat_env
from bench.soak.settings import SoakSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("BENCH_", "SOAK_")):
            monkeypatch.delenv(name)


def test_bench_defaults() -> None:
    s = BenchSettings()
    assert not s.quick
    assert s.experiments == list("1234567LCRPS")
    assert s.users == 1000 and s.duration_s == 20.0 and s.idle_connections == 10_000
    # The report prints the settings: defaults keep their own types.
    assert s.model_dump()["peak_rates"] == [100, 250, 500, 1000, 1250, 1500, 2000, 2500, 3000, 4000]
    assert all(type(r) is int for r in s.peak_rates)


def test_bench_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_EXPERIMENTS", "1, 4,L")
    monkeypatch.setenv("BENCH_PEAK_RATES", "1,2.5, 3")
    monkeypatch.setenv("BENCH_USERS", "20")
    monkeypatch.setenv("BENCH_P99_MS", "50")
    monkeypatch.setenv("BENCH_OUT", "/tmp/out")
    monkeypatch.setenv("BENCH_WORKERS", "")  # empty: the default
    monkeypatch.setenv("BENCH_PUBLISHES", "9")  # bench.publish's, not a field
    s = BenchSettings()
    assert s.experiments == ["1", "4", "L"]
    assert s.peak_rates == [1.0, 2.5, 3.0]
    assert (s.users, s.p99_ms, s.out, s.workers) == (20, 50.0, "/tmp/out", 2)


QUICK_VALUES = [("1", True), ("yes", True), ("0", False), ("false", False), ("no", False),
                ("", False)]  # fmt: skip


@pytest.mark.parametrize(("value", "quick"), QUICK_VALUES)
def test_bench_quick_flag(monkeypatch: pytest.MonkeyPatch, value: str, quick: bool) -> None:
    monkeypatch.setenv("BENCH_QUICK", value)
    assert BenchSettings().quick is quick


def test_quick_shortens_unless_a_variable_says_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_QUICK", "1")
    monkeypatch.setenv("BENCH_DURATION_S", "7")
    s = BenchSettings()
    assert (s.ramp_s, s.step_s, s.cross_s, s.idle_connections) == (2.0, 5.0, 5.0, 3000)
    assert s.peak_rates == [100, 250, 500, 1000, 2000, 3000]
    assert s.baseline_rates == [10, 20, 40, 80]
    assert s.duration_s == 7.0


def test_bench_settings_are_frozen() -> None:
    with pytest.raises(ValueError):
        BenchSettings().users = 3  # type: ignore[misc]


def test_chat_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert BenchSettings().chat_env() == chat_env()
    assert chat_env()["CHAT_MAX_CONNECTIONS"] == "20000"
    assert "CHAT_MAX_BACKLOG_EVENTS" not in chat_env()
    monkeypatch.setenv("BENCH_IDLE_CONNECTIONS", "15000")
    monkeypatch.setenv("BENCH_BACKLOG_EVENTS", "5")
    env = BenchSettings().chat_env()
    assert env["CHAT_MAX_CONNECTIONS"] == "30000"
    assert env["CHAT_MAX_BACKLOG_EVENTS"] == "5"


def test_soak_defaults_and_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SoakSettings().model_dump() == {
        "seconds": 120.0, "warmup_s": 5.0, "settle_s": 3.0, "users": 300, "rooms": 3,
        "rate": 50.0, "churn_per_s": 20.0, "churn_timeout_s": 15.0, "churn_inflight": 200,
        "gateways": 3, "workers": 1, "out": "",
    }  # fmt: skip
    monkeypatch.setenv("SOAK_USERS", "10")
    monkeypatch.setenv("SOAK_RATE", "5")
    monkeypatch.setenv("SOAK_CHURN_PER_S", "")  # empty: the default
    s = SoakSettings()
    assert (s.users, s.rate, s.churn_per_s) == (10, 5.0, 20.0)


def test_soak_warmup_is_at_most_half(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOAK_SECONDS", "6")
    assert SoakSettings().warmup_s == 3.0
