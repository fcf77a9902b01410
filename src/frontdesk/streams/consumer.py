"""A Redis Streams consumer-group worker: read → decide → commit → deliver → XACK.

Each entry of the stream becomes exactly one stored decision, whatever crashes: the decision id is
derived from the entry id (:func:`~frontdesk.streams.entries.entry_decision_id`), so a redelivered
entry finds the decision a dead consumer already committed and only its targets are delivered again
(same target ids, which sinks send as the idempotency key). An entry is acknowledged only after its
decision is committed, its actions have run (at most once each: the store is their ledger) *and* its
targets are delivered. Entries a dead or stuck consumer holds are
taken over with XAUTOCLAIM once idle for ``claim_idle_s``. An entry that cannot be processed goes to
a dead-letter stream with the reason: at once when it can never become a message (no text, bad
JSON), else after ``max_attempts`` deliveries (failed decisions, failed deliveries, or consumers that
died on it). A store outage is waited out (the batch is retried with backoff, nothing acknowledged).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import redis
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import InterfaceError, OperationalError

from frontdesk.errors import ConfigError, InputError
from frontdesk.pipeline import Pipeline, Routed, Uncommitted
from frontdesk.store.store import Store, StoreError
from frontdesk.streams.entries import MalformedEntry, entry_decision_id, entry_message
from frontdesk.types import Decision

log = logging.getLogger("frontdesk.streams")

Fields = dict[bytes, bytes]
Entry = tuple[str, "Fields | None"]


class ConsumerSettings(BaseModel):
    """How a consumer reads, retries and gives up (``frontdesk consume`` options)."""

    model_config = ConfigDict(extra="forbid")

    batch: int = Field(100, ge=1, le=10_000, description="entries read, decided and committed together")
    block_ms: int = Field(1000, ge=1, description="how long one read waits for new entries")
    claim_idle_s: float = Field(30.0, gt=0, description="take over another consumer's entry once it has been "
                                "pending this long (the consumer died or hangs)")
    claim_every_s: float = Field(5.0, gt=0, description="how often to look for such entries")
    max_attempts: int = Field(5, ge=1, description="deliveries of an entry before it goes to the dead-letter stream")
    dead_letter: str | None = Field(None, description="dead-letter stream (default: '<stream>:dead')")
    start_id: str = Field("0", description="where a new group starts: 0 = the whole stream, $ = only new entries")
    namespace: str | None = Field(None, description="decision ids derive from namespace + entry id (default: the "
                                  "stream name); set it when several Redis servers feed one store")
    retry_backoff_s: float = Field(0.5, gt=0, description="first wait when the store is unreachable (doubles, ≤ 10 s)")


@dataclass
class ConsumerStats:
    """What a consumer did: entries read, decided, found decided already, dead-lettered, acknowledged."""

    read: int = 0
    claimed: int = 0
    decided: int = 0
    duplicates: int = 0
    redelivered: int = 0
    conflicts: int = 0
    failed: int = 0
    dead_lettered: int = 0
    acked: int = 0
    batches: int = 0
    store_retries: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def default_consumer_name() -> str:
    """``<hostname>-<pid>``: unique per running process (a restarted process is a new consumer)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _outage(exc: BaseException) -> bool:
    """A store error that retrying can cure (the database is unreachable or locked), not a bad decision."""
    return isinstance(exc, StoreError) and isinstance(exc.__cause__, (OperationalError, InterfaceError))


class StreamConsumer:
    """One consumer of a group on one stream; see the module docstring. Use :meth:`run` (or :meth:`step`).

    ``on_decision`` is called with each decision this consumer committed (e.g. the drift feed).
    """

    def __init__(self, pipeline: Pipeline, store: Store, client: Any, stream: str, group: str, consumer: str | None = None,
                 settings: ConsumerSettings | None = None, *, on_decision: Callable[[Decision], None] | None = None) -> None:
        if not stream or not group:
            raise ConfigError("give a stream name and a consumer-group name", field="--group")
        self.pipeline, self.store, self.client = pipeline, store, client
        self.stream, self.group = stream, group
        self.consumer = consumer or default_consumer_name()
        self.settings = settings or ConsumerSettings()
        self.dead_letter = self.settings.dead_letter or f"{stream}:dead"
        if self.dead_letter == stream:
            raise ConfigError("the dead-letter stream must differ from the stream read", field="--dead-letter")
        self.namespace = self.settings.namespace or stream
        self.failures_key = f"{stream}:{group}:failures"
        """Redis hash: entry id → the last reason it failed (read when it is dead-lettered)."""
        self.on_decision = on_decision
        self.stats = ConsumerStats()
        self.stop_event = threading.Event()
        self._cursor = "0-0"
        self._next_claim = 0.0
        self._attempts: dict[str, int] = {}

    # -- reading ----------------------------------------------------------------------------------
    def ensure_group(self) -> None:
        """Create the consumer group (and the stream) unless it exists."""
        try:
            self.client.xgroup_create(self.stream, self.group, id=self.settings.start_id, mkstream=True)
            log.info("created consumer group %r on stream %r at %s", self.group, self.stream, self.settings.start_id)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def run(self, *, until_empty: bool = False, progress_s: float = 10.0) -> ConsumerStats:
        """Consume until :meth:`stop` (or, with ``until_empty``, until no entry of the group is pending or
        unread). Entries this consumer name already holds (a restart under the same name) come first."""
        self.ensure_group()
        self._handle(self._own_pending(), claimed=False)
        last_log = time.monotonic()
        while not self.stop_event.is_set():
            handled = self.step()
            if time.monotonic() - last_log >= progress_s:
                log.info("%s: %s", self.consumer, self.stats.as_dict())
                last_log = time.monotonic()
            if not handled and until_empty and self._group_drained():
                break
        return self.stats

    def stop(self) -> None:
        """Finish the current batch, then return from :meth:`run` (signal-handler safe)."""
        self.stop_event.set()

    def step(self) -> int:
        """One round: take over idle entries when it is time, else read new ones (blocking up to block_ms)."""
        now = time.monotonic()
        if now >= self._next_claim:
            entries = self._claim()
            if entries:
                self._handle(entries, claimed=True)
                return len(entries)
            self._next_claim = now + self.settings.claim_every_s
        reply = self.client.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=self.settings.batch,
                                       block=self.settings.block_ms)
        entries = [(_s(eid), fields) for _, items in (reply or []) for eid, fields in items]
        if entries:
            self._handle(entries, claimed=False, fresh=True)
        return len(entries)

    def _claim(self) -> list[Entry]:
        idle_ms = int(self.settings.claim_idle_s * 1000)
        reply = self.client.xautoclaim(self.stream, self.group, self.consumer, min_idle_time=idle_ms,
                                       start_id=self._cursor, count=self.settings.batch)
        cursor, items = reply[0], reply[1]
        self._cursor = _s(cursor)
        if self._cursor == "0-0":
            self._next_claim = time.monotonic()  # a full pass: look again after claim_every_s (set by step)
        entries = [(_s(eid), fields) for eid, fields in items if eid is not None]
        if len(entries) < len(items):
            # Redis 6.2 answers nil for claimed entries deleted from the stream: they are now ours; find their ids
            entries += [(eid, None) for eid, fields in self._own_pending() if not fields]
        if entries:
            self.stats.claimed += len(entries)
            log.info("%s took over %d idle entr%s", self.consumer, len(entries), "y" if len(entries) == 1 else "ies")
        return entries

    def _own_pending(self) -> list[Entry]:
        """The entries delivered to this consumer name and not acknowledged (deleted ones with no fields)."""
        out: list[Entry] = []
        last = "0"
        while True:
            reply = self.client.xreadgroup(self.group, self.consumer, {self.stream: last}, count=self.settings.batch)
            items = [(_s(eid), fields) for _, its in (reply or []) for eid, fields in its]
            if not items:
                return out
            out += [(eid, fields or None) for eid, fields in items]
            last = items[-1][0]

    def _deliveries(self, ids: Sequence[str]) -> dict[str, int]:
        """How many times each entry has been delivered (this delivery included)."""
        pipe = self.client.pipeline(transaction=False)
        for eid in ids:
            pipe.xpending_range(self.stream, self.group, min=eid, max=eid, count=1)
        out = {}
        for eid, rows in zip(ids, pipe.execute()):
            out[eid] = int(rows[0]["times_delivered"]) if rows else 1
        return out

    def _group_drained(self) -> bool:
        """Nothing pending in the group and nothing unread (lag 0)."""
        if int(self.client.xpending(self.stream, self.group)["pending"]) > 0:
            return False
        reply = self.client.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=self.settings.batch)
        entries = [(_s(eid), fields) for _, items in (reply or []) for eid, fields in items]
        if entries:
            self._handle(entries, claimed=False, fresh=True)
            return False
        return True

    # -- processing --------------------------------------------------------------------------------
    def _handle(self, entries: list[Entry], *, claimed: bool, fresh: bool = False) -> None:
        if not entries:
            return
        self.stats.read += len(entries)
        self.stats.batches += 1
        deliveries = {eid: 1 for eid, _ in entries} if fresh else self._deliveries([eid for eid, _ in entries])
        self.process(entries, deliveries)

    def process(self, entries: list[Entry], deliveries: dict[str, int]) -> None:
        """Decide, commit, deliver and acknowledge one batch of entries (see the module docstring)."""
        ack: list[str] = []
        dead: list[tuple[str, Fields, str, int]] = []
        todo: list[tuple[str, str, Any]] = []  # (entry id, decision id, message)
        self._attempts = deliveries
        for eid, fields in entries:
            attempts = deliveries.get(eid, 1)
            if not fields:
                dead.append((eid, {}, "the entry was deleted from the stream (trimmed?) before it was decided", attempts))
            elif attempts > self.settings.max_attempts:
                last = self.client.hget(self.failures_key, eid)
                why = _s(last) if last else "no failure was recorded: the consumers it was delivered to died or hung"
                dead.append((eid, fields, f"delivered {attempts} times without success (max_attempts "
                             f"{self.settings.max_attempts}); last failure: {why}", attempts))
            else:
                try:
                    msg = entry_message(fields, stream=self.stream, entry_id=eid)
                except MalformedEntry as exc:
                    dead.append((eid, fields, str(exc), attempts))
                    continue
                todo.append((eid, entry_decision_id(self.namespace, eid), msg))
        failures: dict[str, str] = {}
        if todo:
            done = self._decide_commit_deliver(todo, failures, dead, {eid: f for eid, f in entries if f})
            if done is None:
                return  # stopped during a store outage: nothing acknowledged, the entries stay pending
            ack += done
        self._finish(ack, dead, failures)

    def _decide_commit_deliver(self, todo: list[tuple[str, str, Any]], failures: dict[str, str],
                               dead: list[tuple[str, Fields, str, int]], fields: dict[str, Fields]) -> list[str] | None:
        stored = self._with_store(lambda: self.store.decisions_by_id([did for _, did, _ in todo]))
        if stored is None:
            return None
        routed: dict[str, Routed] = {}
        with self.pipeline.uncommitted() as batch:
            for eid, did, msg in todo:
                if did in stored:
                    continue
                try:
                    routed[eid] = batch.decide(msg, decision_id=did)
                except InputError as exc:  # the message can never be routed
                    dead.append((eid, fields[eid], f"{type(exc).__name__}: {exc}", self._attempts.get(eid, 1)))
                except Exception as exc:  # noqa: BLE001 - a bug or a failing tier: retried on redelivery
                    log.exception("deciding entry %s failed", eid)
                    failures[eid] = f"deciding failed: {type(exc).__name__}: {exc}"
            if not self._commit(batch, routed, stored, failures):
                return None
            batch.committed()
        for r in routed.values():
            if r.decision.id not in stored and self.on_decision is not None:
                try:
                    self.on_decision(r.decision)
                except Exception:  # noqa: BLE001 - observers never fail a commit
                    log.exception("decision observer failed")
        ack = []
        for eid, did, _ in todo:
            if eid in failures or eid not in routed and did not in stored:
                continue
            if did in stored:
                decision, targets = stored[did], self.pipeline.targets_of(stored[did])
                self.stats.redelivered += 1
            else:
                r = routed[eid]
                decision, targets = r.decision, r.targets
                self.stats.decided += 1
                self.stats.duplicates += r.decision.duplicate_of is not None
            if decision.actions:  # the store is the ledger: each action at most once, redeliveries included
                try:
                    self.pipeline.run_actions(Routed(decision), self.store)
                except Exception as exc:  # noqa: BLE001 - the ledger (store) failed: retried on redelivery
                    failures[eid] = f"decision stored, its actions could not run: {type(exc).__name__}: {exc}"
                    continue
            errors = self.pipeline.deliver(targets)
            if errors:
                failures[eid] = "decision stored, delivery failed: " + "; ".join(errors)
                continue
            ack.append(eid)
        return ack

    def _commit(self, batch: Uncommitted, routed: dict[str, Routed], stored: dict[str, Decision],
                failures: dict[str, str]) -> bool:
        """Store the batch's new decisions. A decision another consumer stored first (same entry) is
        replaced by the stored one; an outage is retried with backoff; a decision the store refuses fails
        alone. False when stopped while the store was unreachable."""
        delay = self.settings.retry_backoff_s
        saved: set[str] = set()
        while True:
            pending = [(eid, r) for eid, r in routed.items()
                       if r.decision.id not in stored and eid not in failures and eid not in saved]
            if not pending:
                return True
            try:
                self.store.save_decisions([r.decision for _, r in pending])
                return True
            except Exception as exc:  # noqa: BLE001 - classified below
                error = exc
            found = self._with_store(lambda: self.store.decisions_by_id([r.decision.id for _, r in pending]))
            if found is None:
                return False
            if found:  # another consumer (which held these entries before us) committed them: theirs stand
                for _, r in pending:
                    if r.decision.id in found:
                        batch.drop(r)
                        stored[r.decision.id] = found[r.decision.id]
                        self.stats.conflicts += 1
                continue
            if _outage(error):
                self.stats.store_retries += 1
                log.warning("store unreachable, retrying in %.1f s (nothing acknowledged): %s", delay, error)
                if self.stop_event.wait(delay):
                    return False
                delay = min(delay * 2, 10.0)
                continue
            for eid, r in pending:  # the store refuses something in the batch: isolate it
                try:
                    self.store.save_decisions([r.decision])
                except Exception as exc:  # noqa: BLE001
                    if _outage(exc):
                        break  # back to the outage path
                    batch.drop(r)
                    failures[eid] = f"the store refused the decision: {type(exc).__name__}: {exc}"
                else:
                    saved.add(eid)

    def _with_store(self, call: Callable[[], dict[str, Decision]]) -> dict[str, Decision] | None:
        """``call()``, waiting out store outages with backoff; None when stopped meanwhile."""
        delay = self.settings.retry_backoff_s
        while True:
            try:
                return call()
            except StoreError as exc:
                if not _outage(exc):
                    raise
                self.stats.store_retries += 1
                log.warning("store unreachable, retrying in %.1f s: %s", delay, exc)
                if self.stop_event.wait(delay):
                    return None
                delay = min(delay * 2, 10.0)

    def _finish(self, ack: list[str], dead: list[tuple[str, Fields, str, int]], failures: dict[str, str]) -> None:
        """Acknowledge, dead-letter and record failures in one MULTI/EXEC (a dead-lettered entry is
        acknowledged in the same transaction, so it is never dead-lettered twice)."""
        pipe = self.client.pipeline(transaction=True)
        now = datetime.now(timezone.utc).isoformat()
        for eid, fields, reason, attempts in dead:
            entry: dict[bytes | str, bytes | str] = dict(fields)
            entry.update({"_source_stream": self.stream, "_source_id": eid, "_group": self.group,
                          "_consumer": self.consumer, "_attempts": str(attempts), "_reason": reason, "_failed_at": now})
            pipe.xadd(self.dead_letter, entry)
            log.error("entry %s dead-lettered to %r: %s", eid, self.dead_letter, reason)
        done = ack + [eid for eid, *_ in dead]
        if done:
            pipe.xack(self.stream, self.group, *done)
            pipe.hdel(self.failures_key, *done)
        for eid, reason in failures.items():
            pipe.hset(self.failures_key, eid, reason)
            log.warning("entry %s not acknowledged (retried after %.0f s idle): %s", eid, self.settings.claim_idle_s, reason)
        if done or failures:
            pipe.execute()
        self.stats.acked += len(ack)
        self.stats.dead_lettered += len(dead)
        self.stats.failed += len(failures)


def read_dead_letters(client: Any, stream: str, count: int = 100) -> list[dict[str, str]]:
    """The newest ``count`` dead-lettered entries of ``stream`` as text dicts (``_reason``, ``_source_id``, …);
    bytes that are not UTF-8 (often why the entry was dead-lettered) are shown as ``\\xNN`` escapes."""
    def text(v: bytes | str) -> str:
        return v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else v

    rows = client.xrevrange(stream, count=count)
    return [{"_id": text(eid), **{text(k): text(v) for k, v in fields.items()}} for eid, fields in rows]


__all__ = ["ConsumerSettings", "ConsumerStats", "StreamConsumer", "default_consumer_name", "read_dead_letters"]
