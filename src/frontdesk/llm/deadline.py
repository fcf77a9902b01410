"""A wall-clock deadline that the HTTP sockets of the LLM SDKs obey.

httpx (and ``httpx2``, which the OpenAI and Anthropic SDKs use) only has *per-operation* timeouts:
a server that sends one byte every 10 s keeps a ``timeout=30`` read alive forever. So the tier
sets the call's deadline in a context variable (:func:`deadline_scope`) and the SDK clients built
by :func:`http_client` use a network backend whose every connect, read and write waits at most
until that deadline, then fails as a timeout. A keep-alive connection reused later obeys the
deadline of whichever call uses it, because the deadline is looked up at each read.

Outside a :func:`deadline_scope` nothing changes (the SDK's own timeouts apply).
"""

from __future__ import annotations

import contextvars
import functools
import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("frontdesk.llm")

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("frontdesk_llm_deadline", default=None)


@contextmanager
def deadline_scope(deadline: float | None) -> Iterator[None]:
    """Within the block, HTTP calls of :func:`http_client` clients end by ``deadline`` (``time.monotonic()``)."""
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def current_deadline() -> float | None:
    return _DEADLINE.get()


def _bounded(timeout: float | None, exc: type[Exception]) -> float | None:
    """``timeout`` shortened to the time left before the current deadline; ``exc`` when none is left."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise exc("the call's deadline passed")
    return left if timeout is None else min(timeout, left)


@functools.cache
def _backend_classes() -> tuple[type, type]:
    """The deadline-aware stream and backend classes for ``httpcore2`` (built lazily: it is optional)."""
    import httpcore2

    class DeadlineStream(httpcore2.NetworkStream):
        """A network stream whose reads and writes never wait past the deadline."""

        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return self._inner.read(max_bytes, _bounded(timeout, httpcore2.ReadTimeout))

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self._inner.write(buffer, _bounded(timeout, httpcore2.WriteTimeout))

        def close(self) -> None:
            self._inner.close()

        def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> Any:
            return DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, _bounded(timeout, httpcore2.ConnectTimeout)))

        def get_extra_info(self, info: str) -> Any:
            return self._inner.get_extra_info(info)

    class DeadlineBackend(httpcore2.NetworkBackend):
        """Wraps a backend: connects and the streams it returns obey the deadline."""

        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                        socket_options: Iterable[Any] | None = None) -> Any:
            stream = self._inner.connect_tcp(host, port, _bounded(timeout, httpcore2.ConnectTimeout), local_address, socket_options)
            return DeadlineStream(stream)

        def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None) -> Any:
            return DeadlineStream(self._inner.connect_unix_socket(path, _bounded(timeout, httpcore2.ConnectTimeout), socket_options))

        def sleep(self, seconds: float) -> None:
            self._inner.sleep(seconds)

    return DeadlineStream, DeadlineBackend


def install(client: Any) -> bool:
    """Make every transport of an ``httpx2.Client`` (proxies included) obey the deadline.

    Returns False (and logs) when the client's internals are not the expected ones, in which case
    only the tier's own deadline protects the caller (the call is abandoned, not stopped).
    """
    try:
        _, backend_cls = _backend_classes()
    except ImportError:
        return False
    transports = [getattr(client, "_transport", None), *getattr(client, "_mounts", {}).values()]
    done = 0
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        inner = getattr(pool, "_network_backend", None)
        if inner is None:
            continue
        if not isinstance(inner, backend_cls):
            pool._network_backend = backend_cls(inner)
        done += 1
    if not done:
        log.warning("this httpx2 version has no connection pool where expected: LLM calls past their deadline are "
                    "abandoned by the tier, not stopped (upgrade or pin httpx2 as in constraints.txt)")
    return done > 0


def http_client(sdk: Any, timeout: float = 60.0) -> Any:
    """The SDK's default HTTP client (its limits and redirects), made deadline-aware by :func:`install`."""
    client = sdk.DefaultHttpxClient(timeout=timeout)
    install(client)
    return client


__all__ = ["current_deadline", "deadline_scope", "http_client", "install"]
