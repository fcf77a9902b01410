"""``frontdesk train``, ``eval`` and ``export``: fit a model, measure it, export its encoder to ONNX."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from frontdesk.cascade.router import Router, RouterSettings
from frontdesk.cli.common import (
    LLMModelOpt, LLMOpt, LLMUrlOpt, console, llm_params, objective as make_objective, out, parse_tier_params, progress_bar,
)
from frontdesk.cli.llm import AcceptOpt, CalibrationOpt, fit_summary, fit_with_progress, print_fit
from frontdesk.data.dataset import Dataset
from frontdesk.errors import ConfigError, validation_message
from frontdesk.evaluation.evaluate import LLMTierReport
from frontdesk.gating.gate import Objective
from frontdesk.gating.oos import OOSOptions
from frontdesk.tiers.base import TIERS, role_of_kind

if TYPE_CHECKING:
    from frontdesk.evaluation.evaluate import GuaranteeReport


def train_router(data: Dataset, tiers: list[str], objective: Objective, settings: RouterSettings,
                 tier_params: dict[str, dict[str, object]] | None = None, oos: OOSOptions | None = None) -> Router:
    """Train with a progress bar per tier."""
    with progress_bar() as bar:
        tasks: dict[str, int] = {}

        def progress(step: str, frac: float) -> None:
            key = step if not tasks else next(iter(tasks))
            if not tasks:
                tasks[key] = bar.add_task(step, total=1.0)
            bar.update(tasks[key], completed=frac, description=f"training: {step}")

        try:
            return Router.train(data, tiers, objective=objective, settings=settings, tier_params=tier_params, progress=progress,
                                oos=oos)
        except ValidationError as exc:  # a --tier-param that the tier's settings reject
            raise ConfigError(validation_message(exc), field="--tier-param") from exc


def print_llm_report(llm: LLMTierReport) -> None:
    """The LLM tier's lines of ``frontdesk eval``: its policy, what it did, and its gain over the classifier's guess."""
    out.print(f"[bold]LLM tier[/] — {llm.policy}")
    shares = ", ".join(f"{_OUTCOMES.get(k, k)} {v:.1%}" for k, v in llm.outcomes.items())
    out.print(f"  reached {llm.reached:.1%} of messages ({shares}); decided {llm.decided:.1%}")
    out.print(f"  gain: {llm.gain * 100:+.2f} points of accuracy over the classifier's guess ({llm.accuracy_without:.2%} without the LLM)")
    if llm.keeps_guess:
        out.print("  [yellow]the LLM was worse than the classifier's guess on validation: the fitted policy keeps the guess[/]")


_OUTCOMES = {"llm": "LLM overruled the guess", "agree": "agreed with the guess", "guess": "guess kept", "none": "no candidate fit",
             "injection": "held: possible prompt injection", "error": "failed", "gate": "gated on the LLM's confidence"}


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


def _print_guarantee(router: Router) -> None:
    """The certificate of the primary gate, or a loud NOT CERTIFIED (``--on-uncertified plain``)."""
    cert = router.guarantee
    if cert is None:
        return
    primary = router.primary.name
    if not cert.certified:
        out.print(f"[bold red]NOT CERTIFIED[/]: tier '{primary}' keeps the plain fit, without the guarantee asked for: {cert.reason}")
        return
    others = [c.name for c in router.tiers if c.calibrated and c.name != primary]
    out.print(f"[bold green]certified[/] (tier '{primary}'): {cert.describe()}"
              + (f"; the guarantee covers '{primary}' only, not {', '.join(others)}" if others else ""))
    plain = router.curves[primary].plain
    if plain is not None:
        out.print(f"  price: {cert.escalation_rate - plain.escalation_rate:+.1%} escalation on validation vs the plain fit "
                  f"(threshold {plain.threshold:.3f}, {plain.escalation_rate:.1%} escalated)")


def _print_oos(router: Router, name: str) -> None:
    """The tier's out-of-scope detector: threshold, what it costs and catches on validation, where such messages go."""
    target = f"the label '{router.unknown_label}'" if router.unknown_label else "human review (reason 'out of scope')"
    if (det := router.detectors.get(name)) is not None:
        i = det.info_
        recall = f", catches {i['validation_oos_recall']:.1%} of its {i['validation_oos']} out-of-scope messages" \
            if "validation_oos_recall" in i else ""
        final = router.next_oos_tier(name)
        where = f"passed on to '{final}'" if final else f"→ {target}"
        out.print(f"  out of scope: score ≥ {det.threshold_:.4f} ({i.get('combiner', '')}) → validation: "
                  f"{i['validation_in_scope_rejected']:.1%} of in-scope rejected{recall}; {where}")


def _guarantee_table(g: GuaranteeReport) -> Table:
    """The eval table of the certified gate on the evaluated split."""
    table = Table(title=f"guarantee (tier '{g.tier}')")
    table.add_column("", style="bold"), table.add_column("value", justify="right")
    window = f" on windows of {g.window} accepted" if g.window else ""
    table.add_row("promise", f"accuracy on accepted ≥ {g.target_accuracy:.3f}{window} with probability ≥ {g.probability:.3f}")
    if not g.certified:
        table.add_row("status", f"[bold red]{escape(g.note)}[/]")
    else:
        table.add_row("status", "certified" + ("" if g.in_force else f" [bold red]but not in force[/]: {escape(g.note)}"))
        table.add_row("certified threshold", f"{g.threshold:.4f}" + (f", margin {g.min_margin:.2f}" if g.min_margin else ""))
        table.add_row("lower bound on validation", f"{g.certified_lower_bound:.4f} ({g.validation_accepted} accepted)")
    acc = "—" if g.accepted_accuracy is None else f"{g.accepted_accuracy:.4f} [{g.interval[0]:.4f}, {g.interval[1]:.4f}]"
    table.add_row("accepted accuracy here [95% CI]", f"{acc} from {g.correct}/{g.accepted}")
    table.add_row("escalation here", f"{g.escalation_rate:.1%}" + (
        f" (plain fit {g.plain_escalation_rate:.1%}, price {g.price:+.1%})" if g.price is not None else ""))
    if not g.consistent:
        table.add_row("check", "[bold red]the interval's upper end is below the target[/]: this split is unlike the "
                               "validation data, or the certificate failed (it may, with probability ≤ 1 − probability)")
    return table


def register(app: typer.Typer) -> None:
    """Add ``train``, ``export`` and ``eval`` to ``app``."""

    @app.command()
    def train(
        data: Annotated[Path, typer.Option("--data", help="dataset directory (train/validation/test.jsonl) or one .jsonl/.csv file")],
        out_dir: Annotated[Path, typer.Option("--out", help="model directory to write")],
        tiers: Annotated[str, typer.Option(help=f"cascade order, comma-separated ({', '.join(TIERS.builtin_names())}, or an "
                                                f"installed plug-in: frontdesk plugins)")] = "linear",
        target_accuracy: Annotated[Optional[float], typer.Option(help="fit thresholds for this accuracy on accepted messages")] = None,
        max_escalation: Annotated[Optional[float], typer.Option(help="fit thresholds to escalate at most this share (default 0.2)")] = None,
        per_label_thresholds: Annotated[bool, typer.Option(help="fit one threshold per label")] = False,
        flag_accuracy: Annotated[Optional[float], typer.Option(help="fit a review band: accepted messages below it are flagged")] = None,
        guarantee: Annotated[Optional[float], typer.Option(
            "--guarantee", help="certify the primary gate: accuracy on accepted ≥ --target-accuracy with this probability "
                                "over the draw of the validation data (e.g. 0.95)")] = None,
        guarantee_window: Annotated[Optional[int], typer.Option(
            "--guarantee-window", help="with --guarantee: certify every window of this many accepted messages instead of "
                                       "the accepted traffic as a whole (stricter, escalates more)")] = None,
        on_uncertified: Annotated[Optional[str], typer.Option(
            "--on-uncertified", help="with --guarantee, when nothing can be certified: fail (default; nothing is saved) | "
                                     "plain (keep the plain fit, marked NOT CERTIFIED)")] = None,
        defer: Annotated[bool, typer.Option(
            "--defer/--no-defer", help="a tier followed by a local model tier (linear → encoder) also escalates the messages "
                                       "that tier answers better on validation (default on; off: each gate to the "
                                       "objective alone)")] = True,
        fallback: Annotated[str, typer.Option(help="when no tier is confident: human | unknown")] = "human",
        unknown_label: Annotated[Optional[str], typer.Option(
            "--unknown-label", help="the label of messages that fit none of the known labels (out of scope; and --fallback "
                                    "unknown), e.g. oos — it need not occur in the data. Default: the data's own oos / "
                                    "out_of_scope / unknown class; without one, out-of-scope messages go to human review")] = None,
        oos_detection: Annotated[bool, typer.Option(
            "--oos/--no-oos", help="fit an out-of-scope detector per single-label model tier on validation (default on)")] = True,
        oos_budget: Annotated[Optional[float], typer.Option(
            "--oos-budget", help="what the out-of-scope detector may cost on in-scope validation messages: in-scope accuracy "
                                 "(default 0.01) when validation has examples of the unknown label, else the share of them "
                                 "rejected (default 0.03); see --oos-budget-on")] = None,
        oos_budget_on: Annotated[str, typer.Option(
            "--oos-budget-on", help="auto | correct (the budget is in-scope accuracy lost) | all (the budget is in-scope "
                                    "messages rejected, a rejection rate)")] = "auto",
        oos_folds: Annotated[int, typer.Option(
            "--oos-folds", help="pseudo out-of-scope examples from this many extra models of the first tier, each trained "
                                "without a group of labels (for data without out-of-scope examples; costs that many fits; "
                                "e.g. 5)")] = 0,
        tier_param: Annotated[Optional[list[str]], typer.Option(
            "--tier-param", help="a tier setting KIND.KEY=VALUE, repeatable (e.g. encoder.head=logreg, encoder.epochs=3)")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print the training summary as JSON")] = False,
        distill_from: Annotated[Optional[Path], typer.Option("--distill-from", help="teacher model directory: train on its labels (validation and test stay gold)")] = None,
        unlabelled: Annotated[Optional[Path], typer.Option("--unlabelled", help='extra texts for the teacher to label: one per line, or .jsonl with "text"')] = None,
        distill: Annotated[str, typer.Option("--distill", help="soft: the teacher's probabilities as row weights | hard: its decisions")] = "soft",
        keep_gold: Annotated[bool, typer.Option("--keep-gold/--no-keep-gold", help="with --distill-from: also train on the gold labels")] = True,
        distill_min_confidence: Annotated[float, typer.Option(help="with --distill-from: skip texts the teacher answers below this confidence")] = 0.0,
        llm: LLMOpt = None,
        llm_model: LLMModelOpt = None,
        llm_base_url: LLMUrlOpt = None,
        llm_calibration: CalibrationOpt = None,
        llm_accept_accuracy: AcceptOpt = None,
    ) -> None:
        """Fit the tiers, calibrate them and fit the gate thresholds on validation; save the model.

        With --distill-from, the training texts (plus --unlabelled ones) are labelled by the teacher
        model first; calibration and the gates are still fitted on the gold validation split.
        With --llm, an LLM tier is added and its acceptance policy fitted on its answers to validation
        messages the model's tiers do not accept (see `frontdesk llm fit`).
        """
        objective = make_objective(target_accuracy, max_escalation, per_label_thresholds, flag_accuracy,
                                   guarantee=guarantee, guarantee_window=guarantee_window, on_uncertified=on_uncertified,
                                   defer=defer)
        settings = RouterSettings(fallback=fallback, unknown_label=unknown_label)  # type: ignore[arg-type]
        try:
            oos = OOSOptions(enabled=oos_detection, budget=oos_budget, budget_on=oos_budget_on, label_folds=oos_folds)  # type: ignore[arg-type]
        except ValidationError as exc:
            raise ConfigError(validation_message(exc), field="--oos-budget/--oos-budget-on/--oos-folds") from exc
        dataset = Dataset.load(data)
        dataset, distillation = _distilled(dataset, distill_from, unlabelled, distill, keep_gold, distill_min_confidence)
        kinds = [t.strip() for t in tiers.split(",") if t.strip()]
        if llm is None and any(role_of_kind(k) == "llm" for k in kinds):
            raise ConfigError("add the LLM tier with --llm local|openai|anthropic (its acceptance policy is fitted on validation), "
                              "not in --tiers", field="--tiers")
        params = llm_params(llm, llm_model, llm_base_url, calibration_size=llm_calibration, accept_accuracy=llm_accept_accuracy)
        router = train_router(dataset, kinds, objective, settings, parse_tier_params(tier_param or [], kinds), oos)
        if distillation is not None:
            router.meta["distillation"] = distillation
        fitted = None
        if params is not None:
            from frontdesk.llm.fit import ANSWERS_FILE

            out_dir.mkdir(parents=True, exist_ok=True)
            fitted = fit_with_progress(router, dataset, params, out_dir / ANSWERS_FILE)
            router = fitted.router
        router.save(out_dir)
        summary = {
            "model": str(out_dir), "labels": len(router.labels), "sizes": router.meta["sizes"], "tiers": router.meta["tiers"],
            "gates": {n: g.model_dump() for n, g in router.gates.items()},
            "operating_point": {n: c.chosen.model_dump() for n, c in router.curves.items()},
            "oos": {"unknown_label": router.unknown_label,
                    "detectors": {n: {"threshold": d.threshold_, "columns": list(d.columns), **d.info_} for n, d in router.detectors.items()}},
        }
        if router.guarantee is not None:
            summary["guarantee"] = {"tier": router.primary.name, **router.guarantee.model_dump()}
        if distillation is not None:
            summary["distillation"] = distillation
        if fitted is not None:
            summary["llm"] = fit_summary(fitted)
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
            if "validation_accuracy" not in info:  # not calibrated (rules, a plug-in): what it reports about itself
                facts = ", ".join(f"{k} {escape(str(v))}" for k, v in info.items() if not isinstance(v, (dict, list)))
                out.print(f"[bold]{name}[/] ({router.tier(name).role}, not calibrated){': ' + facts if facts else ''}")
                continue
            size = f"{info['n_features']} features" if "n_features" in info else (
                f"{info['model']} ({info.get('head', '?')} head, {info.get('dim', '?')}-d)" if "model" in info else "fitted")
            out.print(f"[bold]{name}[/]: {size}, trained in {info.get('train_seconds', '?')} s; "
                      f"validation accuracy {info.get('validation_accuracy', 0):.4f}; ECE {info.get('ece_before', 0):.4f} → "
                      f"{info.get('ece_after', 0):.4f} (T={info.get('temperature', 1):.3f})")
            if g and c:
                out.print(f"  gate: threshold {g.threshold:.3f}, margin {g.min_margin:.2f}"
                          + (f", review band below {g.flag_threshold:.3f}" if g.flag_threshold else "")
                          + (f", {len(g.label_thresholds)} per-label thresholds" if g.label_thresholds else "")
                          + f" → validation: {c.chosen.escalation_rate:.1%} escalated, {c.chosen.accepted_accuracy:.2%} accurate on accepted"
                          + (f" [yellow]({c.note})[/]" if c.note else ""))
            _print_oos(router, name)
        if fitted is not None:
            print_fit(fitted)
        _print_guarantee(router)
        out.print(f"saved to {out_dir}")


    @app.command("export")
    def export_cmd(
        model: Annotated[Path, typer.Option("--model", help="model directory with an encoder tier")],
        int8: Annotated[bool, typer.Option("--int8/--fp32", help="dynamic INT8 quantization (default) or plain fp32 ONNX")] = True,
        out_dir: Annotated[Optional[Path], typer.Option("--out", help="new model directory (default: <model>-int8 / -onnx beside it)")] = None,
        prune_vocab: Annotated[Optional[Path], typer.Option(
            "--prune-vocab", help="dataset (directory or file): keep only the tokens its train+validation texts use (smaller file)")] = None,
        keep_characters: Annotated[bool, typer.Option(
            "--keep-characters/--no-keep-characters", help="with --prune-vocab: keep every single-character token, so new words "
            "split into known pieces instead of [UNK]")] = True,
        keep_frequent: Annotated[int, typer.Option(
            help="with --prune-vocab: also keep this many of the vocabulary's most frequent tokens (0: the smallest file)")] = 18_000,
        oos_data: Annotated[Optional[Path], typer.Option(
            "--data", help="the training dataset: refit the out-of-scope detectors on the exported encoder (its embeddings "
                           "move a little; default: the --prune-vocab dataset)")] = None,
    ) -> None:
        """Write an ONNX copy of the model's encoder tiers next to the model; the original is untouched.

        The copy runs with onnxruntime alone (no torch); point route/eval/serve at it like any model.
        --prune-vocab also works on a model that is already an ONNX copy.
        """
        from frontdesk.tiers.encoder import export_model

        texts = None
        data = Dataset.load(oos_data) if oos_data is not None else None
        if prune_vocab is not None:
            pruning = Dataset.load(prune_vocab)
            texts = [ex.text for ex in pruning.train + pruning.validation]
            data = data or pruning
        with console.status("exporting to ONNX" + (" and quantizing to INT8" if int8 else "") + (", pruning the vocabulary" if texts else "")
                            + (", refitting the out-of-scope detectors" if data is not None else "")):
            dst, files = export_model(model, out_dir, int8=int8, vocab_texts=texts, keep_characters=keep_characters,
                                      keep_frequent=keep_frequent, oos_data=data)
        for f in files:
            out.print(f"{f.relative_to(dst)}: {f.stat().st_size / 1e6:.1f} MB")
        if data is None and json.loads((dst / "frontdesk.json").read_text()).get("oos"):
            console.print("[yellow]the out-of-scope detectors stay as fitted on the torch encoder[/]: pass --data DATASET to "
                          "refit them on the exported one")
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
        with progress_bar() as bar:
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
        if result.oos_flagged_rate is not None:
            table.add_row("called out of scope", f"{result.oos_flagged_rate:.1%}")
        for tier, pct in result.latency_ms_by_tier.items():
            table.add_row(f"latency {tier} p50 / p95 ms", f"{pct.p50:.3f} / {pct.p95:.3f}")
        out.print(table)
        if result.llm is not None:
            print_llm_report(result.llm)
        ops = Table(title="operating points (validation thresholds on this split)")
        for col in ("budget", "threshold", "escalation", "accepted accuracy"):
            ops.add_column(col, justify="right")
        for p in result.operating_points:
            ops.add_row(f"≤{p.target_escalation:.0%}", f"{p.threshold:.3f}", f"{p.escalation_rate:.1%}", f"{p.accepted_accuracy:.2%}")
        out.print(ops)
        if result.guarantee is not None:
            out.print(_guarantee_table(result.guarantee))
