"""``frontdesk llm fit`` and ``llm show``: add an LLM tier to a trained model and fit its acceptance policy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from frontdesk.cli.common import LLMModelOpt, LLMOpt, LLMUrlOpt, console, llm_params, out, progress_bar, save_model
from frontdesk.errors import ConfigError

CalibrationOpt = Annotated[Optional[int], typer.Option(
    "--llm-calibration", help="validation messages that reach the LLM to fit its acceptance policy on (default 300)")]
AcceptOpt = Annotated[Optional[float], typer.Option(
    "--llm-accept-accuracy", help="accuracy the LLM tier's accepted answers must reach on validation "
                                  "(default: what the first tier's accepted messages reach)")]


def fit_with_progress(router: Any, data: Any, params: dict[str, Any], answers: Path, seed: int = 13) -> Any:
    """:func:`frontdesk.llm.fit.fit_llm` with a progress bar; returns its FitResult."""
    from frontdesk.llm.fit import fit_llm

    with progress_bar() as bar:
        task = bar.add_task("asking the LLM about validation messages", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=f"asking the LLM about validation messages ({done}/{total})")

        return fit_llm(router, data, params, answers=answers, seed=seed, progress=progress)


def fit_summary(result: Any) -> dict[str, Any]:
    """What fitting the LLM tier did, as JSON (``llm fit --json``, ``train --llm --json``)."""
    return {"reached": result.reached, "asked": result.asked, "new_calls": result.new_calls,
            "policy": json.loads(result.policy.model_dump_json())}


def print_fit(result: Any) -> None:
    """What fitting did, in a few lines."""
    p = result.policy
    out.print(f"[bold]llm[/]: asked {result.asked} of {result.reached} validation messages that reach it "
              f"({result.new_calls} new calls, the rest replayed from the recording)")
    out.print(f"  acceptance policy: {p.describe()}")
    g = p.gate
    out.print(f"  gate on the policy's probability: threshold {g.threshold:.3f}"
              + (f", review band below {g.flag_threshold:.3f}" if g.flag_threshold else ""))


def register(app: typer.Typer) -> None:
    """Add the ``llm`` command group to ``app``."""
    llm_app = typer.Typer(help="The LLM tier: fit its acceptance policy on validation data, show it.", no_args_is_help=True)
    app.add_typer(llm_app, name="llm")

    @llm_app.command("fit")
    def fit(
        model: Annotated[Path, typer.Option("--model", help="trained model directory")],
        data: Annotated[Path, typer.Option("--data", help="the dataset it was trained on (its validation split is used)")],
        llm: LLMOpt = None,
        llm_model: LLMModelOpt = None,
        llm_base_url: LLMUrlOpt = None,
        calibration: CalibrationOpt = None,
        accept_accuracy: AcceptOpt = None,
        seed: Annotated[int, typer.Option(help="seed of the validation sample")] = 13,
        out_dir: Annotated[Optional[Path], typer.Option("--out", help="write the model here (default: update --model in place)")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print the fitted policy as JSON")] = False,
    ) -> None:
        """Add an LLM tier to a trained model (or refit its own) and fit the acceptance policy.

        The LLM is asked about up to --llm-calibration validation messages that the model's tiers do
        not accept; its answers are recorded in the model directory (llm_fit_answers.jsonl), so a
        refit replays them. The policy decides, per message, whether the LLM's answer or the
        classifier's guess is more likely right, and its gate is fitted on that probability.
        """
        from frontdesk.cascade.router import Router
        from frontdesk.data.dataset import Dataset
        from frontdesk.llm.fit import ANSWERS_FILE

        router = Router.load(model)
        extra = {"calibration_size": calibration, "accept_accuracy": accept_accuracy}
        if llm is None:
            if router.llm_tier is None:
                raise ConfigError("the model has no LLM tier yet: give --llm local|openai|anthropic (and --llm-model / "
                                  "--llm-base-url)", field="--llm")
            if llm_model or llm_base_url:
                raise ConfigError("--llm-model / --llm-base-url need --llm local|openai|anthropic", field="--llm")
            params: dict[str, Any] = {k: v for k, v in extra.items() if v is not None}
        else:
            params = llm_params(llm, llm_model, llm_base_url, **extra) or {}
        target = (out_dir or model).resolve()
        answers = target / ANSWERS_FILE
        if out_dir is not None and (model / ANSWERS_FILE).is_file() and not answers.is_file():
            answers.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(model / ANSWERS_FILE, answers)  # replay what the source model already asked
        result = fit_with_progress(router, Dataset.load(data), params, answers, seed)
        save_model(result.router, target, carry_from=target, carry=(ANSWERS_FILE,))
        if as_json:
            out.print_json(json.dumps({"model": str(target), **fit_summary(result)}))
            return
        print_fit(result)
        out.print(f"saved to {target}")

    @llm_app.command("show")
    def show(
        model: Annotated[Path, typer.Option("--model", help="model directory")],
        as_json: Annotated[bool, typer.Option("--json", help="print the policy as JSON")] = False,
    ) -> None:
        """Show the model's LLM tier and the acceptance policy it runs with."""
        from frontdesk.cascade.router import Router

        router = Router.load(model)
        tier = router.llm_tier
        policy = router.active_llm_policy
        if as_json:
            out.print_json(json.dumps({
                "llm_tier": tier.info() if tier is not None else None, "policy_in_force": router.llm_policy_note,
                "saved_policy": json.loads(router.llm_policy.model_dump_json()) if router.llm_policy is not None else None}))
            return
        if tier is None:
            console.print("no LLM tier: add one with `frontdesk llm fit --model … --data … --llm …`")
        else:
            info = tier.info()
            out.print(f"LLM tier {tier.name!r}: {info.get('provider')}:{info.get('model')}, top-{info.get('candidates_k')} candidates")
        out.print(f"acceptance: {router.llm_policy_note}")
        if policy is not None:
            out.print(f"  {policy.describe()}")
        elif router.llm_policy is not None:
            out.print(f"  saved policy (not in force): {router.llm_policy.describe()}")
