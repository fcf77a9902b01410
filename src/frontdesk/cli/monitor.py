"""``frontdesk drift`` and ``frontdesk discover``: drift monitoring and new-intent discovery over a store.

Wired into the main CLI with :func:`register` (``register(app)`` in ``frontdesk.cli.main``). Both commands
only read the store; errors are :class:`~frontdesk.errors.FrontdeskError` subclasses that say what
to do next (the CLI's ``main`` turns them into one red line and exit code 2).
"""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from frontdesk.cli.common import open_store, out, parse_since
from frontdesk.errors import ConfigError



def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def register(app: typer.Typer) -> None:
    """Add the ``drift`` and ``discover`` commands to ``app``."""

    @app.command()
    def drift(
        store: Annotated[str, typer.Option("--store", help="store URL (sqlite:///frontdesk.db, postgresql+psycopg://…)")],
        since: Annotated[Optional[str], typer.Option(help="only decisions at or after this ISO 8601 time (UTC if no zone)")] = None,
        window: Annotated[int, typer.Option(help="rolling window, in decisions (alerts need min(100, N) of them)")] = 500,
        as_json: Annotated[bool, typer.Option("--json", help="print the report as one JSON object")] = False,
        target_accuracy: Annotated[Optional[float], typer.Option(
            help="alert when the upper bound of the accepted accuracy measured from feedback is below this")] = None,
    ) -> None:
        """Replay stored decisions through the drift monitor: confidence, unknown and escalation rates,
        label-distribution PSI vs the first window, per-label recall and accepted accuracy from feedback,
        and the alerts."""
        from frontdesk.loop.drift import DriftConfig, drift_report

        if window < 2:
            raise ConfigError(f"--window must be at least 2 decisions, got {window}", field="--window")
        config = DriftConfig.make(window=window, min_window=min(100, window), accepted_accuracy_target=target_accuracy)
        with open_store(store) as st:
            report = drift_report(st, since=parse_since(since), config=config)
        if as_json:
            out.print_json(report.model_dump_json())
            return
        if report.decisions == 0:
            out.print(f"no decisions in {store}" + (f" since {since}" if since else "") + ": nothing to report")
            return
        s = report.snapshot
        base = s.baseline
        table = Table(title=f"drift over the last {s.n} of {report.decisions} decisions"
                            + (f" since {since}" if since else ""))
        table.add_column("metric"), table.add_column("window", justify="right"), table.add_column("baseline", justify="right")
        table.add_row("mean primary-tier confidence", _num(s.confidence_mean), _num(base.confidence_mean if base else None))
        table.add_row("confidence trend (per window)",
                      "—" if s.confidence_trend is None else f"{s.confidence_trend:+.4f}", "")
        table.add_row("unknown rate", _pct(s.unknown_rate), _pct(base.unknown_rate if base else None))
        table.add_row("escalation rate", _pct(s.escalation_rate), _pct(base.escalation_rate if base else None))
        table.add_row("label PSI (sampling noise)", f"{_num(s.psi)} ({_num(s.psi_noise)})" if s.psi is not None else "—", "")
        table.add_row("feedback items", str(s.feedback_n), "")
        for tier, a in s.accepted_accuracy.items():
            if a.labelled:
                table.add_row(f"accepted accuracy, {tier} (from feedback)",
                              f"{a.estimate:.3f} [{a.low:.3f}, {a.high:.3f}] of {a.labelled}",
                              "" if a.target is None else f"target {a.target:.3f}")
        out.print(table)
        if base is not None:
            out.print(f"baseline: {base.source}", markup=False)
        if s.top_shifts:
            out.print("largest label shifts: " + ", ".join(f"{x.label} {x.baseline:.1%} → {x.window:.1%}" for x in s.top_shifts),
                       markup=False)
        if s.recall:
            worst = sorted(s.recall.items(), key=lambda kv: (kv[1].recall, -kv[1].support))[:10]
            out.print("lowest recall from feedback: " + ", ".join(f"{k} {v.recall:.0%} (n={v.support})" for k, v in worst),
                       markup=False)
        if report.alerts:
            alerts = Table(title="alert transitions")
            for col in ("decision #", "time (UTC)", "alert", "state", "message"):
                alerts.add_column(col)
            for a in report.alerts:
                colour = "red" if a.state == "firing" else "green"
                alerts.add_row(str(a.observed), f"{a.at:%Y-%m-%d %H:%M:%S}", a.kind, f"[{colour}]{a.state}[/]", escape(a.message))
            out.print(alerts)
        else:
            out.print("[green]no alerts[/]")
        if report.active:
            out.print("[red]firing now:[/] " + ", ".join(a.kind for a in report.active))

    @app.command()
    def discover(
        store: Annotated[str, typer.Option("--store", help="store URL (sqlite:///frontdesk.db, postgresql+psycopg://…)")],
        since: Annotated[Optional[str], typer.Option(help="only decisions at or after this ISO 8601 time (UTC if no zone)")] = None,
        top: Annotated[int, typer.Option(help="clusters to show")] = 10,
        limit: Annotated[int, typer.Option(help="most recent candidate decisions to cluster")] = 2000,
        min_size: Annotated[int, typer.Option("--min-size", help="smallest cluster to report")] = 5,
        as_json: Annotated[bool, typer.Option("--json", help="print the clusters as a JSON list")] = False,
    ) -> None:
        """Cluster the unknown, escalated and human-review decisions to surface new intents."""
        from frontdesk.loop.discovery import candidates_from_store
        from frontdesk.loop.discovery import discover as run_discovery

        with open_store(store) as st:
            candidates = candidates_from_store(st, since=parse_since(since), limit=limit)
        clusters = run_discovery(candidates, top=top, min_cluster_size=min_size)
        if as_json:
            out.print_json(json.dumps([c.model_dump() for c in clusters]))
            return
        if not clusters:
            out.print(f"{len(candidates)} unknown/escalated decisions, no cluster of {min_size} or more similar messages"
                       + (": nothing new stands out" if candidates else ""))
            return
        out.print(f"[bold]{len(clusters)} clusters[/] among {len(candidates)} unknown/escalated/review decisions "
                   f"(biggest first):")
        for c in clusters:
            guess = f"; model's guess {c.guess} ({c.guess_share:.0%})" if c.guess and c.guess_share is not None else ""
            conf = f", mean confidence {c.mean_confidence:.2f}" if c.mean_confidence is not None else ""
            out.print(f"\n[bold]#{c.rank}[/] {c.size} messages, coherence {c.coherence:.2f}{conf}{guess}")
            out.print("   terms: " + ", ".join(c.terms), markup=False)
            for ex in c.examples:
                out.print(f"   • {ex}", markup=False)
