"""``python -m gateway``: one gateway, configured by ``CHAT_*`` environment variables."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from gateway.app import build_node, create_app
from gateway.server import serve
from shared import logs
from shared.config import load_settings


def main() -> None:
    settings = load_settings()
    logs.configure(settings)
    registry = CollectorRegistry()
    node = build_node(settings, registry, writes_store=settings.persist_mode == "sync")
    app = create_app(node, registry)
    serve(app, settings, node)


if __name__ == "__main__":
    main()
