"""Reloads that reach every replica: a version key in Redis that each replica watches.

A replica that reloads (``POST /v1/admin/reload``, a changed config file) bumps the version and says
which config it applied (the SHA-256 of the file) and whether the reload was explicit (``force``).
Every other replica sees the new version within ``watch_interval_s`` and re-reads its own config file
and model directory — always on an explicit reload, on a file change only when its file differs from
the announced one (replicas watching one shared file reload once each, not once per replica).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from redis import RedisError

log = logging.getLogger("frontdesk.shared")

_ANNOUNCE = """
local v = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'digest', ARGV[1], 'force', ARGV[2], 'by', ARGV[3], 'at', ARGV[4])
return v
"""


@dataclass(frozen=True)
class Announcement:
    """The newest reload announced: version number, config digest, explicit or not, which replica, when."""

    version: int
    digest: str
    force: bool
    by: str
    at: str


class VersionKey:
    """The Redis hash ``{prefix}config:version`` (version, digest, force, by, at)."""

    def __init__(self, client: Any, prefix: str = "frontdesk:") -> None:
        self.client = client
        self.key = f"{prefix}config:version"
        self._announce = client.register_script(_ANNOUNCE)

    def current(self) -> Announcement | None:
        """The newest announcement, or None when no replica has announced a reload yet."""
        raw = self.client.hgetall(self.key)
        if not raw:
            return None
        h = {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v for k, v in raw.items()}
        return Announcement(int(h.get("version", 0)), h.get("digest", ""), h.get("force") == "1", h.get("by", "?"), h.get("at", ""))

    def announce(self, digest: str, *, force: bool, by: str) -> int:
        """Bump the version: every watching replica reloads (see the module docstring). Returns the new version."""
        at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return int(self._announce(keys=[self.key], args=[digest, "1" if force else "0", by, at]))


class VersionWatcher:
    """Follows a :class:`VersionKey` for one replica: ``reload()`` when another replica announces one.

    ``digest()`` is the digest of the config this replica runs. Redis errors are logged (once per
    outage) and the watcher keeps polling.
    """

    def __init__(self, versions: VersionKey, reload: Callable[[], object], digest: Callable[[], str | None], *,
                 replica: str, interval_s: float = 1.0) -> None:
        self.versions, self.reload, self.digest, self.replica, self.interval_s = versions, reload, digest, replica, interval_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False
        self.seen = 0
        self.followed = 0
        """Reloads this replica made because another one announced them."""
        try:
            current = versions.current()
            self.seen = current.version if current else 0
        except RedisError as exc:
            log.warning("shared state: cannot read the config version (%s); will keep trying", exc)

    def announce(self, digest: str, *, force: bool) -> int | None:
        """Tell the other replicas that this one reloaded ``digest`` (None when Redis is unreachable)."""
        with self._lock:
            try:
                self.seen = self.versions.announce(digest, force=force, by=self.replica)
            except RedisError as exc:
                log.error("shared state: the reload was not announced to the other replicas (%s): reload them "
                          "one by one or retry", exc)
                return None
            return self.seen

    def poll(self) -> bool:
        """Look once; reload when a newer announcement asks for it. True when this replica reloaded."""
        current = self.versions.current()
        with self._lock:
            if current is None or current.version == self.seen:
                return False
            self.seen = current.version
        if not current.force and current.digest == self.digest():
            return False  # this replica already runs that config (it saw the same file change)
        log.info("replica %s reloaded (version %d): reloading here too", current.by, current.version)
        try:
            self.reload()
        except Exception as exc:  # noqa: BLE001 - the running config stays; the error is the reload's to report
            log.error("reload announced by %s not applied here, keeping the running config: %s", current.by, exc)
            return False
        self.followed += 1
        if self.digest() != current.digest:
            log.warning("this replica's config file differs from the one replica %s reloaded: deploy the same "
                        "frontdesk.yaml to every replica", current.by)
        return True

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="frontdesk-version-watch", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
                if self._failing:
                    log.info("shared state: the config version is readable again")
                self._failing = False
            except RedisError as exc:
                if not self._failing:
                    log.warning("shared state: cannot read the config version (%s); replicas may miss reloads "
                                "until Redis is back", exc)
                self._failing = True
            except Exception:  # noqa: BLE001 - never let the watcher die
                log.exception("version watcher error (still watching)")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
