"""``frontdesk batch``: route a whole file (JSONL, text, CSV, Parquet) into an output file, on all cores or on Ray."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from frontdesk.cli.common import LLMModelOpt, LLMOpt, LLMUrlOpt, console, llm_params, out
from frontdesk.errors import ConfigError


class _RateColumn(ProgressColumn):
    """Messages per second (rich's own speed estimate over the last samples)."""

    def render(self, task) -> Text:  # noqa: ANN001 - rich's Task
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} msg/s" if speed else "– msg/s", style="progress.data.speed")


class _CountColumn(ProgressColumn):
    """Rows done / rows in the input (an estimate until the end)."""

    def render(self, task) -> Text:  # noqa: ANN001 - rich's Task
        total = f"{task.total:,.0f}" if task.total is not None else "?"
        return Text(f"{task.completed:,.0f}/{total}", style="progress.download")


class _Reporter:
    """A rich bar (rows, rate, ETA) on a terminal; otherwise a plain progress line every 30 seconds on stderr."""

    def __init__(self) -> None:
        self.bar = Progress(TextColumn("routing"), BarColumn(), _CountColumn(), _RateColumn(),
                            TextColumn("ETA"), TimeRemainingColumn(), TimeElapsedColumn(), console=console, transient=False,
                            disable=not console.is_terminal)
        self.task = self.bar.add_task("routing", total=None)
        self.t0 = self.last = time.monotonic()
        self.first: int | None = None

    def __call__(self, done: int, total: int | None) -> None:
        if self.first is None:  # rows a resumed run found already done do not count towards the rate
            self.first = done
            self.bar.update(self.task, total=total, completed=done)
            return
        self.bar.update(self.task, total=total, completed=done)
        now = time.monotonic()
        if not console.is_terminal and now - self.last >= 30:
            self.last = now
            rate = (done - self.first) / max(now - self.t0, 1e-9)
            eta = f", ETA {((total or done) - done) / rate:,.0f} s" if rate > 0 and total else ""
            share = f" ({done / total:.0%})" if total else ""
            console.print(f"batch: {done:,}/{total or '?':,} rows{share}, {rate:,.0f} msg/s{eta}", markup=False)


def register(app: typer.Typer) -> None:
    """Add ``batch`` to ``app``."""

    @app.command()
    def batch(
        model: Annotated[Path, typer.Option("--model", help="model directory")],
        in_path: Annotated[Path, typer.Option("--in", help="input: .jsonl (a 'text' field per line), .txt, .csv/.tsv (a header row), .parquet")],
        out_path: Annotated[Path, typer.Option("--out", help="output: .jsonl, .csv, .tsv, or .parquet (a directory of part files)")],
        text_column: Annotated[str, typer.Option(help="JSONL field / CSV or Parquet column holding the text")] = "text",
        id_column: Annotated[Optional[str], typer.Option(help="column with row ids (default: <file tag>:<row number>)")] = None,
        in_format: Annotated[Optional[str], typer.Option(help="jsonl | txt | csv | tsv | parquet (default: from the name)")] = None,
        out_format: Annotated[Optional[str], typer.Option(help="jsonl | csv | tsv | parquet (default: from the name)")] = None,
        workers: Annotated[Optional[int], typer.Option(help="worker processes (local; default: all usable cores) or actors (ray; default: the cluster's CPUs)")] = None,
        chunk_rows: Annotated[int, typer.Option(help="rows routed together in one vectorised pass")] = 4096,
        trace: Annotated[bool, typer.Option("--trace", help="add each row's full trace (every tier's verdict, scores, reason)")] = False,
        resume: Annotated[bool, typer.Option("--resume", help="continue an output that an interrupted run left (no duplicates, no gaps)")] = False,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing output")] = False,
        engine: Annotated[str, typer.Option(help="local (this machine's cores) | ray (Ray Data: a local runtime, or --address)")] = "local",
        address: Annotated[Optional[str], typer.Option(help="Ray cluster: ray://HOST:10001, or auto (the cluster this node is in)")] = None,
        llm: LLMOpt = None,
        llm_model: LLMModelOpt = None,
        llm_base_url: LLMUrlOpt = None,
        as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    ) -> None:
        """Route every row of a file and write one output row per input row, in input order: id, labels,
        confidence, tier, escalated, flagged, reason (and the trace with --trace). Rows that cannot be routed
        (bad JSON, no text) get tier 'error' and say why; the exit code is then 1. Without --llm, messages
        no local tier is sure of go to human review (tier 'human'); an LLM tier saved with the model is not
        called unless --llm is given."""
        from frontdesk.batch import BatchOptions, run_batch

        if engine not in ("local", "ray"):
            raise ConfigError(f"--engine {engine!r}: use local or ray", field="--engine")
        if address is not None and engine != "ray":
            raise ConfigError("--address needs --engine ray", field="--address")
        if resume and overwrite:
            raise ConfigError("give --resume or --overwrite, not both", field="--resume")
        options = BatchOptions(model=model, input=in_path, output=out_path, in_format=in_format, out_format=out_format,
                               text_column=text_column, id_column=id_column, chunk_rows=chunk_rows, workers=workers, trace=trace,
                               resume=resume, overwrite=overwrite, llm=llm_params(llm, llm_model, llm_base_url), engine=engine,  # type: ignore[arg-type]
                               address=address)
        reporter = _Reporter()
        with reporter.bar:
            summary = run_batch(options, progress=reporter)
        if as_json:
            out.print(json.dumps(summary.model_dump()), markup=False)
        else:
            tiers = ", ".join(f"{k} {v:,}" for k, v in sorted(summary.tiers.items(), key=lambda kv: -kv[1]))
            resumed = f" (resumed after {summary.resumed_from:,} rows already written)" if summary.resumed_from else ""
            out.print(f"routed {summary.rows:,} rows{resumed} in {summary.seconds:,.1f} s ({summary.rate:,.0f} msg/s, "
                      f"{summary.workers} {'actors' if engine == 'ray' else 'workers'}, {summary.startup_seconds:,.1f} s to the first "
                      f"chunk) → {summary.output}", markup=False)
            if tiers:
                out.print(f"final tiers: {tiers}", markup=False)
        if summary.errors:
            console.print(f"{summary.errors:,} rows could not be routed: their rows say why (tier 'error')", markup=False)
            raise typer.Exit(1)
