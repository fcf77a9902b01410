"""Commands for a deployment of several processes: ``consume`` (a Redis Streams consumer-group worker),
``dead-letters`` (read its dead-letter stream) and ``reload`` (make every replica re-read its config)."""

from __future__ import annotations

import json
import logging
import signal
from pathlib import Path
from typing import Annotated, Optional

import typer

from frontdesk.cli.common import console, out


def register(app: typer.Typer) -> None:
    """Add ``consume``, ``dead-letters`` and ``reload`` to ``app``."""

    @app.command()
    def consume(
        config: Annotated[Path, typer.Option("--config", help="frontdesk.yaml (model, store, sinks, shared)")],
        source: Annotated[str, typer.Option("--from", help="redis://HOST[:PORT][/DB]/STREAM (or unix:///sock?stream=S)")],
        group: Annotated[str, typer.Option("--group", help="consumer group (created at --start if missing)")],
        consumer: Annotated[Optional[str], typer.Option("--consumer", help="this worker's name, unique per process "
                                                         "(default HOSTNAME-PID)")] = None,
        batch: Annotated[int, typer.Option(help="entries decided and committed together")] = 100,
        block_ms: Annotated[int, typer.Option(help="how long one read waits for new entries")] = 1000,
        claim_idle_s: Annotated[float, typer.Option(help="take over entries another consumer has held this long")] = 30.0,
        claim_every_s: Annotated[float, typer.Option(help="how often to look for such entries")] = 5.0,
        max_attempts: Annotated[int, typer.Option(help="deliveries before an entry is dead-lettered")] = 5,
        dead_letter: Annotated[Optional[str], typer.Option(help="dead-letter stream (default STREAM:dead)")] = None,
        start: Annotated[str, typer.Option(help="where a new group starts: 0 (whole stream) or $ (new entries only)")] = "0",
        namespace: Annotated[Optional[str], typer.Option(help="decision-id namespace (default: the stream name)")] = None,
        until_empty: Annotated[bool, typer.Option("--until-empty", help="exit once no entry is unread or pending")] = False,
        log_level: Annotated[str, typer.Option(help="debug | info | warning | error")] = "info",
    ) -> None:
        """Consume a Redis Stream: route each entry, store its decision, deliver its targets, then XACK.

        Entries: XADD STREAM * text '…' [sender ID] [channel NAME] [metadata '{json}']. Each entry gets
        exactly one decision (its id derives from the entry id), even across crashes and redeliveries.
        SIGTERM / Ctrl-C finish the current batch and exit. Prints the counters as JSON at exit.
        """
        from frontdesk.config import load_config
        from frontdesk.pipeline import Pipeline
        from frontdesk.store.store import Store
        from frontdesk.streams import ConsumerSettings, StreamConsumer, StreamSource

        logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        cfg = load_config(config)
        src = StreamSource.parse(source)
        settings = ConsumerSettings(batch=batch, block_ms=block_ms, claim_idle_s=claim_idle_s, claim_every_s=claim_every_s,
                                    max_attempts=max_attempts, dead_letter=dead_letter, start_id=start, namespace=namespace)
        pipeline = Pipeline.from_config(cfg)
        store = Store(cfg.store, synchronous=cfg.store_sync.upper())  # type: ignore[arg-type]
        client = src.client()
        shared = pipeline.shared  # with a shared: section: dedup across replicas, and the shared drift window
        feed = shared.drift_feed(pipeline.router) if shared is not None and shared.config.drift else None
        worker = StreamConsumer(pipeline, store, client, src.stream, group, consumer, settings,
                                on_decision=feed.publish if feed is not None else None)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: worker.stop())
        console.print(f"consuming {src} as {worker.consumer} in group {group!r} (dead letters → {worker.dead_letter!r})",
                      markup=False)
        try:
            stats = worker.run(until_empty=until_empty)
        finally:
            pipeline.close()
            store.close()
            client.close()
        out.print(json.dumps({"consumer": worker.consumer, **stats.as_dict()}), markup=False)

    @app.command("dead-letters")
    def dead_letters(
        source: Annotated[str, typer.Option("--from", help="the dead-letter stream: redis://HOST[:PORT][/DB]/STREAM:dead")],
        count: Annotated[int, typer.Option(help="newest entries to show")] = 20,
    ) -> None:
        """Print the newest dead-lettered entries (one JSON object per line: fields, _reason, _source_id, …)."""
        from frontdesk.streams import StreamSource, read_dead_letters

        src = StreamSource.parse(source)
        client = src.client()
        try:
            for row in read_dead_letters(client, src.stream, count):
                out.print(json.dumps(row, ensure_ascii=False), markup=False)
        finally:
            client.close()

    @app.command("reload")
    def reload_replicas(
        config: Annotated[Path, typer.Option("--config", help="frontdesk.yaml with a shared: section")],
    ) -> None:
        """Make every replica re-read its config and model (e.g. after `frontdesk promote`): the config and
        model are loaded here first, then the shared version key is bumped; each replica follows within
        shared.watch_interval_s."""
        import hashlib

        from frontdesk.config import load_config
        from frontdesk.errors import ConfigError
        from frontdesk.pipeline import Pipeline
        from frontdesk.shared import SharedState, VersionKey

        cfg = load_config(config)
        if cfg.shared is None:
            raise ConfigError(f"{config} has no shared: section: without one, reload each replica with "
                              "POST /v1/admin/reload", field="shared")
        Pipeline.from_config(cfg, shared=None).close()  # refuse to announce a config or model that does not load
        state = SharedState(cfg.shared)
        try:
            version = VersionKey(state.client, cfg.shared.prefix).announce(
                hashlib.sha256(config.read_bytes()).hexdigest(), force=True, by=f"cli:{state.replica}")
        finally:
            state.close()
        out.print(json.dumps({"status": "announced", "version": version}), markup=False)
