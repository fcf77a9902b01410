"""The service's state and lifecycle: the swappable pipeline, the config watcher, start and close.

A reload builds a whole new :class:`~frontdesk.pipeline.Pipeline` and swaps it in at once: a
request holds the pipeline it started with until it ends (:meth:`PipelineSlot.use`), and the
replaced pipeline is closed (its sinks flushed and released) when its last request finishes.
Any failure while reloading — a missing file, a directory in its place, bad YAML, an invalid
field, a model that does not load — keeps the running config and says why; the watcher thread
logs it and keeps watching. The watcher compares the file's *content hash*, not its mtime, so
edits within one mtime tick are seen and a touch without a change reloads nothing.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from frontdesk.config import FrontdeskConfig, config_from_bytes, read_config_bytes
from frontdesk.errors import ConfigError, FrontdeskError, ModelError, validation_message
from frontdesk.loop.drift import DriftMonitor
from frontdesk.pipeline import Pipeline
from frontdesk.server.auth import KeyRing
from frontdesk.server.commit import GroupCommitter
from frontdesk.server.metrics import Metrics
from frontdesk.store.store import Store
from frontdesk.types import Decision

log = logging.getLogger("frontdesk.server")


class PipelineSlot:
    """The current pipeline, and how many requests use each one; replaced ones close when idle."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._lock = threading.Lock()
        self._current = pipeline
        self._users: dict[Pipeline, int] = {}
        self.closed_replaced = 0
        """How many replaced pipelines have been closed (for tests and metrics)."""

    @property
    def current(self) -> Pipeline:
        return self._current

    @contextmanager
    def use(self) -> Iterator[Pipeline]:
        """The current pipeline, held for the duration of the block (a reload cannot close it meanwhile)."""
        with self._lock:
            pipeline = self._current
            self._users[pipeline] = self._users.get(pipeline, 0) + 1
        try:
            yield pipeline
        finally:
            with self._lock:
                left = self._users[pipeline] - 1
                if left:
                    self._users[pipeline] = left
                else:
                    del self._users[pipeline]
                retire = left == 0 and pipeline is not self._current
            if retire:
                self._close(pipeline)

    def swap(self, pipeline: Pipeline) -> None:
        """Make ``pipeline`` current; close the old one now if no request holds it, else when the last one ends."""
        with self._lock:
            old, self._current = self._current, pipeline
            idle = old not in self._users
        if idle and old is not pipeline:
            self._close(old)

    def _close(self, pipeline: Pipeline) -> None:
        try:
            pipeline.close()
        except Exception:
            log.exception("closing a replaced pipeline failed")
        self.closed_replaced += 1

    def close(self) -> None:
        """Close the current pipeline (at shutdown, after the last request)."""
        self._close(self._current)


class ServiceState:
    """Everything one app holds: config, pipeline slot, keys, store, group committer, metrics, monitor, watcher.

    Construction loads the model and opens the store (errors surface before the server binds);
    :meth:`start` starts the threads and :meth:`close` stops them — the app's lifespan calls both.
    """

    def __init__(self, config: FrontdeskConfig, *, config_path: Path | None, store: Store | None = None,
                 watch: bool | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.shared = _shared_state(config)
        """The replicas' shared state (Redis) when the config has a ``shared:`` section, else None."""
        pipeline = Pipeline.from_config(config, shared=self.shared)
        pipeline.warm_up()
        self.slot = PipelineSlot(pipeline)
        self.keys = KeyRing(config.auth)
        self.store = store or Store(config.store, synchronous=config.store_sync.upper(),  # type: ignore[arg-type]
                                    busy_timeout_s=config.store_busy_timeout_s)
        self.committer = GroupCommitter(self.store, start=False)
        self.metrics = Metrics(self.store.review_depth)
        self.monitor = DriftMonitor.from_router(self.pipeline.router, config.drift)
        self.monitor.register(self.metrics.registry)
        self.watching = (config.server.watch_config if watch is None else watch) and config_path is not None
        self._reload_lock = threading.Lock()
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._seen: str | None = None
        self.reloads = 0
        """Reload attempts that finished (applied or refused): tests and tools wait on this counter."""
        self.last_reload_error: str | None = None
        if config_path is not None:
            try:
                self._seen = _digest(read_config_bytes(config_path))
            except ConfigError:
                self._seen = None
        self.digest = self._seen
        """SHA-256 of the config file this replica runs (announced to the other replicas on a reload)."""
        self.feed, self.follower = _shared_parts(self)
        self._started = self._closed = False

    @property
    def pipeline(self) -> Pipeline:
        """The current pipeline (a request should hold one with ``slot.use()`` instead)."""
        return self.slot.current

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the commit writer, the drift checker and (if enabled) the config watcher. Idempotent."""
        if self._started or self._closed:
            return
        self._started = True
        self.committer.start()
        self.monitor.start(15.0)
        if self.pipeline.actions:  # actions a crash left pending between commit and run
            threading.Thread(target=self.pipeline.actions.resume, args=(self.store,), name="frontdesk-actions-resume",
                             daemon=True).start()
        if self.watching:
            self._watcher = threading.Thread(target=self.watch, name="frontdesk-config-watch", daemon=True)
            self._watcher.start()
        if self.feed is not None:  # one drift window over every replica's decisions
            self.feed.follow(self.monitor, backfill=self.config.drift.window or 1000)
        if self.follower is not None:  # reloads announced by other replicas
            self.follower.start()

    def close(self) -> None:
        """Stop watching, commit what is queued, close the pipeline and the store. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=10)
        for part in (self.follower, self.feed):
            if part is not None:
                part.close()
        self.monitor.close()
        self.committer.close()
        self.slot.close()
        self.store.close()
        if self.shared is not None:
            self.shared.close()

    # -- reload --------------------------------------------------------------------------------
    def reload(self) -> FrontdeskConfig:
        """Re-read the config file and swap in a new pipeline; on any error the running one stays (ConfigError)."""
        if self.config_path is None:
            raise ConfigError("this service was started without a config file: nothing to reload", field="reload")
        with self._reload_lock:
            try:
                config, pipeline = self._build()
            except Exception as exc:
                self.metrics.reloads.labels("error").inc()
                self._finished(str(exc))
                raise
            if (config.store != self.config.store or config.store_busy_timeout_s != self.config.store_busy_timeout_s
                    or config.shared != self.config.shared):
                log.warning("store or shared settings changed in %s: restart the service to use them", self.config_path.name)
            old = self.pipeline
            model_changed = pipeline.router.labels != old.router.labels or config.model != self.config.model
            if model_changed:
                self.monitor.reset(labels=pipeline.router.labels, primary_tier=pipeline.router.primary.name)
            self.monitor.use_model_target(pipeline.router)  # a promoted model may carry another guarantee
            self.metrics.reloads.labels("ok").inc()
            # One step under the condition: the error clears, the reload counts and the new pipeline shows together,
            # so nobody sees the new pipeline with the old count (swap also closes the old one: slow, hence last).
            with self._changed:
                self.keys, self.config, self.digest = KeyRing(config.auth), config, self._seen
                self._finished(None)
                self.slot.swap(pipeline)
            log.info("reloaded %s", self.config_path.name)
            return config

    def _build(self) -> tuple[FrontdeskConfig, Pipeline]:
        """Read, validate and load: every failure becomes a ConfigError that says why."""
        assert self.config_path is not None
        data = read_config_bytes(self.config_path)
        self._seen = _digest(data)  # the watcher acts once per content, applied or refused
        try:
            config = config_from_bytes(data, self.config_path)
            try:
                pipeline = Pipeline.from_config(config, shared=self.shared)
            except ModelError:  # a `frontdesk promote` swapping the directory mid-read: read again
                time.sleep(0.2)
                pipeline = Pipeline.from_config(config, shared=self.shared)
            pipeline.warm_up()  # here, not on the first request after the swap
        except FrontdeskError:
            raise
        except ValidationError as exc:
            raise ConfigError(validation_message(exc)) from exc
        except Exception as exc:
            log.exception("unexpected error while reloading %s", self.config_path.name)
            raise ConfigError(f"the config could not be loaded ({type(exc).__name__}): see the service log") from exc
        return config, pipeline

    def _finished(self, error: str | None) -> None:
        with self._changed:  # re-entrant: reload() calls it while holding the condition
            self.reloads += 1
            self.last_reload_error = error
            self._changed.notify_all()

    def wait_for_reloads(self, count: int, timeout: float) -> bool:
        """Block until ``reloads >= count`` (applied or refused) or ``timeout`` seconds pass; True if reached."""
        with self._changed:
            return self._changed.wait_for(lambda: self.reloads >= count, timeout)

    def watch(self) -> None:
        """Poll the config file's content hash; reload when it changes (the watcher thread). Never dies."""
        assert self.config_path is not None
        while not self._stop.wait(self.config.server.watch_interval_s):
            try:
                digest = _current_digest(self.config_path)
                if digest == self._seen:
                    continue
                if self._stop.wait(_SETTLE_S) or digest != _current_digest(self.config_path):
                    continue  # still being written (an editor saving in place): act once it settles
                self._seen = digest  # once per content: an unreadable file is reported once, not every poll
                try:
                    self.reload()
                except FrontdeskError as exc:
                    log.error("config change not applied, keeping the running config: %s", exc)
                else:
                    self.announce(force=False)
            except Exception:
                log.exception("config watcher error (still watching)")

    # -- replicas (shared state) -------------------------------------------------------------------
    def announce(self, *, force: bool) -> int | None:
        """Tell the other replicas that this one reloaded (they reload too: an explicit reload always, a file
        change when their file differs); the new config version, or None without shared state."""
        if self.follower is None or self.digest is None:
            return None
        return self.follower.announce(self.digest, force=force)

    def observe(self, decision: Decision) -> None:
        """A committed decision for the drift window: the replicas' shared one when configured, else this process's."""
        if self.feed is not None:
            self.feed.publish(decision)
        else:
            self.monitor.observe(decision)

    def shared_status(self) -> dict[str, Any] | None:
        """Redis reachable, the config version this replica follows and its config digest (None without shared state)."""
        if self.shared is None:
            return None
        return {"redis": "ok" if self.shared.ping() else "unreachable",
                "config_version": self.follower.seen if self.follower is not None else None, "config_digest": self.digest}


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_SETTLE_S = 0.1
"""A changed config must read the same twice this far apart before the watcher applies it."""


def _current_digest(path: Path) -> str:
    try:
        return _digest(read_config_bytes(path))
    except ConfigError as exc:
        return f"unreadable: {exc}"


def _shared_state(config: FrontdeskConfig) -> Any:
    if config.shared is None:
        return None
    from frontdesk.shared import SharedState

    return SharedState(config.shared)


def _shared_parts(state: ServiceState) -> tuple[Any, Any]:
    """The shared drift feed and the config-version follower this replica needs (started by ``start``)."""
    shared, cfg = state.shared, state.config.shared
    if shared is None or cfg is None:
        return None, None
    from frontdesk.shared import VersionWatcher

    feed = shared.drift_feed(state.pipeline.router) if cfg.drift else None
    follower = None
    if cfg.reload and state.config_path is not None:
        follower = VersionWatcher(shared.versions(), state.reload, lambda: state.digest, replica=shared.replica,
                                  interval_s=cfg.watch_interval_s)
    return feed, follower
