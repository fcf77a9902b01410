"""``frontdesk plugins`` (what tiers, providers and actions exist, and from where) and ``frontdesk add-tier``
(add a tier of any kind — a plug-in's included — to a trained model)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from frontdesk.cli.common import console, out, parse_tier_params, save_model
from frontdesk.errors import ConfigError, FrontdeskError


def _describe(group: str, value: Any) -> str:
    """One line about a loaded plug-in: a tier's role and needs, a provider's description, an action's doc."""
    if group == "frontdesk.tiers":
        needs = ", ".join(sorted(value.needs)) or "nothing"
        return f"role {value.role}; needs {needs}" + ("; calibrated" if value.calibrated else "")
    if group == "frontdesk.providers":
        return value.description or ""
    return (value.__doc__ or "").strip().splitlines()[0] if getattr(value, "__doc__", None) else ""


def plugin_rows(check: bool) -> list[dict[str, Any]]:
    """Every tier kind, provider and action with where it comes from; with ``check`` each is loaded
    (a failure becomes its ``error``, naming the package)."""
    from frontdesk.plugins import registries

    rows = []
    for group, registry in registries().items():
        for src in registry.sources():
            row: dict[str, Any] = {"group": group, "name": src.name, "origin": src.origin, "target": src.target}
            if check:
                try:
                    row["about"] = _describe(group, registry.get(src.name))
                except (FrontdeskError, ImportError) as exc:
                    row["error"] = str(exc)
            rows.append(row)
    return rows


def register(app: typer.Typer) -> None:
    """Add ``plugins`` and ``add-tier`` to ``app``."""

    @app.command("plugins")
    def plugins(
        check: Annotated[bool, typer.Option("--check", help="load each one: show a tier's role and needs, report what fails to import")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="one JSON list")] = False,
    ) -> None:
        """List the tier kinds, LLM providers and actions: built in, registered, or from installed packages
        (entry points frontdesk.tiers / frontdesk.providers / frontdesk.actions). Exit code 1 with --check
        when one fails to load."""
        rows = plugin_rows(check)
        if as_json:
            out.print_json(json.dumps(rows))
        else:
            table = Table()
            for col in ("group", "name", "from", *(("about",) if check else ())):
                table.add_column(col)
            for r in rows:
                about = f"[red]{escape(r['error'])}[/]" if "error" in r else escape(r.get("about", ""))
                table.add_row(r["group"].removeprefix("frontdesk."), r["name"], escape(r["origin"]), *((about,) if check else ()))
            out.print(table)
        if any("error" in r for r in rows):
            raise typer.Exit(1)

    @app.command("add-tier")
    def add_tier(
        model: Annotated[Path, typer.Option("--model", help="trained model directory")],
        kind: Annotated[str, typer.Option("--tier", help="tier kind: built in or a plug-in (frontdesk plugins)")],
        data: Annotated[Optional[Path], typer.Option(
            "--data", help="train the tier on this dataset (the model's own data; a calibrated tier's gate is fitted on its "
                           "validation split); without it the tier only gets the model's labels, descriptions and examples")] = None,
        name: Annotated[Optional[str], typer.Option(help="the tier's name in the cascade (default: its kind)")] = None,
        tier_param: Annotated[Optional[list[str]], typer.Option("--tier-param", help="a tier setting KIND.KEY=VALUE, repeatable")] = None,
        out_dir: Annotated[Optional[Path], typer.Option("--out", help="write the model here (default: update --model in place)")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print the new cascade as JSON")] = False,
    ) -> None:
        """Add a tier to a trained model where its role puts it (guardrail → model → llm → human); a tier of
        the same name is replaced. The LLM tier has its own command: frontdesk llm fit."""
        from frontdesk.cascade.router import Router
        from frontdesk.data.dataset import Dataset
        from frontdesk.llm.fit import ANSWERS_FILE
        from frontdesk.tiers.base import tier_class

        cls = tier_class(kind)
        if cls.role == "llm":
            raise ConfigError(f"tier kind {kind!r} has role llm: add it with `frontdesk llm fit --model … --data … --llm …` "
                              "(its acceptance policy is fitted there)", field="--tier")
        router = Router.load(model)
        params = parse_tier_params(tier_param or [], [kind]).get(kind)
        tier = cls(name or kind, params) if params is not None else cls(name or kind)
        dataset = Dataset.load(data) if data is not None else None
        with console.status(f"adding tier {tier.name}" + (f" (training on {data})" if data is not None else "")):
            new = router.with_tier(tier, data=dataset)
        new.meta = {**new.meta, "tiers": {**new.meta.get("tiers", {}), tier.name: tier.info()}}
        target = out_dir or model
        save_model(new, target, carry_from=model, carry=(ANSWERS_FILE,))
        cascade = [{"name": t.name, "kind": t.kind, "role": t.role, "gate": new.gates[t.name].model_dump() if t.name in new.gates else None}
                   for t in new.tiers]
        if as_json:
            out.print_json(json.dumps({"model": str(target), "tiers": cascade}))
            return
        out.print("cascade: " + " → ".join(f"{t['name']} ({t['role']})" for t in cascade) + " → human review")
        out.print(f"saved to {target}")
