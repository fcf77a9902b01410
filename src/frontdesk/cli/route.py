"""``frontdesk route`` and ``demo``: route messages from the command line; the offline demo."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from frontdesk.cascade.router import Router, RouterSettings
from frontdesk.cli.common import LLMModelOpt, LLMOpt, LLMUrlOpt, console, example_dir, llm_params, out
from frontdesk.cli.train import train_router
from frontdesk.data.dataset import Dataset
from frontdesk.errors import ConfigError, FrontdeskError
from frontdesk.gating.gate import Objective
from frontdesk.tiers.llm import LLMParams
from frontdesk.types import Decision, Message


def _local_llm_ready() -> str | None:
    """None when the offline LLM (provider ``local``: xllamacpp) can run here, else why not (and how to fix it).

    Nothing is imported (the provider sets OpenMP options before the first import): the package is
    looked up, the CPU's flags read and the model file checked.
    """
    from frontdesk.llm.registry import provider_ready

    return provider_ready("local")


def _offline_provider() -> tuple[str | None, str | None]:
    """The offline provider the demo uses: ``local``, else ``llama-cpp`` when that one is installed; and why not."""
    from frontdesk.llm.registry import provider_ready

    why_not = _local_llm_ready()
    if why_not is None:
        return "local", None
    if provider_ready("llama-cpp") is None:
        return "llama-cpp", None
    return None, why_not


def _inputs(texts: list[str] | None) -> Iterator[tuple[str, str, str | None]]:
    """(where, text, problem) for each message: the arguments, else stdin lines (blank lines skipped).
    Stdin is read as bytes so that a line that is not UTF-8 is reported with its number, not fatal."""
    if texts:
        for i, text in enumerate(texts, 1):
            yield f"message {i}", text, None
        return
    for n, raw in enumerate(sys.stdin.buffer, 1):
        try:
            text = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            yield f"stdin line {n}", "", f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}): send UTF-8 text"
            continue
        if text.strip():
            yield f"stdin line {n}", text, None


def _decision_table(*, with_queue: bool) -> Table:
    table = Table(show_lines=False)
    table.add_column("message", max_width=60, overflow="fold")
    table.add_column("labels")
    table.add_column("conf", justify="right")
    table.add_column("tier")
    table.add_column("queue" if with_queue else "reason", max_width=50, overflow="fold")
    return table


def _add_row(table: Table, d: Decision, targets: list) -> None:
    outcome = "human review" if d.tier == "human" else d.tier + (" (flagged)" if d.flagged else "")
    last = ", ".join(t.queue for t in targets) if targets else d.reason
    table.add_row(escape(d.text), escape(", ".join(d.labels) or "—"), f"{d.confidence:.2f}", outcome, escape(last))


def register(app: typer.Typer) -> None:
    """Add ``route`` and ``demo`` to ``app``."""

    @app.command()
    def route(
        texts: Annotated[Optional[list[str]], typer.Argument(help="messages to route; none → one message per stdin line")] = None,
        model: Annotated[Optional[Path], typer.Option("--model", help="model directory (classification only)")] = None,
        config: Annotated[Optional[Path], typer.Option("--config", help="frontdesk.yaml: the full pipeline (cleanup, rules, targets, sinks)")] = None,
        sender: Annotated[Optional[str], typer.Option(help="sender id (enables dedup with --config)")] = None,
        fmt: Annotated[str, typer.Option("--format", help="auto (a table on a terminal, JSON lines in a pipe) | table | json")] = "auto",
        llm: LLMOpt = None,
        llm_model: LLMModelOpt = None,
        llm_base_url: LLMUrlOpt = None,
    ) -> None:
        """Route messages: a readable table, or one JSON object per line (--model: the decision; --config:
        {decision, targets, delivery_errors}, the HTTP API's shape). Stdin lines that are not UTF-8 are
        reported with their line number and skipped; the exit code is 1 when any message failed."""
        if (model is None) == (config is None):
            raise ConfigError("give exactly one of --model (classify) or --config (full pipeline)", field="route")
        if fmt not in ("auto", "table", "json"):
            raise ConfigError(f"--format {fmt!r}: use auto, table or json", field="--format")
        as_json = fmt == "json" or (fmt == "auto" and not sys.stdout.isatty())
        params = llm_params(llm, llm_model, llm_base_url)
        if config is not None:
            from frontdesk.config import load_config
            from frontdesk.pipeline import Pipeline
            from frontdesk.routing.sinks import StdoutSink

            cfg = load_config(config)
            if params is not None:
                cfg = cfg.model_copy(update={"llm": LLMParams(**params)})
            pipeline = Pipeline.from_config(cfg)
            if any(isinstance(s, StdoutSink) for s in pipeline.sinks):  # one JSON shape per stream: route prints the targets
                pipeline.sinks = [s for s in pipeline.sinks if not isinstance(s, StdoutSink)]
                console.print("note: the stdout sink is off for `route` (the targets are in its output)")

            def handle(text: str) -> tuple[Decision, list, list[str]]:
                r = pipeline.route(Message(text=text, sender=sender))
                return r.decision, r.targets, r.delivery_errors
        else:
            router = Router.load(model)  # type: ignore[arg-type]
            if params is not None:
                router = router.with_llm(params)

            def handle(text: str) -> tuple[Decision, list, list[str]]:
                return router.route(text), [], []

        table = None if as_json else _decision_table(with_queue=config is not None)
        failed = 0
        for where, text, problem in _inputs(texts):
            if problem is not None:
                failed += 1
                console.print(f"error: {where}: {problem}", markup=False)
                continue
            try:
                decision, targets, errors = handle(text)
            except FrontdeskError as exc:
                failed += 1
                console.print(f"error: {where}: {exc}", markup=False)
                continue
            if table is not None:
                _add_row(table, decision, targets)
            elif config is not None:
                out.print(json.dumps({"decision": json.loads(decision.model_dump_json(exclude={"message"})),
                                      "targets": [json.loads(t.model_dump_json()) for t in targets],
                                      "delivery_errors": errors}, ensure_ascii=False), markup=False)
            else:
                out.print(decision.model_dump_json(exclude={"message"}), markup=False)
        if table is not None and table.row_count:
            out.print(table)
        if failed:
            raise typer.Exit(1)

    @app.command()
    def demo(
        as_json: Annotated[bool, typer.Option("--json", help="print decisions as JSON lines")] = False,
        llm: Annotated[str, typer.Option("--llm", help="auto: use the offline LLM tier when it is installed | off")] = "auto",
    ) -> None:
        """Train on the bundled customer-support examples and route a few messages (offline, no keys).

        The escalation threshold is fitted for ≤ 25% escalation on the example validation split; the
        review band follows seed 003 (accepted below 0.80 → flagged for review), set by hand the way
        ops would set it in config. When the offline LLM (llama.cpp + Qwen2.5-Coder-1.5B) is installed,
        escalated messages go to it before human review.
        """
        from frontdesk.evaluation.evaluate import evaluate

        root = example_dir()
        data = Dataset.load(root)
        base = train_router(data, ["linear"], Objective(max_escalation=0.25), RouterSettings())
        fitted = base.gates["linear"]
        base.set_gate("linear", fitted.model_copy(update={"flag_threshold": max(0.8, fitted.threshold)}))
        provider, why_not = _offline_provider() if llm == "auto" else (None, "switched off (--llm off)")
        router = base.with_llm({"provider": provider, "timeout_s": 120, "deadline_s": 240}) if provider else base
        messages = [m.strip() for m in (root / "demo_messages.txt").read_text(encoding="utf-8").splitlines() if m.strip()]
        with console.status("routing (the LLM takes a few seconds per escalated message)…") if why_not is None else nullcontext():
            decisions = router.route_batch(messages)
        if as_json:
            for d in decisions:
                out.print(d.model_dump_json(exclude={"message"}), markup=False)
            return
        g = router.gates["linear"]
        cascade = "linear → local LLM → human review" if why_not is None else "linear → human review"
        out.print(f"[bold]frontdesk demo[/] — {len(data.labels)} support intents, {len(data.train)} training examples; "
                  f"cascade: {cascade}. Gate: escalate below {g.threshold:.2f} (fitted), flag for review below {g.flag_threshold:.2f}.")
        table = Table()
        table.add_column("#", justify="right")
        table.add_column("message", max_width=52, no_wrap=True, overflow="ellipsis")
        table.add_column("label"), table.add_column("conf", justify="right"), table.add_column("outcome")
        for n, d in enumerate(decisions, 1):
            outcome = ("[red]→ human review[/]" if d.tier == "human" else "[cyan]LLM[/]" if d.tier == "llm"
                       else "[yellow]accepted, flagged[/]" if d.flagged else "[green]accepted[/]")
            table.add_row(str(n), d.text, ", ".join(d.labels), f"{d.confidence:.2f}", outcome)
        out.print(table)
        for n, d in enumerate(decisions, 1):
            if d.needs_review or d.escalated:
                line = f"  [dim]{n}.[/] {d.trace[0].reason}"
                for t in d.trace[1:]:
                    line += f" → {t.tier}: " + (t.rationale or t.reason if t.tier == "llm" else "review")
                if d.flagged and d.tier != "human":
                    line += " → flagged"
                out.print(line, markup=True)
        result, _ = evaluate(base, data.test)
        out.print(f"Held-out test ({result.n} messages, linear tier alone): accuracy {result.accuracy:.1%}; "
                  f"{result.escalation_rate:.0%} escalated; accuracy on the rest {result.accepted_accuracy:.1%}; "
                  f"p50 latency {result.latency_ms.p50:.3f} ms.")
        if why_not is not None:
            out.print(f"No LLM tier: {why_not}. Uncertain messages go to human review with the best guess attached — never dropped.")
        out.print("`frontdesk demo --json` shows each decision's full trace, reasons and the LLM's rationale.")
