"""CLI commands of the feedback loop: retrain, promote, sample, import-labels, trend.

``register(app)`` adds them to the ``frontdesk`` Typer app (cli.py wires it). Errors are
FrontdeskError subclasses: the console entry point prints them as one line and exits 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from frontdesk.cli.common import console, open_store, out, parse_since, progress_bar
from frontdesk.errors import ConfigError


FORMATS_OUT = ("label-studio", "argilla", "jsonl")
FORMATS_IN = ("label-studio", "argilla")


def _pct(x: float) -> str:
    return f"{x:.2%}"


def _delta(old: float, new: float) -> str:
    d = (new - old) * 100
    colour = "green" if d > 0 else "red" if d < 0 else "dim"
    return f"[{colour}]{d:+.2f}[/]"


def register(app: typer.Typer) -> None:
    """Add ``retrain``, ``promote``, ``sample``, ``import-labels`` and ``trend`` to ``app``."""

    @app.command("retrain")
    def retrain_cmd(
        model: Annotated[Path, typer.Option("--model", help="the serving model directory (M)")],
        store: Annotated[str, typer.Option("--store", help="store URL (sqlite:///frontdesk.db, postgresql+psycopg://…)")],
        data: Annotated[Path, typer.Option("--data", help="the original dataset M was trained on")],
        out_dir: Annotated[Path, typer.Option("--out", help="where to write the candidate (M2) and its report")],
        llm: Annotated[bool, typer.Option("--llm/--no-llm", help="train on accepted LLM answers too")] = True,
        max_accuracy_drop: Annotated[float, typer.Option(help="'better' tolerates this accuracy drop (share)")] = 0.005,
        max_escalation_increase: Annotated[float, typer.Option(help="'better' tolerates this escalation rise (share)")] = 0.02,
        holdout: Annotated[float, typer.Option(help="share of feedback held back for the comparison")] = 0.2,
        as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    ) -> None:
        """Retrain on the original data + feedback (+ LLM answers), compare with the serving model, write the candidate."""
        from frontdesk.loop.retrain import describe_sizes, retrain

        with progress_bar() as bar:
            task = bar.add_task("retraining", total=1.0)
            report = retrain(model, store, out_dir, data=data, include_llm=llm, holdout=holdout,
                             max_accuracy_drop=max_accuracy_drop, max_escalation_increase=max_escalation_increase,
                             progress=lambda msg, frac: bar.update(task, completed=frac, description=msg))
        if as_json:
            out.print_json(report.model_dump_json())
            return
        sizes = Table(title="training set")
        sizes.add_column("examples"), sizes.add_column("n", justify="right")
        core = {"original", "feedback", "llm", "total", "validation", "held_back"}
        for key, value in describe_sizes(report.sizes):
            if value or key in core:
                sizes.add_row(key.replace("_", " "), str(value))
        out.print(sizes)
        table = Table(title=f"old vs new on {report.evaluated_on}")
        for col in ("metric", "old", "new", "Δ points"):
            table.add_column(col, justify="left" if col == "metric" else "right")
        for name in ("accuracy", "macro_f1", "escalation_rate", "accepted_accuracy"):
            o, n = getattr(report.old, name), getattr(report.new, name)
            table.add_row(name, _pct(o), _pct(n), _delta(o, n))
        for part, v in report.by_part.items():
            table.add_row(f"accuracy: {part.replace('_', ' ')} ({int(v['n'])})", _pct(v["old_accuracy"]),
                          _pct(v["new_accuracy"]), _delta(v["old_accuracy"], v["new_accuracy"]))
        out.print(table)
        if report.recall_changes:
            changes = Table(title="recall per label (changed by ≥ 1 point)")
            for col in ("label", "old", "new", "Δ points", "support"):
                changes.add_column(col, justify="left" if col == "label" else "right")
            for c in report.recall_changes:
                changes.add_row(c.label, _pct(c.old_recall), _pct(c.new_recall), _delta(c.old_recall, c.new_recall),
                                str(c.support))
            out.print(changes)
        if report.new_labels:
            out.print(f"new labels: {', '.join(report.new_labels)}")
        if report.skipped and any(report.skipped.values()):
            out.print("skipped: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in report.skipped.items() if v))
        verdict = "[green]better[/]" if report.better else "[red]not better[/]"
        out.print(f"{verdict} ({'; '.join(report.reasons)}) — rule: {report.rule}")
        out.print(f"candidate written to {out_dir} (trained in {report.train_seconds:.1f} s)"
                  + (f"; promote with: frontdesk promote --candidate {out_dir} --to {model}" if report.better else ""))

    @app.command("promote")
    def promote_cmd(
        candidate: Annotated[Path, typer.Option("--candidate", help="the candidate model directory from `retrain`")],
        to: Annotated[Path, typer.Option("--to", help="the serving model directory to replace")],
        force: Annotated[bool, typer.Option(help="promote even when the report says it is not better (or is missing)")] = False,
    ) -> None:
        """Swap the candidate into the serving directory (atomically); the old model is kept as <to>.previous-<time>."""
        from frontdesk.loop.promote import previous_versions, promote

        target = promote(candidate, to, force=force)
        prev = previous_versions(target)
        out.print(f"promoted {candidate} → {target}" + (f"; previous model kept at {prev[0]}" if prev else "")
                  + (" (forced)" if force else ""))

    @app.command("sample")
    def sample_cmd(
        store: Annotated[str, typer.Option("--store", help="store URL")],
        out_file: Annotated[Path, typer.Option("--out", help="file to write (tasks / records / JSON lines)")],
        n: Annotated[int, typer.Option("--n", help="how many decisions")] = 300,
        since: Annotated[Optional[str], typer.Option(help="only decisions at or after this ISO date/time")] = None,
        fmt: Annotated[str, typer.Option("--format", help="label-studio | argilla | jsonl")] = "label-studio",
        model: Annotated[Optional[Path], typer.Option("--model", help="model directory: its labels are the choices")] = None,
        seed: Annotated[int, typer.Option(help="sampling seed")] = 13,
        multi: Annotated[bool, typer.Option(help="annotators may choose several labels")] = False,
    ) -> None:
        """Sample decisions (stratified by predicted label) for labelling, in a labelling tool's import format."""
        from frontdesk.loop.labelling import argilla_settings, label_studio_config, sample_decisions, to_argilla, to_label_studio

        if fmt not in FORMATS_OUT:
            raise ConfigError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS_OUT)}", field="--format")
        start = parse_since(since)
        with open_store(store) as st:
            decisions = sample_decisions(st, n, since=start, seed=seed)
            descriptions: dict[str, str] = {}
            if model is not None:
                from frontdesk.cascade.router import Router

                router = Router.load(model)
                labels = list(router.labels)
                descriptions = router.descriptions
            else:
                seen = {lab for d in st.decisions(since=start) for lab in d.labels}
                seen |= {lab for fb in st.feedback() for lab in fb.labels}
                labels = sorted(seen)
        if not decisions:
            raise ConfigError(f"no decisions to sample in {store}" + (f" since {since}" if since else "")
                              + ": route some messages first (or widen --since)", field="--store")
        out_file.parent.mkdir(parents=True, exist_ok=True)
        extra = None
        if fmt == "label-studio":
            out_file.write_text(json.dumps(to_label_studio(decisions, labels, multi=multi), ensure_ascii=False, indent=1),
                                encoding="utf-8")
            extra = out_file.with_name(out_file.stem + ".label_config.xml")
            extra.write_text(label_studio_config(labels, multi=multi), encoding="utf-8")
        elif fmt == "argilla":
            out_file.write_text(json.dumps(to_argilla(decisions, labels, multi=multi), ensure_ascii=False, indent=1),
                                encoding="utf-8")
            extra = out_file.with_name(out_file.stem + ".argilla_settings.json")
            extra.write_text(json.dumps(argilla_settings(labels, multi=multi, descriptions=descriptions), indent=1,
                                        ensure_ascii=False), encoding="utf-8")
        else:
            with out_file.open("w", encoding="utf-8") as fh:
                for d in decisions:
                    fh.write(json.dumps({"decision_id": d.id, "text": d.text, "labels": d.labels,
                                         "confidence": d.confidence, "tier": d.tier,
                                         "created_at": d.created_at.isoformat()}, ensure_ascii=False) + "\n")
        table = Table(title=f"{len(decisions)} decisions sampled → {out_file}")
        table.add_column("predicted label"), table.add_column("n", justify="right")
        from collections import Counter

        for label, count in sorted(Counter(d.labels[0] if d.labels else "(none)" for d in decisions).items()):
            table.add_row(label, str(count))
        out.print(table)
        if extra is not None:
            out.print(f"{'labelling config' if fmt == 'label-studio' else 'dataset settings'} written to {extra}")
        if model is None and fmt != "jsonl":
            console.print("[yellow]note:[/] label choices are the labels seen in the store; pass --model to offer "
                          "every label the model knows")

    @app.command("import-labels")
    def import_labels_cmd(
        file: Annotated[Path, typer.Argument(help="the labelling tool's export (JSON)")],
        store: Annotated[str, typer.Option("--store", help="store URL")],
        fmt: Annotated[str, typer.Option("--format", help="label-studio | argilla")] = "label-studio",
        source: Annotated[str, typer.Option(help="feedback source recorded for these labels")] = "labelling",
        resolve_reviews: Annotated[bool, typer.Option(help="resolve pending review items of these decisions")] = True,
        as_json: Annotated[bool, typer.Option("--json", help="print the import report as JSON")] = False,
    ) -> None:
        """Import annotations (Label Studio / Argilla export) as feedback; resolves pending review items."""
        from frontdesk.loop.labelling import from_argilla, from_label_studio, import_labels

        if fmt not in FORMATS_IN:
            raise ConfigError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS_IN)}", field="--format")
        items = from_label_studio(file) if fmt == "label-studio" else from_argilla(file)
        with open_store(store) as st:
            report = import_labels(st, items, source=source, resolve_reviews=resolve_reviews, note=f"imported from {file.name}")
        if as_json:
            out.print_json(report.model_dump_json())
            return
        table = Table(title=f"imported {file}")
        table.add_column("what"), table.add_column("n", justify="right")
        for what, value in (("annotations read", report.received), ("decisions", report.decisions),
                            ("stored as feedback", report.imported), ("… differing from the model", report.changed),
                            ("review items resolved", report.reviews_resolved),
                            ("already imported", report.unchanged), ("skipped", len(report.skipped))):
            table.add_row(what, str(value))
        out.print(table)
        for s in report.skipped[:20]:
            console.print(f"  skipped {s.decision_id}: {s.reason}", markup=False)
        if len(report.skipped) > 20:
            console.print(f"  … and {len(report.skipped) - 20} more (--json lists them all)")

    @app.command("trend")
    def trend_cmd(
        store: Annotated[str, typer.Option("--store", help="store URL")],
        window_days: Annotated[int, typer.Option(help="window length in days (7: ISO weeks)")] = 7,
        source: Annotated[str, typer.Option(help="feedback source of the labelled samples")] = "labelling",
        as_json: Annotated[bool, typer.Option("--json", help="print the windows as JSON")] = False,
    ) -> None:
        """The model's accuracy on the labelled samples, per week (or --window-days)."""
        from frontdesk.loop.labelling import labelled_trend

        with open_store(store) as st:
            windows = labelled_trend(st, window_days=window_days, source=source)
        if as_json:
            out.print_json(json.dumps(windows))
            return
        if not windows:
            out.print(f"no labelled decisions (feedback source {source!r}) yet: `frontdesk sample`, label, then "
                      "`frontdesk import-labels`")
            return
        table = Table(title=f"labelled samples per {window_days}-day window")
        for col in ("window", "n", "accuracy", "macro-F1", "escalated", "lowest recall"):
            table.add_column(col, justify="left" if col in ("window", "lowest recall") else "right")
        for w in windows:
            worst: list[Any] = sorted(w["per_label_recall"].items(), key=lambda kv: kv[1])[:2]
            table.add_row(w["start"][:10], str(w["n"]), _pct(w["accuracy"]), _pct(w["macro_f1"]),
                          _pct(w["escalation_rate"]), ", ".join(f"{k} {v:.0%}" for k, v in worst))
        out.print(table)
