"""Process-wide logging set-up, shared by every entry point.

``CHAT_LOG_FORMAT=text`` (default): one readable line per record. ``json``: one JSON object per
line for log collectors, with ``time``, ``level``, ``logger`` and ``message``, plus any fields
a call adds with ``extra=`` (room, user...). uvicorn's own loggers go through the same handler
(the servers are started with ``log_config=None``). A URL may carry a token (``/ws?token=``):
access logs are off, and uvicorn's WebSocket request lines pass :class:`RedactTokens`.
"""

from __future__ import annotations

import logging
import re

from pythonjsonlogger.json import JsonFormatter

from shared.config import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_TOKEN = re.compile(r"(token=)[^&\s\"']+")


class RedactTokens(logging.Filter):
    """Replace the value of every ``token=`` in a record's message with ``<redacted>``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "token=" in message:
            record.msg, record.args = _TOKEN.sub(r"\1<redacted>", message), None
        return True


def configure(settings: Settings) -> None:
    """Logs on stderr at ``CHAT_LOG_LEVEL``, as text or JSON (``CHAT_LOG_FORMAT``)."""
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{name}{message}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactTokens())
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler], force=True)
