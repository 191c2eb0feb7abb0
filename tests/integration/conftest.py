"""Integration tests run against real processes; their clients are closed after each."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _closes_clients(close_clients: None) -> None:
    """Every test here closes the clients it opened (see ``close_clients``)."""
