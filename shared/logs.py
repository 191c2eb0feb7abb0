"""Process-wide logging set-up, shared by every entry point."""

from __future__ import annotations

import logging

from shared.config import Settings


def configure(settings: Settings) -> None:
    """Plain one-line logs on stderr at ``CHAT_LOG_LEVEL``."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
