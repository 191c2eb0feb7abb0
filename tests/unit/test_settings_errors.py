"""Invalid ``CHAT_*`` settings stop every entry point with one line per variable and status 2
(issue 14, item 4): no traceback, nothing started."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.config import Settings, load_settings, setting_errors
from shared.logs import RedactTokens

ROOT = Path(__file__).resolve().parents[2]

SHORT_SECRET = "0123456789abcdef"  # 16 bytes: HS256 needs 32
PORT = "invalid setting CHAT_PORT: must be a valid integer, unable to parse string as an integer"
SECRET = "invalid setting CHAT_AUTH_SECRET: must be at least 32 bytes"

CASES = {
    "port": ({"CHAT_PORT": "eighty"}, [PORT]),
    "secret": ({"CHAT_AUTH_SECRET": SHORT_SECRET}, [SECRET]),
    "both": ({"CHAT_PORT": "eighty", "CHAT_AUTH_SECRET": SHORT_SECRET}, [PORT, SECRET]),
}


def clean_environment(**chat: str) -> dict[str, str]:
    """This process's environment without its ``CHAT_*`` variables, plus ``chat``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
    return {**env, **chat}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("module", ["embedded", "gateway", "persister", "stack"])
def test_entry_points_refuse_invalid_settings_in_one_line_each(module: str, case: str) -> None:
    chat, expected = CASES[case]
    result = subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env=clean_environment(**chat),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == expected
    assert result.stdout == ""
    assert result.returncode == 2


@pytest.fixture
def no_chat_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Settings built in this process see no ``CHAT_*`` variable of the test run's."""
    for name in [k for k in os.environ if k.startswith("CHAT_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def test_load_settings_exits_2(
    no_chat_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    no_chat_env.setenv("CHAT_SHARDS", "0")
    no_chat_env.setenv("CHAT_BROKER", "kafka")
    with pytest.raises(SystemExit) as exited:
        load_settings()
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "invalid setting CHAT_BROKER: must be 'memory' or 'redis'",
        "invalid setting CHAT_SHARDS: must be greater than or equal to 1",
    ]
    no_chat_env.delenv("CHAT_SHARDS")
    no_chat_env.delenv("CHAT_BROKER")
    assert load_settings().shards == 48


def test_a_value_is_never_echoed() -> None:
    secret = "short-but-secret"
    with pytest.raises(ValidationError) as info:
        Settings(auth_secret=secret)
    assert setting_errors(info.value) == [SECRET]
    assert all(secret not in line for line in setting_errors(info.value))


@pytest.mark.usefixtures("no_chat_env")
def test_derived_defaults() -> None:
    settings = Settings(data_dir=Path("/srv/chat"))
    assert settings.database_url == "sqlite:////srv/chat/chat.db"
    host_and_pid = settings.gateway_id
    assert host_and_pid.endswith(f"-{os.getpid()}") and settings.persister_id == host_and_pid
    # Values that are set are kept; empty ones are derived.
    named = Settings(database_url="sqlite:///x.db", gateway_id="gw1", persister_id="p1")
    assert (named.database_url, named.gateway_id, named.persister_id) == (
        "sqlite:///x.db",
        "gw1",
        "p1",
    )
    assert Settings(gateway_id="").gateway_id == host_and_pid


def test_log_lines_never_carry_a_token() -> None:
    record = logging.LogRecord(
        "uvicorn.error", logging.INFO, __file__, 1, '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:1", "/ws?user=a&token=eyJhbGc.eyJzdWI.sig&room=x"), None,
    )  # fmt: skip
    assert RedactTokens().filter(record)
    assert record.getMessage() == (
        '127.0.0.1:1 - "WebSocket /ws?user=a&token=<redacted>&room=x" [accepted]'
    )
