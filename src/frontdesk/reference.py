"""Markdown references generated from the pydantic models, so the documentation cannot drift from the code.

:func:`config_reference` renders every ``frontdesk.yaml`` key (``docs/config.md``) and
:func:`training_reference` the training-side settings — objective, gate, router and each tier's
parameters (``docs/training.md``): key path, type, default and the field's description. A test
compares both files with these functions; ``frontdesk reference config|training --out FILE`` rewrites them.
"""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Literal

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

REGENERATE = "frontdesk reference {kind} --out docs/{kind}.md"
"""The command that rewrites a generated page (``kind``: config, training, cli)."""

_REQUIRED = object()


@dataclass(frozen=True)
class Row:
    """One documented key: its dotted path, type, default and description; ``section`` rows head nested models."""

    path: str
    type: str
    default: str
    description: str
    section: bool = False


def _model_in(annotation: Any) -> tuple[type[BaseModel] | None, str]:
    """The pydantic model an annotation holds and how: ``""`` (the model, maybe optional), ``"map"`` (dict of
    models) or ``"list"`` (list of models); (None, "") for anything else."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, ""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _model_in(inner[0]) if len(inner) == 1 else (None, "")
    if origin is dict and len(args) == 2:
        model, how = _model_in(args[1])
        return (model, "map") if model is not None and how == "" else (None, "")
    if origin is list and args:
        model, how = _model_in(args[0])
        return (model, "list") if model is not None and how == "" else (None, "")
    return None, ""


_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null", Any: "any"}


def type_name(annotation: Any) -> str:
    """A YAML-minded name for a type annotation: ``integer``, ``list of string``, ``one of: a, b`` …"""
    if annotation in _NAMES:
        return _NAMES[annotation]
    if isinstance(annotation, type) and issubclass(annotation, PurePath):
        return "path"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is Literal:
        return "one of: " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        inner = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(inner) + (" or null" if type(None) in args else "")
    if origin is list:
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is tuple:
        return "pair of " + type_name(args[0]) if len(args) == 2 and args[0] == args[1] else "list"
    if origin is dict:
        return f"mapping of {type_name(args[0])} → {type_name(args[1])}" if args else "mapping"
    return getattr(annotation, "__name__", str(annotation))


def _bounds(field: FieldInfo) -> str:
    """The numeric and length constraints of a field (``≥ 1``, ``0 – 1``, ``at least 1 item``)."""
    low = high = None
    parts = []
    for m in field.metadata:
        if isinstance(m, Ge):
            low = f"≥ {m.ge}"
        elif isinstance(m, Gt):
            low = f"> {m.gt}"
        elif isinstance(m, Le):
            high = f"≤ {m.le}"
        elif isinstance(m, Lt):
            high = f"< {m.lt}"
        elif isinstance(m, MinLen) and m.min_length:
            parts.append(f"at least {m.min_length}")
        elif isinstance(m, MaxLen):
            parts.append(f"at most {m.max_length}")
    if low and high and low.startswith("≥") and high.startswith("≤"):
        parts.insert(0, f"{low[2:]} – {high[2:]}")
    else:
        parts[:0] = [b for b in (low, high) if b]
    return ", ".join(parts)


def format_value(value: Any) -> str:
    """A default as it would be written in YAML (flow style, one line)."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", exclude_defaults=True)  # what differs from the class's own defaults
    if isinstance(value, PurePath):
        value = str(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False) if value == "" or value.strip() != value else value
    if isinstance(value, (list, tuple, dict)):
        items = [v.model_dump(mode="json", exclude_defaults=True) if isinstance(v, BaseModel) else v for v in value] \
            if isinstance(value, (list, tuple)) else value
        return json.dumps(to_jsonable_python(items), ensure_ascii=False, separators=(", ", ": "))
    return repr(value)


def _default_of(field: FieldInfo) -> Any:
    if field.default_factory is not None:
        return field.default_factory()  # type: ignore[call-arg]
    if field.default is PydanticUndefined:
        return _REQUIRED
    return field.default


def first_line(doc: str | None) -> str:
    """The first paragraph of a docstring, on one line, with reStructuredText roles and literals made Markdown."""
    text = " ".join(inspect.cleandoc(doc or "").split("\n\n", 1)[0].split())
    text = re.sub(r":\w+:`~?(?:[\w.]+\.)?(\w+)`", r"`\1`", text)
    return text.replace("``", "`")


def model_rows(model: type[BaseModel], prefix: str = "", *, instance: BaseModel | None = None,
               expand: dict[str, tuple[type[BaseModel], str]] | None = None,
               placeholders: dict[str, str] | None = None) -> Iterator[Row]:
    """Rows for every field of ``model`` and, recursively, of the models it nests.

    ``instance``: the default object whose values are the defaults (a nested model's default may differ
    from its class defaults). ``expand``: dotted paths typed as free mappings that really hold a model
    (``router`` → RouterSettings; ``gates`` → ``<tier>`` → GatePolicy). ``placeholders``: the name shown for
    the keys of a mapping of models (``labels`` → ``<label>``; default ``<name>``).
    """
    expand = expand or {}
    placeholders = placeholders or {}
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        default = getattr(instance, name) if instance is not None else _default_of(field)
        nested, how = _model_in(field.annotation)
        if path in expand:
            nested, key = expand[path]
            how = "map" if key else ""
            placeholders = {**placeholders, path: key}
        bounds = _bounds(field)
        kind = type_name(field.annotation) + (f" ({bounds})" if bounds else "")
        desc = " ".join((field.description or "").split())
        if nested is None:
            yield Row(path, kind, "required" if default is _REQUIRED else format_value(default), desc)
            continue
        shown = {"": "mapping", "map": "mapping of name → mapping", "list": "list of mappings"}[how]
        if type(None) in typing.get_args(field.annotation):
            shown += " or null"
        if default is _REQUIRED:
            section_default = "required"
        elif how == "map" and isinstance(default, dict) and default:
            section_default = "{" + ", ".join(f"{k}: …" for k in default) + "}"  # entries are documented below
        else:
            section_default = format_value(default) if how or default is None else ""
        yield Row(path, shown, section_default, desc or first_line(nested.__doc__), section=True)
        if how == "map":
            child = f"{path}.{placeholders.get(path, '<name>')}."
        elif how == "list":
            child = f"{path}[]."
        else:
            child = f"{path}."
        sub_instance = default if how == "" and isinstance(default, BaseModel) else None
        yield from model_rows(nested, child, instance=sub_instance, expand=expand, placeholders=placeholders)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def md_text(text: str) -> str:
    """Prose for a table cell: ``<name>`` outside code spans is escaped so Markdown does not take it for HTML."""
    parts = text.split("`")
    return _cell("`".join(p if i % 2 else re.sub(r"<(?=[A-Za-z/!?])", "&lt;", p) for i, p in enumerate(parts)))


def _code(text: str) -> str:
    if not text:
        return ""
    tick = "``" if "`" in text else "`"
    pad = " " if tick == "``" else ""
    return f"{tick}{pad}{_cell(text)}{pad}{tick}"


def table(rows: list[Row]) -> str:
    """A Markdown table of rows (key, type, default, description)."""
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    for r in rows:
        key = f"**{_code(r.path)}**" if r.section else _code(r.path)
        default = "*required*" if r.default == "required" else _code(r.default)
        lines.append(f"| {key} | {md_text(r.type)} | {default} | {md_text(r.description)} |")
    return "\n".join(lines)


def _config_expand() -> dict[str, tuple[type[BaseModel], str]]:
    from frontdesk.cascade.router import RouterSettings
    from frontdesk.gating.gate import GatePolicy

    return {"router": (RouterSettings, ""), "gates": (GatePolicy, "<tier>")}


_PLACEHOLDERS = {"labels": "<label>", "actions": "<action>", "extract.ids": "<field>"}


def config_rows() -> list[Row]:
    """Every ``frontdesk.yaml`` key, in the order of :class:`~frontdesk.config.FrontdeskConfig`."""
    from frontdesk.config import FrontdeskConfig

    return list(model_rows(FrontdeskConfig, expand=_config_expand(), placeholders=_PLACEHOLDERS))


def _header(title: str, kind: str, intro: str) -> list[str]:
    return [f"# {title}", "", f"<!-- generated by `{REGENERATE.format(kind=kind)}` from the pydantic models; "
            "do not edit by hand -->", "", intro, ""]


def config_reference() -> str:
    """``docs/config.md``: every key of ``frontdesk.yaml``, one section per top-level key that nests others."""
    rows = config_rows()
    top = [r for r in rows if "." not in r.path and "[" not in r.path and not r.section]
    out = _header(
        "`frontdesk.yaml` reference", "config",
        "`frontdesk init` writes a commented starter file. Every section is optional except `model`. Unknown keys are "
        "errors and values are validated; an error names the field (`server.port: Input should be less than or equal "
        "to 65535`). Relative paths (`model`, `tools`, `llm.record`, `llm.replay`, `jsonl://` sinks, `sqlite:///` "
        "stores) resolve against the file's folder. The service re-reads the file when it changes "
        "(`server.watch_config`) or on `POST /v1/admin/reload`; a file that does not validate is not applied. "
        "*Key* paths use `<label>`, `<tier>`, … for names you choose and `[]` for list items.",
    )
    out += ["## Top-level keys", "", table(top), ""]
    for r in rows:
        if not r.section or "." in r.path:
            continue
        out += [f"## `{r.path}`", "", table([s for s in rows if s.path == r.path or s.path.startswith((r.path + ".", r.path + "["))]), ""]
    return "\n".join(out).rstrip() + "\n"


def _tier_sections() -> list[tuple[str, type[BaseModel], str]]:
    from frontdesk.tiers.clauses import ClauseParams
    from frontdesk.tiers.encoder import EncoderParams
    from frontdesk.tiers.ensemble import EnsembleParams
    from frontdesk.tiers.linear import LinearParams
    from frontdesk.tiers.rules import RulesParams

    return [
        ("linear", LinearParams, "The fast first tier: TF-IDF blocks and a linear model (see [encoder.md](encoder.md) "
         "for the other tiers). Multi-intent data (any example with several labels) trains one-vs-rest with "
         "calibrated per-label probabilities automatically."),
        ("encoder", EncoderParams, "A sentence encoder (all-MiniLM-L6-v2 by default) with a fine-tuned, logistic-"
         "regression or nearest-neighbour head ([encoder.md](encoder.md)). Single-label data only."),
        ("ensemble", EnsembleParams, "Several calibrated tiers voting ([encoder.md](encoder.md#ensemble))."),
        ("clauses", ClauseParams, "Multi-intent messages: split into clauses, classify each, decode the intent set "
         "jointly ([encoder.md](encoder.md#multi-intent-the-clauses-tier))."),
        ("rules", RulesParams, "Keyword/regex guardrails baked into the model (the same rules as `frontdesk.yaml`'s "
         "`rules:`, which need no retraining)."),
    ]


def training_reference() -> str:
    """``docs/training.md``: the objective, gate and router settings and every tier kind's parameters."""
    from frontdesk.cascade.router import RouterSettings
    from frontdesk.gating.gate import GatePolicy, Objective
    from frontdesk.gating.oos import OOSOptions

    out = _header(
        "Training settings reference", "training",
        "What `frontdesk train` / `Router.train` fit and how to change it. The objective decides how each gate's "
        "thresholds are fitted on the validation split; the gate and router settings are saved in the model's "
        "`frontdesk.json` and can be overridden at run time in `frontdesk.yaml` (`gates.<tier>`, `router`: see "
        "[config.md](config.md)); the tier parameters are fixed at training time. The LLM tier's settings are "
        "the `llm:` section of [config.md](config.md#llm).",
    )
    sections: list[tuple[str, type[BaseModel], str]] = [
        ("Objective", Objective, "`Router.train(..., objective=Objective(...))`; on the command line `--target-accuracy`, "
         "`--max-escalation`, `--per-label-thresholds`, `--flag-accuracy`, `--guarantee`, `--guarantee-window`, "
         "`--on-uncertified`. With neither `target_accuracy` nor `max_escalation`, thresholds are fitted for at most "
         "20 % escalation."),
        ("GatePolicy", GatePolicy, "One per tier, fitted by training and stored under `gates` in the model's "
         "`frontdesk.json`; override any field at run time with `gates.<tier>.<field>` in `frontdesk.yaml`. "
         "Single-label: `threshold` and `label_thresholds` are escalation thresholds on the top label's calibrated "
         "probability. Multi-label: `decision_threshold` and `label_thresholds` decide which labels are in the set, "
         "`threshold` and `flag_threshold` apply to the set's confidence."),
        ("RouterSettings", RouterSettings, "`Router.train(..., settings=RouterSettings(...))`; `--fallback` and "
         "`--unknown-label` on the command line; `router:` in `frontdesk.yaml` overrides them at run time."),
        ("OOSOptions", OOSOptions, "Out-of-scope detection: `Router.train(..., oos=OOSOptions(...))`; on the command "
         "line `--oos/--no-oos`, `--oos-budget`, `--oos-budget-on`, `--oos-folds`. Each calibrated single-label tier "
         "gets a detector fitted on validation; a message it calls out of scope goes to the next detector tier, and "
         "at the last one to `unknown_label` (or human review with reason 'out of scope'). Override the fitted "
         "threshold at run time with `gates.<tier>.oos_threshold`, or switch a detector off with "
         "`gates.<tier>.oos_detection: false`."),
    ]
    for title, model, intro in sections:
        out += [f"## `{title}`", "", intro, "", table(list(model_rows(model))), ""]
    out += ["## Tier parameters", "",
            "`frontdesk train --tiers KIND[,KIND…] --tier-param KIND.KEY=VALUE` (values are read as YAML: numbers, "
            "lists, mappings) or `Router.train(..., tier_params={KIND: {KEY: VALUE}})`. An unknown key is an error "
            "that names it.", ""]
    for kind, model, intro in _tier_sections():
        out += [f"### `{kind}` ({model.__name__})", "", intro, "", table(list(model_rows(model))), ""]
    return "\n".join(out).rstrip() + "\n"


def missing_descriptions(rows: list[Row]) -> list[str]:
    """Paths of documented keys that have no description (every key a user can set should say what it does)."""
    return [r.path for r in rows if not r.description.strip()]


def training_rows() -> list[Row]:
    """The rows of every model :func:`training_reference` documents."""
    from frontdesk.cascade.router import RouterSettings
    from frontdesk.gating.gate import GatePolicy, Objective
    from frontdesk.gating.oos import OOSOptions

    rows: list[Row] = []
    for model in (Objective, GatePolicy, RouterSettings, OOSOptions, *(m for _, m, _ in _tier_sections())):
        rows += model_rows(model)
    return rows
