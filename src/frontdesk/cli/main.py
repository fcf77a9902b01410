"""The ``frontdesk`` command line: train, eval, route, demo.

Every command exits 0 on success, 2 on a frontdesk error (the message says what to do next) and
1 when some inputs of a multi-message command could not be routed.
"""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from importlib import resources
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from frontdesk.data.dataset import Dataset
from frontdesk.errors import ConfigError, FrontdeskError, validation_message
from frontdesk.gating.gate import Objective
from frontdesk.cascade.router import Router, RouterSettings
from frontdesk.tiers.llm import LLMParams
from frontdesk.types import Message
from frontdesk.tiers.base import available_tiers

app = typer.Typer(add_completion=False, no_args_is_help=True, help="frontdesk: hybrid intent classification and routing.")
console = Console(stderr=True, soft_wrap=True, highlight=False)
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 120)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                    TimeElapsedColumn(), console=console, transient=True, disable=not console.is_terminal)


def _objective(target_accuracy: float | None, max_escalation: float | None, per_label: bool, flag_accuracy: float | None) -> Objective:
    try:
        return Objective(target_accuracy=target_accuracy, max_escalation=max_escalation, per_label=per_label, flag_accuracy=flag_accuracy)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc), field="objective") from exc


LLMOpt = Annotated[Optional[str], typer.Option("--llm", help="add an LLM tier: local | openai | anthropic")]
LLMModelOpt = Annotated[Optional[str], typer.Option("--llm-model", help="LLM model id (default per provider)")]
LLMUrlOpt = Annotated[Optional[str], typer.Option("--llm-base-url", help="OpenAI-compatible / Anthropic endpoint")]


def llm_params(provider: str | None, model: str | None, base_url: str | None, **extra: object) -> dict | None:
    """The LLM tier settings given on the command line (None when --llm is not given)."""
    if provider is None:
        if model or base_url:
            raise ConfigError("--llm-model / --llm-base-url need --llm local|openai|anthropic", field="--llm")
        return None
    if provider not in ("local", "openai", "anthropic"):
        raise ConfigError(f"unknown LLM provider {provider!r}: use local, openai or anthropic", field="--llm")
    return {"provider": provider, "model": model, "base_url": base_url, **{k: v for k, v in extra.items() if v is not None}}


def parse_tier_params(items: list[str], kinds: list[str]) -> dict[str, dict[str, object]]:
    """``KIND.KEY=VALUE`` options → {kind: {key: value}}; values are read as YAML (numbers, lists, …)."""
    import yaml

    params: dict[str, dict[str, object]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        kind, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise ConfigError(f"--tier-param {item!r}: write KIND.KEY=VALUE, e.g. encoder.head=logreg", field="--tier-param")
        if kind not in kinds:
            raise ConfigError(f"--tier-param {item!r}: tier {kind!r} is not in --tiers {','.join(kinds)}", field="--tier-param")
        try:
            params.setdefault(kind, {})[name] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--tier-param {item!r}: the value is not valid ({exc})", field="--tier-param") from exc
    return params


def train_router(data: Dataset, tiers: list[str], objective: Objective, settings: RouterSettings,
                 tier_params: dict[str, dict[str, object]] | None = None) -> Router:
    """Train with a progress bar per tier."""
    with _progress() as bar:
        tasks: dict[str, int] = {}

        def progress(step: str, frac: float) -> None:
            key = step if not tasks else next(iter(tasks))
            if not tasks:
                tasks[key] = bar.add_task(step, total=1.0)
            bar.update(tasks[key], completed=frac, description=f"training: {step}")

        try:
            return Router.train(data, tiers, objective=objective, settings=settings, tier_params=tier_params, progress=progress)
        except ValidationError as exc:  # a --tier-param that the tier's settings reject
            raise ConfigError(validation_message(exc), field="--tier-param") from exc


def _distilled(
    dataset: Dataset, teacher_dir: Path | None, unlabelled: Path | None, mode: str, keep_gold: bool, min_confidence: float
) -> tuple[Dataset, dict | None]:
    """The dataset relabelled by the teacher model (``--distill-from``) and the facts saved in meta["distillation"]."""
    if teacher_dir is None:
        if unlabelled is not None or mode != "soft" or not keep_gold or min_confidence:
            raise ConfigError("--unlabelled, --distill, --no-keep-gold and --distill-min-confidence need --distill-from TEACHER_MODEL",
                              field="--distill-from")
        return dataset, None
    from frontdesk.loop.distill import distill, read_texts

    teacher = Router.load(teacher_dir)
    texts = read_texts(unlabelled) if unlabelled is not None else []
    result = distill(teacher, dataset, texts, mode=mode, keep_gold=keep_gold, min_confidence=min_confidence)  # type: ignore[arg-type]
    return result.dataset, {"teacher": str(teacher_dir), **result.report.model_dump()}


@app.command()
def train(
    data: Annotated[Path, typer.Option("--data", help="dataset directory (train/validation/test.jsonl) or one .jsonl/.csv file")],
    out_dir: Annotated[Path, typer.Option("--out", help="model directory to write")],
    tiers: Annotated[str, typer.Option(help=f"cascade order, comma-separated ({', '.join(available_tiers())})")] = "linear",
    target_accuracy: Annotated[Optional[float], typer.Option(help="fit thresholds for this accuracy on accepted messages")] = None,
    max_escalation: Annotated[Optional[float], typer.Option(help="fit thresholds to escalate at most this share (default 0.2)")] = None,
    per_label_thresholds: Annotated[bool, typer.Option(help="fit one threshold per label")] = False,
    flag_accuracy: Annotated[Optional[float], typer.Option(help="fit a review band: accepted messages below it are flagged")] = None,
    fallback: Annotated[str, typer.Option(help="when no tier is confident: human | unknown")] = "human",
    unknown_label: Annotated[str, typer.Option(help="label used by --fallback unknown (e.g. oos)")] = "unknown",
    tier_param: Annotated[Optional[list[str]], typer.Option(
        "--tier-param", help="a tier setting KIND.KEY=VALUE, repeatable (e.g. encoder.head=logreg, encoder.epochs=3)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the training summary as JSON")] = False,
    distill_from: Annotated[Optional[Path], typer.Option("--distill-from", help="teacher model directory: train on its labels (validation and test stay gold)")] = None,
    unlabelled: Annotated[Optional[Path], typer.Option("--unlabelled", help='extra texts for the teacher to label: one per line, or .jsonl with "text"')] = None,
    distill: Annotated[str, typer.Option("--distill", help="soft: the teacher's probabilities as row weights | hard: its decisions")] = "soft",
    keep_gold: Annotated[bool, typer.Option("--keep-gold/--no-keep-gold", help="with --distill-from: also train on the gold labels")] = True,
    distill_min_confidence: Annotated[float, typer.Option(help="with --distill-from: skip texts the teacher answers below this confidence")] = 0.0,
) -> None:
    """Fit the tiers, calibrate them and fit the gate thresholds on validation; save the model.

    With --distill-from, the training texts (plus --unlabelled ones) are labelled by the teacher
    model first; calibration and the gates are still fitted on the gold validation split.
    """
    objective = _objective(target_accuracy, max_escalation, per_label_thresholds, flag_accuracy)
    settings = RouterSettings(fallback=fallback, unknown_label=unknown_label)  # type: ignore[arg-type]
    dataset = Dataset.load(data)
    dataset, distillation = _distilled(dataset, distill_from, unlabelled, distill, keep_gold, distill_min_confidence)
    kinds = [t.strip() for t in tiers.split(",") if t.strip()]
    router = train_router(dataset, kinds, objective, settings, parse_tier_params(tier_param or [], kinds))
    if distillation is not None:
        router.meta["distillation"] = distillation
    router.save(out_dir)
    summary = {
        "model": str(out_dir), "labels": len(router.labels), "sizes": router.meta["sizes"], "tiers": router.meta["tiers"],
        "gates": {n: g.model_dump() for n, g in router.gates.items()},
        "operating_point": {n: c.chosen.model_dump() for n, c in router.curves.items()},
    }
    if distillation is not None:
        summary["distillation"] = distillation
    if as_json:
        out.print_json(json.dumps(summary, default=str))
        return
    if distillation is not None:
        d = distillation
        agreement = f"; the teacher agrees with gold on {d['teacher_agreement']:.1%} of the training texts" if d["teacher_agreement"] is not None else ""
        out.print(f"distilled from {d['teacher']} ({d['mode']} labels): {d['teacher_rows']} training rows came from the teacher "
                  f"for {d['teacher_texts']} texts ({d['unlabelled_texts']} unlabelled), plus {d['gold_rows']} gold rows; skipped "
                  f"{d['skipped_review']} sent to review and {d['skipped_low_confidence']} below confidence{agreement}")
    for name, info in router.meta["tiers"].items():
        g, c = router.gates.get(name), router.curves.get(name)
        out.print(f"[bold]{name}[/]: {info.get('n_features', '?')} features, trained in {info.get('train_seconds', '?')} s; "
                  f"validation accuracy {info.get('validation_accuracy', 0):.4f}; ECE {info.get('ece_before', 0):.4f} → "
                  f"{info.get('ece_after', 0):.4f} (T={info.get('temperature', 1):.3f})")
        if g and c:
            out.print(f"  gate: threshold {g.threshold:.3f}, margin {g.min_margin:.2f}"
                      + (f", review band below {g.flag_threshold:.3f}" if g.flag_threshold else "")
                      + (f", {len(g.label_thresholds)} per-label thresholds" if g.label_thresholds else "")
                      + f" → validation: {c.chosen.escalation_rate:.1%} escalated, {c.chosen.accepted_accuracy:.2%} accurate on accepted"
                      + (f" [yellow]({c.note})[/]" if c.note else ""))
    out.print(f"saved to {out_dir}")


@app.command("export")
def export_cmd(
    model: Annotated[Path, typer.Option("--model", help="model directory with an encoder tier")],
    int8: Annotated[bool, typer.Option("--int8/--fp32", help="dynamic INT8 quantization (default) or plain fp32 ONNX")] = True,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="new model directory (default: <model>-int8 / -onnx beside it)")] = None,
) -> None:
    """Write an ONNX copy of the model's encoder tiers next to the model; the original is untouched.

    The copy runs with onnxruntime alone (no torch); point route/eval/serve at it like any model.
    """
    from frontdesk.tiers.encoder import export_model

    with console.status("exporting to ONNX" + (" and quantizing to INT8" if int8 else "")):
        dst, files = export_model(model, out_dir, int8=int8)
    for f in files:
        out.print(f"{f.relative_to(dst)}: {f.stat().st_size / 1e6:.1f} MB")
    out.print(f"saved to {dst}")


@app.command("eval")
def eval_cmd(
    model: Annotated[Path, typer.Option("--model", help="model directory")],
    data: Annotated[Path, typer.Option("--data", help="dataset directory or file")],
    split: Annotated[str, typer.Option(help="train | validation | test")] = "test",
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    report: Annotated[Optional[Path], typer.Option(help="write an HTML report here")] = None,
    limit: Annotated[Optional[int], typer.Option(help="evaluate only the first N examples")] = None,
    sample: Annotated[Optional[int], typer.Option(help="evaluate a seeded random sample of N examples")] = None,
    seed: Annotated[int, typer.Option(help="seed of --sample")] = 13,
    llm: LLMOpt = None,
    llm_model: LLMModelOpt = None,
    llm_base_url: LLMUrlOpt = None,
    llm_record: Annotated[Optional[Path], typer.Option(help="append the LLM's answers to this JSONL file")] = None,
    llm_replay: Annotated[Optional[Path], typer.Option(help="answer from a recording instead of calling the LLM")] = None,
    monthly_volume: Annotated[Optional[int], typer.Option(help="messages per month, for the cost projection")] = None,
) -> None:
    """Route a labelled split and report accuracy, calibration, escalation, cost and latency."""
    import random

    from frontdesk.evaluation.evaluate import evaluate

    router = Router.load(model)
    params = llm_params(llm, llm_model, llm_base_url, record=llm_record, replay=llm_replay)
    if params is not None:
        router = router.with_llm(params)
    examples = Dataset.load(data).split(split)
    if sample is not None:
        examples = random.Random(seed).sample(examples, min(sample, len(examples)))
    examples = examples[:limit]
    with _progress() as bar:
        task = bar.add_task(f"routing {len(examples)} messages", total=len(examples))
        result, _ = evaluate(router, examples, progress=lambda done: bar.update(task, completed=done))
    if report is not None:
        from frontdesk.evaluation.report import write_html_report

        write_html_report(result, router, report, title=f"{Path(data).name} / {split}")
        console.print(f"report written to {report}")
    payload = json.loads(result.model_dump_json(exclude={"reliability", "per_label", "confusions"}))
    if monthly_volume is not None:
        payload["monthly_projection"] = {"messages": monthly_volume, "cost_usd": result.cost_per_1k * monthly_volume / 1000,
                                         "llm_calls": result.llm_call_rate * monthly_volume}
    if as_json:
        out.print_json(json.dumps(payload))
        return
    table = Table(title=f"{Path(data).name} / {split} ({result.n} messages)")
    table.add_column("metric"), table.add_column("value", justify="right")
    for k, v in result.summary().items():
        table.add_row(k, "—" if v is None else f"{v:.4f}")
    table.add_row("tier share", ", ".join(f"{t} {s:.1%}" for t, s in result.tier_share.items()))
    if result.llm_call_rate:
        table.add_row("LLM call rate", f"{result.llm_call_rate:.1%}")
        table.add_row("LLM tokens (in / out)", f"{result.llm_tokens.get('input', 0):,} / {result.llm_tokens.get('output', 0):,}")
    table.add_row("cost per 1,000 messages", f"${result.cost_per_1k:.4f}")
    if monthly_volume is not None:
        table.add_row(f"cost for {monthly_volume:,} messages / month", f"${payload['monthly_projection']['cost_usd']:,.2f}")
    for tier, pct in result.latency_ms_by_tier.items():
        table.add_row(f"latency {tier} p50 / p95 ms", f"{pct.p50:.3f} / {pct.p95:.3f}")
    out.print(table)
    ops = Table(title="operating points (validation thresholds on this split)")
    for col in ("budget", "threshold", "escalation", "accepted accuracy"):
        ops.add_column(col, justify="right")
    for p in result.operating_points:
        ops.add_row(f"≤{p.target_escalation:.0%}", f"{p.threshold:.3f}", f"{p.escalation_rate:.1%}", f"{p.accepted_accuracy:.2%}")
    out.print(ops)


@app.command()
def route(
    texts: Annotated[Optional[list[str]], typer.Argument(help="messages to route; none → one message per stdin line")] = None,
    model: Annotated[Optional[Path], typer.Option("--model", help="model directory (classification only)")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="frontdesk.yaml: the full pipeline (cleanup, rules, targets, sinks)")] = None,
    sender: Annotated[Optional[str], typer.Option(help="sender id (enables dedup with --config)")] = None,
    llm: LLMOpt = None,
    llm_model: LLMModelOpt = None,
    llm_base_url: LLMUrlOpt = None,
) -> None:
    """Route messages and print one decision JSON per line (with --config: decision + targets)."""
    if (model is None) == (config is None):
        raise ConfigError("give exactly one of --model (classify) or --config (full pipeline)", field="route")
    params = llm_params(llm, llm_model, llm_base_url)
    lines = texts if texts else (line.rstrip("\n") for line in sys.stdin)
    failed = 0
    if config is not None:
        from frontdesk.pipeline import Pipeline

        from frontdesk.config import load_config

        cfg = load_config(config)
        if params is not None:
            cfg = cfg.model_copy(update={"llm": LLMParams(**params)})
        pipeline = Pipeline.from_config(cfg)
        handle = lambda text: json.dumps({  # noqa: E731
            "decision": json.loads(r.decision.model_dump_json(exclude={"message"})),
            "targets": [json.loads(t.model_dump_json()) for t in r.targets], "delivery_errors": r.delivery_errors,
        }, ensure_ascii=False) if (r := pipeline.route(Message(text=text, sender=sender))) else ""
    else:
        router = Router.load(model)  # type: ignore[arg-type]
        if params is not None:
            router = router.with_llm(params)
        handle = lambda text: router.route(text).model_dump_json(exclude={"message"})  # noqa: E731
    for text in lines:
        if not texts and not text.strip():
            continue
        try:
            out.print(handle(text), markup=False)
        except FrontdeskError as exc:
            failed += 1
            console.print(f"[red]error:[/] {exc}")
    if failed:
        raise typer.Exit(1)


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="where to write the starter config")] = Path("frontdesk.yaml"),
    force: Annotated[bool, typer.Option(help="overwrite an existing file")] = False,
) -> None:
    """Write a commented starter frontdesk.yaml."""
    from frontdesk.config import STARTER

    if path.exists() and not force:
        raise ConfigError(f"{path} exists: pass --force to overwrite it", field="init")
    path.write_text(STARTER, encoding="utf-8")
    out.print(f"wrote {path} — set 'model:' to a directory from `frontdesk train`, then `frontdesk route --config {path}`")


@app.command()
def serve(
    config: Annotated[Optional[Path], typer.Option("--config", help="frontdesk.yaml (production mode)")] = None,
    model: Annotated[Optional[Path], typer.Option("--model", help="model directory: development mode, auth OFF")] = None,
    host: Annotated[Optional[str], typer.Option(help="bind address (default: config's, 127.0.0.1)")] = None,
    port: Annotated[Optional[int], typer.Option(help="port (default: config's, 8080)")] = None,
    workers: Annotated[int, typer.Option(help="worker processes (needs --config)")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
    llm: LLMOpt = None,
    llm_model: LLMModelOpt = None,
    llm_base_url: LLMUrlOpt = None,
) -> None:
    """Run the HTTP service (FastAPI + uvicorn)."""
    import os

    import uvicorn

    from frontdesk.config import AuthConfig, FrontdeskConfig, load_config
    from frontdesk.server.app import create_app

    if (model is None) == (config is None):
        raise ConfigError("give exactly one of --config (production) or --model (development, no auth)", field="serve")
    params = llm_params(llm, llm_model, llm_base_url)
    if config is not None:
        cfg = load_config(config)
        bind_host, bind_port = host or cfg.server.host, port or cfg.server.port
        if params is not None:
            if workers > 1:
                raise ConfigError("with --workers, put the LLM settings in the config's llm: section", field="--llm")
            cfg = cfg.model_copy(update={"llm": LLMParams(**params)})
        if workers > 1:
            os.environ["FRONTDESK_CONFIG"] = str(config.resolve())
            uvicorn.run("frontdesk.server.app:app_from_env", factory=True, host=bind_host, port=bind_port,
                        workers=workers, log_level=log_level, access_log=False)
            return
        app_ = create_app(cfg if params is not None else config)
    else:
        cfg = FrontdeskConfig(model=model.resolve(), auth=AuthConfig(enabled=False), store="sqlite:///frontdesk-dev.db",  # type: ignore[union-attr]
                              llm=LLMParams(**params) if params else None)
        bind_host, bind_port = host or "127.0.0.1", port or 8080
        console.print("[bold red]DEVELOPMENT MODE: authentication is OFF and decisions go to ./frontdesk-dev.db. "
                      "Use --config frontdesk.yaml in production.[/]")
        app_ = create_app(cfg)
    uvicorn.run(app_, host=bind_host, port=bind_port, log_level=log_level, access_log=False)


keys_app = typer.Typer(help="API keys for the service.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="who the key is for")],
    scope: Annotated[list[str], typer.Option(help="route and/or admin (repeatable)")] = ["route"],  # noqa: B006
) -> None:
    """Make a new API key: prints the key once and the auth.keys entry for frontdesk.yaml."""
    from frontdesk.server.auth import hash_key, new_key

    bad = sorted(set(scope) - {"route", "admin"})
    if bad:
        raise ConfigError(f"unknown scope(s) {bad}: use route and/or admin", field="--scope")
    key = new_key()
    console.print("Key (shown once, store it in your secret manager):")
    out.print(key, markup=False)
    console.print("Add to frontdesk.yaml under auth.keys:")
    console.print(f"  - name: {name}\n    sha256: {hash_key(key)}\n    scopes: [{', '.join(scope)}]", markup=False)


def example_dir() -> Path:
    """The hand-written example dataset shipped with the package."""
    return Path(str(resources.files("frontdesk") / "examples" / "support"))


def _local_llm_ready() -> str | None:
    """None when the offline LLM can run here, else why not (and how to fix it)."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:  # not imported here: the provider sets OpenMP options first
        return "llama-cpp-python is not installed (pip install 'frontdesk[llm-local]', or `make demo`)"
    from frontdesk.llm.models import is_installed

    if not is_installed():
        return "the local model is not fetched (frontdesk models fetch, or `make demo`)"
    return None


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
    why_not = _local_llm_ready() if llm == "auto" else "switched off (--llm off)"
    router = base.with_llm({"provider": "local", "timeout_s": 120}) if why_not is None else base
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


def _register_commands() -> None:
    """Commands that live in their own modules (the feedback loop, monitoring, local models)."""
    from frontdesk.cli import loop as cli_loop, models as cli_models, monitor as cli_monitor

    cli_loop.register(app)
    cli_monitor.register(app)
    cli_models.register(app)


_register_commands()


def main() -> None:
    """Console entry point: frontdesk errors become one red line and exit code 2."""
    try:
        rc = app(standalone_mode=False)  # returns the exit code of typer.Exit instead of raising
        sys.exit(rc if isinstance(rc, int) else 0)
    except FrontdeskError as exc:
        console.print(f"[red]error:[/] {exc}")
        sys.exit(2)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        sys.exit(code)
    except Exception as exc:  # usage errors of the (vendored) click layer carry show() and exit_code
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()  # type: ignore[attr-defined]
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        if type(exc).__name__ == "Abort":
            sys.exit(1)
        raise


if __name__ == "__main__":
    main()
