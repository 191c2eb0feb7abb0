"""``python -m embedded`` (``make run``): gateway + memory broker + persister loop + SQLite."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from gateway.app import build_node, create_app
from gateway.server import serve
from persister.worker import Worker
from shared import logs
from shared.config import load_settings
from shared.metrics import PersisterMetrics
from shared.stream_memory import MemoryStream


def main() -> None:
    settings = load_settings()
    logs.configure(settings)
    if settings.database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    registry = CollectorRegistry()
    stream = MemoryStream()
    node = build_node(settings, registry, stream=stream, writes_store=True)
    assert node.store is not None
    worker = Worker(
        stream,
        node.store,
        PersisterMetrics(registry),
        batch_size=settings.batch_size,
        flush_interval_s=settings.flush_interval_ms / 1000,
    )
    app = create_app(node, registry, services=[worker])
    print(f"chat: open http://{settings.host}:{settings.port}/ (data in {settings.database_url})")
    serve(app, settings, node)


if __name__ == "__main__":
    main()
