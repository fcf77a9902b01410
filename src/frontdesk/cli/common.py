"""What every ``frontdesk`` command shares: the consoles, the progress bar, and the options and parsers
several commands take (objective, LLM tier, tier parameters, dates)."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from frontdesk.errors import ConfigError, validation_message
from frontdesk.gating.gate import Objective

console = Console(stderr=True, soft_wrap=True, highlight=False)
"""Messages, progress and errors (stderr)."""
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 120)
"""Results (stdout)."""


def progress_bar() -> Progress:
    """The one progress bar of the CLI (on stderr; hidden when stderr is not a terminal)."""
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                    TimeElapsedColumn(), console=console, transient=True, disable=not console.is_terminal)


def objective(target_accuracy: float | None, max_escalation: float | None, per_label: bool, flag_accuracy: float | None,
              **more: Any) -> Objective:
    """The threshold-fitting objective from the train options (``more``: the certified-gate options
    ``guarantee``, ``guarantee_window``, ``on_uncertified``, and ``defer``; None values are left at their defaults)."""
    extra = {k: v for k, v in more.items() if v is not None}
    try:
        return Objective(target_accuracy=target_accuracy, max_escalation=max_escalation, per_label=per_label,
                         flag_accuracy=flag_accuracy, **extra)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc), field="objective") from exc


LLMOpt = Annotated[Optional[str], typer.Option("--llm", help="add an LLM tier: local | llama-cpp | openai | anthropic | a plug-in provider")]
LLMModelOpt = Annotated[Optional[str], typer.Option("--llm-model", help="LLM model id (default per provider)")]
LLMUrlOpt = Annotated[Optional[str], typer.Option("--llm-base-url", help="OpenAI-compatible / Anthropic endpoint")]


def llm_params(provider: str | None, model: str | None, base_url: str | None, **extra: object) -> dict | None:
    """The LLM tier settings given on the command line (None when --llm is not given)."""
    from frontdesk.llm.registry import get_provider, provider_names

    if provider is None:
        if model or base_url:
            raise ConfigError(f"--llm-model / --llm-base-url need --llm {'|'.join(provider_names())}", field="--llm")
        return None
    try:
        get_provider(provider)
    except ConfigError as exc:
        raise ConfigError(str(exc).removeprefix("llm.provider: "), field="--llm") from None
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


def example_dir() -> Path:
    """The hand-written example dataset shipped with the package."""
    return Path(str(resources.files("frontdesk") / "examples" / "support"))


def parse_since(value: str | None, option: str = "--since") -> datetime | None:
    """An ISO date/time option (naive means UTC)."""
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise ConfigError(f"{value!r} is not an ISO 8601 date or time: use e.g. 2025-03-01 or 2025-03-01T12:00:00Z",
                          field=option) from exc
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def open_store(url: str):  # noqa: ANN201 - Store (imported lazily: needs the store extra)
    """Open an existing store; a SQLite path that does not exist is an error, not a new empty database."""
    try:
        from frontdesk.store.store import Store
    except ImportError as exc:  # pragma: no cover - sqlalchemy ships with the store extra
        raise ConfigError("reading a store needs SQLAlchemy: pip install 'frontdesk[store]'", field="--store") from exc
    path: str | None = None
    if "://" not in url:
        path = url
    elif url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///").split("?", 1)[0]
    if path is not None and path not in ("", ":memory:") and not Path(path).expanduser().is_file():
        raise ConfigError(f"no database at {path}: pass the store the service writes to (its frontdesk.yaml "
                          "'store:' URL), e.g. --store sqlite:///frontdesk.db", field="--store")
    return Store(url)


_VALUE_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "path": "PATH", "file": "FILE", "directory": "DIR",
                "bool": "BOOLEAN", "datetime": "DATETIME"}


def plain_help_metavars() -> None:
    """Show option values in help the click way (``--model PATH``, ``--limit INTEGER``), not as typer's Python
    types (``<path>``, ``<str>``, ``<list[str]>``), which crowd every help screen."""
    from typer.core import _TyperParameter

    if getattr(_TyperParameter.display_type, "_frontdesk", False):
        return
    typed = _TyperParameter.display_type

    def display_type(self, ctx):  # noqa: ANN001, ANN202 - typer's signature
        label = typed(self, ctx).strip("<>")
        inner = label[5:-1] if label.startswith("list[") else label
        return _VALUE_NAMES.get(inner, inner.upper() if inner.isidentifier() else inner)

    display_type._frontdesk = True  # type: ignore[attr-defined]
    _TyperParameter.display_type = display_type  # type: ignore[method-assign]


def save_model(router: Any, target: Path, *, carry_from: Path | None = None, carry: tuple[str, ...] = ()) -> None:
    """Write ``router`` to ``target`` atomically: saved into a hidden sibling, then swapped in (a reader never
    sees half a model). The files named in ``carry`` that ``carry_from`` holds (e.g. the LLM's recorded
    answers) are copied along; everything else in an old ``target`` goes."""
    import shutil

    from frontdesk.common.atomic import replace_directory, staging_path

    target = target.resolve()
    staged = staging_path(target)
    try:
        router.save(staged)
        for name in carry:
            if carry_from is not None and (carry_from / name).is_file():
                shutil.copyfile(carry_from / name, staged / name)
        replace_directory(staged, target)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
