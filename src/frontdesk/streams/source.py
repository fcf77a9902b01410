"""Where a consumer reads: a Redis URL that also names the stream (``redis://host:6379/inbound``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from frontdesk.errors import ConfigError

_FORMS = ("redis://HOST[:PORT]/STREAM, redis://HOST[:PORT]/DB/STREAM, rediss://…, "
          "or unix:///path/redis.sock?stream=STREAM[&db=DB]")


@dataclass(frozen=True)
class StreamSource:
    """A Redis server (``url``, without the stream) and the stream to read on it."""

    url: str
    stream: str

    @classmethod
    def parse(cls, url: str) -> StreamSource:
        """Split ``redis://HOST[:PORT][/DB]/STREAM`` (or ``…?stream=STREAM``) into server URL and stream name.

        The path is the stream name, except a leading all-digit segment followed by more, which is the
        database number (``redis://h/2/inbound`` = db 2, stream ``inbound``). Socket URLs carry the stream
        in the query, since their path is the socket's.
        """
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(f"{url!r} is not a Redis URL: use {_FORMS}", field="--from")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        stream = query.pop("stream", None)
        path = parts.path
        if scheme != "unix" and stream is None:
            segments = [s for s in path.split("/") if s]
            if len(segments) >= 2 and segments[0].isdigit():
                query.setdefault("db", segments[0])
                segments = segments[1:]
            stream = "/".join(segments) or None
            path = ""
        if not stream:
            raise ConfigError(f"{url!r} names no stream: use {_FORMS}", field="--from")
        server = f"{parts.scheme}://{parts.netloc}{path}" + (f"?{urlencode(query)}" if query else "")
        return cls(server, stream)

    def client(self, **options: Any) -> Any:
        """A ``redis.Redis`` client for the server (bytes in, bytes out unless ``options`` say otherwise)."""
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - redis is in the sinks/streams extras
            raise ConfigError("reading a Redis stream needs the 'redis' package: pip install 'frontdesk[sinks]'",
                              field="--from") from exc
        try:
            return redis.Redis.from_url(self.url, **options)
        except ValueError as exc:
            raise ConfigError(f"bad Redis URL {self.url!r} ({exc}): use {_FORMS}", field="--from") from exc

    def __str__(self) -> str:
        return f"{self.url} stream {self.stream!r}"
