"""The persister sends a row's time to MySQL as text (``to_mysql_datetime``), not as the
datetime SQLAlchemy's statements take (``to_datetime``): both must name the same instant."""

from __future__ import annotations

from datetime import datetime

import pytest

from shared.store import to_datetime, to_ms, to_mysql_datetime


@pytest.mark.parametrize(
    "ts_ms",
    [0, 5, 1_700_000_000_987, 1_709_164_800_000, 1_709_251_199_999, 4_102_444_800_001],
)
def test_the_text_and_the_datetime_name_the_same_millisecond(ts_ms: int) -> None:
    text = to_mysql_datetime(ts_ms)
    assert len(text) == len("2026-11-30 03:41:34.123")
    assert datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f") == to_datetime(ts_ms)
    assert to_ms(to_datetime(ts_ms)) == ts_ms
