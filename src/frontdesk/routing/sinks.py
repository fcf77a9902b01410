"""Sinks deliver RoutedTargets somewhere: stdout, a JSONL file, an HTTP webhook, a Redis stream.

Every sink has ``deliver(target)`` and ``close()`` (and works as a context manager);
:func:`sink_from_url` builds one from a URL so the destination is a setting, not code. Delivery is
at-least-once: the webhook retries transient failures and sends the target id as
``Idempotency-Key`` so a receiver can drop repeats; when a sink gives up it raises
:class:`DeliveryError` with what to do next — it never drops a target silently.
"""

from __future__ import annotations

import hashlib
import json
import string
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from frontdesk.common.retry import RetryPolicy, call_with_retries, parse_retry_after
from frontdesk.errors import ConfigError, FrontdeskError
from frontdesk.routing.targets import RoutedTarget


def _require(module: str, sink: str) -> Any:
    """Import an optional client library, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"the {sink} sink needs the {module!r} package: pip install {module}", field="sink") from exc


class DeliveryError(FrontdeskError):
    """A sink could not deliver a target. ``target_id``, ``status`` (HTTP status or None), ``attempts``."""

    def __init__(self, message: str, *, target_id: str | None = None, status: int | None = None, attempts: int = 1) -> None:
        super().__init__(message)
        self.target_id = target_id
        self.status = status
        self.attempts = attempts


@runtime_checkable
class Sink(Protocol):
    """Where routed targets go. ``deliver`` raises DeliveryError when it gives up."""

    def deliver(self, target: RoutedTarget) -> None: ...

    def close(self) -> None: ...


class _Base:
    """Context-manager support shared by the built-in sinks."""

    def deliver(self, target: RoutedTarget) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def close(self) -> None:
        """Release the sink's resources (idempotent)."""

    def __enter__(self):  # noqa: ANN204
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _line(target: RoutedTarget) -> str:
    return target.model_dump_json()


class StdoutSink(_Base):
    """One JSON object per line on stdout (or ``stream``), flushed per target — for pipes and demos."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def deliver(self, target: RoutedTarget) -> None:
        out = self._stream or sys.stdout  # resolved per call so redirected stdout is honoured
        with self._lock:
            out.write(_line(target) + "\n")
            out.flush()


class JsonlSink(_Base):
    """Appends one JSON object per line to ``path`` and flushes after each (safe to ``tail -f``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh: IO[str] | None = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot open {self.path} for appending ({exc.strerror}): pick a writable path", field="sink.path") from exc
        self._lock = threading.Lock()

    def deliver(self, target: RoutedTarget) -> None:
        with self._lock:
            if self._fh is None:
                raise DeliveryError(f"JSONL sink {self.path} is closed: create a new sink", target_id=target.id)
            try:
                self._fh.write(_line(target) + "\n")
                self._fh.flush()
            except OSError as exc:
                raise DeliveryError(
                    f"cannot write to {self.path} ({exc.strerror}): free disk space or fix permissions, then redeliver",
                    target_id=target.id,
                ) from exc

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


class _Transient(Exception):
    """A webhook attempt that may succeed if repeated (connection error, timeout, 429, 5xx)."""

    def __init__(self, last: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(last)
        self.last, self.status, self.retry_after = last, status, retry_after


class WebhookSink(_Base):
    """POSTs each target as JSON to ``url``; retries transient failures with jittered exponential backoff.

    ``retries`` is the number of *extra* attempts (``retries=3`` → at most 4 POSTs). Retried:
    connection errors, timeouts, HTTP 429 and 5xx, by :func:`frontdesk.common.retry.call_with_retries`:
    the wait is ``backoff_s * 2**n`` (up to ``max_backoff_s``) stretched by up to ``jitter``, unless
    the response has a ``Retry-After`` of at most ``max_retry_after_s`` seconds, which is honoured
    (a longer one is ignored rather than blocking the sink). Any other non-2xx status fails at
    once (retrying a 400/401/404 cannot help). Every attempt carries the same
    ``Idempotency-Key`` (the target id), so the receiver can drop repeats.
    """

    def __init__(
        self,
        url: str,
        timeout_s: float = 5.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        headers: Mapping[str, str] | None = None,
        *,
        max_retry_after_s: float = 30.0,
        max_backoff_s: float = 30.0,
        jitter: float = 0.5,
        client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        httpx = _require("httpx", "webhook")
        if urlsplit(url).scheme not in ("http", "https"):
            raise ConfigError(f"webhook URL must start with http:// or https://, got {url!r}", field="sink.url")
        if retries < 0 or timeout_s <= 0 or backoff_s < 0 or jitter < 0 or max_backoff_s < 0:
            raise ConfigError(
                f"need retries ≥ 0, timeout_s > 0, backoff_s ≥ 0, max_backoff_s ≥ 0, jitter ≥ 0 "
                f"(got {retries}, {timeout_s}, {backoff_s}, {max_backoff_s}, {jitter})", field="sink"
            )
        self.url = url
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_retry_after_s = max_retry_after_s
        self.policy = RetryPolicy(retries=retries, backoff_s=backoff_s, max_backoff_s=max_backoff_s, jitter=jitter,
                                  max_retry_after_s=max_retry_after_s)
        self._headers = dict(headers or {})
        self._own_client = client is None
        self._client = client or httpx.Client(timeout=timeout_s, follow_redirects=False)
        self._sleep = sleep
        self._httpx = httpx

    def deliver(self, target: RoutedTarget) -> None:
        httpx = self._httpx
        headers = {**self._headers, "Idempotency-Key": target.id, "Content-Type": "application/json"}
        body = _line(target).encode("utf-8")

        def post() -> None:
            try:
                resp = self._client.post(self.url, content=body, headers=headers)
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                raise _Transient(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from exc
            status = resp.status_code
            if 200 <= status < 300:
                return
            last = f"HTTP {status} {resp.reason_phrase}: {resp.text[:200]!r}"
            if status == 429 or status >= 500:
                raise _Transient(last, status, parse_retry_after(resp.headers.get("Retry-After")))
            raise DeliveryError(
                f"webhook {self.url} rejected target {target.id} with {last}: not retried (a client error "
                "will not change); check the URL, the auth headers and the payload the receiver expects",
                target_id=target.id, status=status,
            )

        try:
            call_with_retries(post, self.policy, retryable=lambda e: isinstance(e, _Transient),
                              retry_after=lambda e: getattr(e, "retry_after", None), sleep=self._sleep)
        except DeliveryError as exc:
            exc.attempts = getattr(exc, "attempts", 1)
            raise
        except _Transient as exc:
            attempts = getattr(exc, "attempts", self.retries + 1)
            raise DeliveryError(
                f"webhook {self.url} failed for target {target.id} after {attempts} attempt(s), last: {exc.last}; check the "
                "receiver is up and reachable, then redeliver (the Idempotency-Key header makes repeats safe)",
                target_id=target.id, status=exc.status, attempts=attempts,
            ) from None

    def close(self) -> None:
        if self._own_client:
            self._client.close()


def _stream_fields(target: RoutedTarget) -> dict[str, str]:
    """The target as flat XADD fields: strings as is, None → "", bools/numbers/lists as JSON."""
    out = {}
    for key, value in target.model_dump(mode="json").items():
        if value is None:
            out[key] = ""
        elif isinstance(value, str):
            out[key] = value
        else:
            out[key] = json.dumps(value, ensure_ascii=False)
    return out


class RedisStreamSink(_Base):
    """XADDs each target to a Redis stream, trimmed to about ``maxlen`` entries.

    ``stream`` is a template over the target's fields (``{queue}``, ``{label}``, …), so each team
    queue can get its own stream; fields are flat strings (see :func:`_stream_fields`). Pass a
    ``redis://`` / ``rediss://`` / ``unix://`` URL or an existing ``redis.Redis`` client (which
    ``close`` then leaves open).
    """

    def __init__(
        self,
        url_or_client: Any,
        stream: str = "frontdesk:{queue}",
        maxlen: int | None = 100_000,
        *,
        approximate: bool = True,
    ) -> None:
        redis = _require("redis", "Redis Streams")
        names = {f for _, f, _, _ in string.Formatter().parse(stream) if f is not None}
        bad = sorted(n for n in names if n not in RoutedTarget.model_fields)
        if bad:
            raise ConfigError(
                f"stream template {stream!r} uses unknown field(s) {bad}; use target fields such as {{queue}} or {{label}}",
                field="sink.stream",
            )
        if maxlen is not None and maxlen < 1:
            raise ConfigError(f"must be ≥ 1 or None (no trimming), got {maxlen}", field="sink.maxlen")
        self._redis = redis
        if isinstance(url_or_client, str):
            try:
                self._client = redis.Redis.from_url(url_or_client)
            except ValueError as exc:
                raise ConfigError(f"bad Redis URL {url_or_client!r} ({exc})", field="sink.url") from exc
            self._own_client = True
        else:
            self._client, self._own_client = url_or_client, False
        self.stream = stream
        self.maxlen = maxlen
        self.approximate = approximate

    def stream_for(self, target: RoutedTarget) -> str:
        """The stream name ``target`` goes to."""
        return self.stream.format(**target.model_dump())

    def deliver(self, target: RoutedTarget) -> None:
        name = self.stream_for(target)
        try:
            self._client.xadd(name, _stream_fields(target), maxlen=self.maxlen, approximate=self.approximate)
        except self._redis.RedisError as exc:
            raise DeliveryError(
                f"XADD to Redis stream {name!r} failed for target {target.id} ({type(exc).__name__}: {exc}); "
                "check the Redis server is up and reachable, then redeliver",
                target_id=target.id,
            ) from exc

    def close(self) -> None:
        if self._own_client:
            self._client.close()


class RedactedSink(_Base):
    """Delivers targets to ``inner`` with the customer's text replaced by its length and a short hash.

    For sinks that end up in logs or shared streams (``stdout?redact=true``): the receiver still
    gets the routing (queue, label, priority, ids) and can match repeats by the hash, never the text.
    """

    def __init__(self, inner: Sink) -> None:
        self.inner = inner

    @staticmethod
    def redact(target: RoutedTarget) -> RoutedTarget:
        digest = hashlib.sha256(target.text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        return target.model_copy(update={"text": f"[redacted: {len(target.text)} characters, sha256 {digest}]"})

    def deliver(self, target: RoutedTarget) -> None:
        self.inner.deliver(self.redact(target))

    def close(self) -> None:
        self.inner.close()


def _pop_redact(url: str) -> tuple[str, bool]:
    """``url`` without a ``redact=true|false`` query parameter, and its value (other parameters stay)."""
    if "?" not in url:
        return url, False
    base, _, query = url.partition("?")
    kept, redact = [], False
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if name == "redact":
            if value.lower() not in ("", "true", "1", "yes", "false", "0", "no"):
                raise ConfigError(f"redact={value!r} in {base!r}: use redact=true or redact=false", field="sink.url")
            redact = value.lower() in ("", "true", "1", "yes")
        elif part:
            kept.append(part)
    return (f"{base}?{'&'.join(kept)}" if kept else base), redact


def sink_from_url(url: str, **options: Any) -> Sink:
    """The sink for ``url``: ``stdout``, ``jsonl:///path``, ``http(s)://…``, ``redis(s)://…`` or ``unix:///socket``.

    ``options`` go to the sink's constructor (e.g. ``retries=5``, ``stream="tickets:{queue}"``).
    A ``redact=true`` query parameter (``stdout?redact=true``) wraps the sink in :class:`RedactedSink`.
    """
    url, redact = _pop_redact(url)
    sink = _sink_for(url, **options)
    return RedactedSink(sink) if redact else sink


def _sink_for(url: str, **options: Any) -> Sink:
    if url in ("stdout", "stdout://", "-"):
        return StdoutSink(**options)
    scheme = urlsplit(url).scheme.lower()
    if scheme == "jsonl":
        parts = urlsplit(url)
        path = parts.netloc + parts.path  # jsonl:///abs/path or jsonl://relative/path
        if not path:
            raise ConfigError(f"{url!r} names no file: use jsonl:///absolute/path.jsonl", field="sink.url")
        return JsonlSink(path, **options)
    if scheme in ("http", "https"):
        return WebhookSink(url, **options)
    if scheme in ("redis", "rediss", "unix"):
        return RedisStreamSink(url, **options)
    raise ConfigError(
        f"unknown sink {url!r}; use one of: stdout, jsonl:///path.jsonl, http(s)://host/path, "
        "redis(s)://host:port/db, unix:///path/redis.sock",
        field="sink.url",
    )
