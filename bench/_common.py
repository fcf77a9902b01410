"""Helpers shared by the benchmark scripts: dataset paths, machine facts, BENCHMARKS.md sections."""

from __future__ import annotations

import os
import platform
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"
README = ROOT / "README.md"


def data_root(*names: str) -> Path:
    """Datasets live in $FRONTDESK_DATA, default ../shared/datasets next to the repository; exits saying how to
    fetch them when the folder (or one of the named datasets in it) is missing."""
    root = Path(os.environ.get("FRONTDESK_DATA") or ROOT.parent / "shared" / "datasets")
    missing = [n for n in names if not (root / n / "train.jsonl").is_file()]
    if not root.is_dir() or missing:
        wanted = missing or ["banking77", "clinc150", "snips"]
        fetch = "; ".join(f"frontdesk datasets fetch {n} --dest {root}" for n in wanted)
        sys.exit(f"no {'datasets' if not root.is_dir() else ', '.join(missing)} at {root}: fetch them from their public "
                 f"sources with `{fetch}`, or set FRONTDESK_DATA to the folder holding banking77/, clinc150/, snips/ "
                 "(see `frontdesk datasets list`)")
    return root


def dataset_dir(name: str) -> Path:
    """``$FRONTDESK_DATA/name``; exits with the `frontdesk datasets fetch` command when it is not there."""
    return data_root(name) / name


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024**2:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def stamp(command: str) -> str:
    return f"Machine: {machine()}. Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Command: `{command}`."


def write_section(path: Path, name: str, body: str) -> None:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` (append if absent)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text and end in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _m: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)
