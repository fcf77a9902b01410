"""``frontdesk datasets …``: list, show, fetch and convert the public benchmark datasets.

Wired into the main CLI with :func:`register`. ``fetch`` downloads a dataset's pinned upstream files
(GitHub, at a fixed commit), verifies them and writes ``DEST/NAME`` in frontdesk's layout; ``convert``
does the same from files downloaded by hand (air-gapped machines); ``list`` and ``show`` say what each
dataset is, its licence and where it comes from. See :mod:`frontdesk.data.fetch`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from frontdesk.cli.common import console, out, progress_bar
from frontdesk.data import fetch as registry

datasets_app = typer.Typer(help="Public benchmark datasets (BANKING77, CLINC150, SNIPS, MixSNIPS): fetch from their "
                                "pinned public sources, verify, convert.", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help=f"dataset name: {', '.join(registry.DATASETS)}")]
DestOpt = Annotated[Optional[Path], typer.Option("--dest", help=f"folder to put NAME/ in (default ${registry.ENV_DATA} or ./datasets)")]
ForceOpt = Annotated[bool, typer.Option("--force", help="replace an existing DEST/NAME folder")]


def register(app: typer.Typer) -> None:
    """Add the ``datasets`` sub-command group to ``app``."""
    app.add_typer(datasets_app, name="datasets")


def _sizes(spec: registry.DatasetSpec) -> str:
    return " / ".join(f"{spec.sizes[s]:,}" for s in registry.SPLITS)


@datasets_app.command("list")
def list_datasets(
    dest: DestOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per dataset")] = False,
) -> None:
    """The known datasets: examples (train / validation / test), labels, licence, source, whether fetched."""
    root = dest if dest is not None else registry.default_dest()
    rows = []
    for spec in registry.DATASETS.values():
        rows.append({"name": spec.name, "title": spec.title, "examples": dict(spec.sizes), "labels": spec.n_labels,
                     "download_bytes": spec.download_size, "license": spec.license, "source": spec.source_url,
                     "fetched": (root / spec.name / "train.jsonl").is_file()})
    if as_json:
        for row in rows:
            out.print(json.dumps(row), markup=False)
        return
    table = Table(show_header=True, header_style="bold")
    for col in ("name", "examples (train / val / test)", "labels", "download", "licence", "source", "fetched"):
        table.add_column(col)
    for spec, row in zip(registry.DATASETS.values(), rows):
        table.add_row(spec.name, _sizes(spec), str(spec.n_labels), f"{spec.download_size / 1e6:.1f} MB", spec.license,
                      f"{spec.repo}@{spec.commit[:12]}", "yes" if row["fetched"] else "no")
    out.print(table)
    out.print(f"folder: {root}  (fetch one with `frontdesk datasets fetch NAME`)", markup=False)


@datasets_app.command("show")
def show(name: NameArg) -> None:
    """One dataset in full: source, licence, the pinned files (URL, SHA-256) and the conversion rules."""
    spec = registry.get_spec(name)
    lines = [f"{spec.name}: {spec.title}",
             f"source:   {spec.source_url}",
             f"examples: {_sizes(spec)} (train / validation / test), {spec.n_labels} labels",
             f"licence:  {spec.license}", *(f"          {n}" for n in spec.license_notes),
             f"cite:     {spec.cite}",
             "files (URL -> path inside a --from folder, SHA-256):"]
    lines += [f"  {f.url()} -> {f.local}  {f.sha256}" for f in spec.files]
    lines += ["conversion:", *(f"  - {d}" for d in spec.decisions)]
    out.print("\n".join(lines), markup=False)


@datasets_app.command("fetch")
def fetch(
    name: NameArg,
    dest: DestOpt = None,
    force: ForceOpt = False,
    base_url: Annotated[Optional[str], typer.Option(
        "--base-url", help=f"a mirror laid out like {registry.DEFAULT_BASE_URL} (OWNER/REPO/COMMIT/PATH)")] = None,
) -> None:
    """Download NAME's pinned files, verify their checksums, convert; prints the new folder."""
    spec = registry.get_spec(name)
    console.print(f"fetching {spec.name} ({spec.download_size / 1e6:.1f} MB, {spec.license}) from "
                  f"{base_url or registry.DEFAULT_BASE_URL}/{spec.repo}@{spec.commit[:12]}", markup=False)
    with progress_bar() as bar:
        task = bar.add_task(spec.name, total=1.0)
        path = registry.fetch_dataset(spec, dest, base_url=base_url, force=force,
                                      progress=lambda step, done: bar.update(task, description=step, completed=done))
    console.print(f"licence: {spec.license} (see {path}/SOURCE.md)", markup=False)
    out.print(str(path), markup=False)


@datasets_app.command("convert")
def convert(
    name: NameArg,
    source: Annotated[Path, typer.Option("--from", help="folder holding the files listed by `frontdesk datasets show NAME`")],
    dest: DestOpt = None,
    force: ForceOpt = False,
) -> None:
    """Convert files downloaded by hand (verified like fetch); prints the new folder."""
    path = registry.convert_dataset(name, source, dest, force=force)
    out.print(str(path), markup=False)
