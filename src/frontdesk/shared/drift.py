"""One drift window over every replica's decisions: a Redis stream of compact observations.

Each replica (and each ``frontdesk consume`` worker) publishes one small entry per committed,
non-duplicate decision — time, labels, answering tier, escalated, primary-tier confidence — to
``{prefix}drift`` (trimmed to about ``maxlen``). Each service replica's :class:`DriftFeed` follows
the stream and feeds *every* entry to its own :class:`~frontdesk.loop.drift.DriftMonitor`, so all
replicas see the same union window; a new replica starts from the newest ``backfill`` entries. Only
one replica delivers alerts (log, webhook): the holder of a short lease key, renewed while it lives.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any

from redis import RedisError

from frontdesk.loop.drift import DriftMonitor, primary_confidence
from frontdesk.types import Decision, TierTrace

log = logging.getLogger("frontdesk.shared")


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


class DriftFeed:
    """Publish observations (:meth:`publish`); follow the stream into a monitor (:meth:`follow`)."""

    def __init__(self, client: Any, prefix: str = "frontdesk:", *, maxlen: int = 100_000, primary_tier: str | None = None,
                 replica: str = "", lease_s: float = 15.0) -> None:
        self.client, self.maxlen, self.primary_tier, self.replica, self.lease_s = client, maxlen, primary_tier, replica, lease_s
        self.stream = f"{prefix}drift"
        self.leader_key = f"{prefix}drift:alerts-leader"
        self._token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last = "0-0"
        self.published = self.observed = self.errors = 0
        self.leading = False

    # -- publishing ----------------------------------------------------------------------------------
    def publish(self, decision: Decision) -> None:
        """Add one committed decision to the shared window (duplicates are skipped, like the monitor does)."""
        if decision.duplicate_of:
            return
        conf = primary_confidence(decision, self.primary_tier)
        fields = {"t": f"{time.time():.3f}", "l": json.dumps(decision.labels, ensure_ascii=False), "k": decision.tier,
                  "e": "1" if decision.escalated else "0", "c": "" if conf is None else repr(conf)}
        try:
            self.client.xadd(self.stream, fields, maxlen=self.maxlen, approximate=True)
            self.published += 1
        except RedisError as exc:
            self.errors += 1
            if self.errors == 1 or self.errors % 1000 == 0:
                log.warning("shared drift: observation not published (%d so far): %s", self.errors, exc)

    @staticmethod
    def decision(fields: dict[Any, Any], primary_tier: str | None) -> tuple[Decision, float]:
        """The minimal Decision a monitor needs from one observation, and its time."""
        f = {_s(k): _s(v) for k, v in fields.items()}
        conf = float(f["c"]) if f.get("c") else None
        trace = [TierTrace(tier=primary_tier or "primary", kind="model", verdict="accept", confidence=conf)] if conf is not None else []
        d = Decision(text="", labels=json.loads(f.get("l") or "[]"), confidence=conf or 0.0, tier=f.get("k", "?"),
                     escalated=f.get("e") == "1", flagged=False, trace=trace)
        return d, float(f["t"])

    # -- following -----------------------------------------------------------------------------------
    def follow(self, monitor: DriftMonitor, *, backfill: int = 0, check_interval_s: float = 15.0) -> None:
        """Feed every observation of the stream (the newest ``backfill`` first) to ``monitor`` in a daemon
        thread; alerts are delivered only while this replica holds the alerts lease."""
        monitor.notify = False
        if backfill:
            try:
                rows = self.client.xrevrange(self.stream, count=backfill)
                for eid, fields in reversed(rows):
                    self._observe(monitor, fields)
                if rows:
                    self._last = _s(rows[0][0])
            except RedisError as exc:
                log.warning("shared drift: backfill failed (%s)", exc)
        else:
            try:
                info = self.client.xinfo_stream(self.stream)
                self._last = _s(info["last-generated-id"])
            except RedisError:
                self._last = "0-0"
        self._thread = threading.Thread(target=self._run, args=(monitor, check_interval_s), name="frontdesk-drift-feed",
                                        daemon=True)
        self._thread.start()

    def _observe(self, monitor: DriftMonitor, fields: dict[Any, Any]) -> None:
        try:
            d, t = self.decision(fields, monitor.primary_tier)
        except (KeyError, ValueError, TypeError) as exc:
            log.warning("shared drift: skipped a malformed observation (%s)", exc)
            return
        monitor.observe(d, at=t)
        self.observed += 1

    def _run(self, monitor: DriftMonitor, check_interval_s: float) -> None:
        next_lead = 0.0
        failing = False
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_lead:
                    self.leading = monitor.notify = self._lead()
                    next_lead = time.monotonic() + min(self.lease_s / 3, check_interval_s)
                reply = self.client.xread({self.stream: self._last}, count=1000, block=500)
                for _, items in reply or []:
                    for eid, fields in items:
                        self._observe(monitor, fields)
                        self._last = _s(eid)
                failing = False
            except RedisError as exc:
                if not failing:
                    log.warning("shared drift: cannot read the shared window (%s); retrying", exc)
                failing = True
                self.leading = monitor.notify = False
                self._stop.wait(1.0)
            except Exception:  # noqa: BLE001 - never let the feed die
                log.exception("shared drift feed error (still following)")
                self._stop.wait(1.0)

    def _lead(self) -> bool:
        """Take or renew the alerts lease; True while this replica holds it."""
        ms = int(self.lease_s * 1000)
        if self.client.set(self.leader_key, self._token, nx=True, px=ms):
            return True
        if _s(self.client.get(self.leader_key) or b"") == self._token:
            self.client.pexpire(self.leader_key, ms)
            return True
        return False

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.leading:
            try:
                if _s(self.client.get(self.leader_key) or b"") == self._token:
                    self.client.delete(self.leader_key)
            except RedisError:
                pass
