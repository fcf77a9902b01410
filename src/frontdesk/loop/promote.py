"""Promotion: a retrained candidate replaces the serving model only when its report says it is not worse.

The swap is atomic (see :mod:`frontdesk.common.atomic`) and the previous model is kept as
``<target>.previous-<UTC timestamp>``, so a bad promotion is one rename away from undone.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

from pydantic import ValidationError

from frontdesk.cascade.router import MANIFEST, Router
from frontdesk.common.atomic import replace_directory, staging_path
from frontdesk.errors import FrontdeskError, ModelError
from frontdesk.loop.retrain import REPORT_FILE, read_report


class PromotionError(FrontdeskError):
    """A candidate model may not replace the serving model; the message says why and how to override."""

    def __init__(self, message: str, *, candidate: str | Path | None = None) -> None:
        super().__init__(message)
        self.candidate = Path(candidate) if candidate is not None else None


def previous_versions(target_dir: str | Path) -> list[Path]:
    """The ``<target>.previous-<timestamp>`` copies promote left behind, newest first."""
    target = Path(target_dir)
    if not target.parent.is_dir():
        return []
    found = [p for p in target.parent.glob(f"{target.name}.previous-*") if p.is_dir()]
    return sorted(found, key=lambda p: p.name, reverse=True)


def promote(candidate_dir: str | Path, target_dir: str | Path, *, force: bool = False) -> Path:
    """Put the candidate model in place of ``target_dir``; returns ``target_dir``.

    Refused (:class:`PromotionError`) unless ``force`` when the candidate's ``retrain_report.json``
    is missing or unreadable, says ``better: false``, or compares against another model than the
    one now in ``target_dir`` (its ``trained_at`` differs). A candidate that is not a loadable model
    directory is refused even with ``force`` (:class:`~frontdesk.errors.ModelError`).

    The swap: the candidate is copied to a temporary sibling of ``target_dir`` (same file system),
    then swapped in. On Linux the two directories are exchanged atomically (``renameat2`` with
    ``RENAME_EXCHANGE``), so ``target_dir`` always holds a complete model; elsewhere the old
    directory is renamed away and the new one renamed in (two renames: a reader may briefly find
    no directory, never a half-copied one). The old model is kept as
    ``<target_dir>.previous-<UTC timestamp>`` (see :func:`previous_versions`).
    """
    candidate, target = Path(candidate_dir), Path(target_dir)
    if candidate.resolve() == target.resolve():
        raise PromotionError(f"the candidate {candidate} is already the target directory: nothing to promote",
                             candidate=candidate)
    Router.load(candidate)  # a broken candidate is never promoted, force or not
    override = "pass --force (promote(..., force=True)) to promote it anyway"
    try:
        report = read_report(candidate)
    except (ValidationError, ValueError) as exc:
        if not force:
            raise PromotionError(f"{candidate / REPORT_FILE} is not a valid retrain report ({str(exc).splitlines()[0]}): "
                                 f"re-run `frontdesk retrain`, or {override}", candidate=candidate) from exc
        report = None
    if report is None and not force and not (candidate / REPORT_FILE).is_file():
        raise PromotionError(f"{candidate} has no {REPORT_FILE}: nothing shows it is better than the serving model; "
                             f"create it with `frontdesk retrain --model {target} … --out {candidate}`, or {override}",
                             candidate=candidate)
    if report is not None and not force:
        if not report.better:
            raise PromotionError(f"{candidate} is not better than {report.old_model} on {report.evaluated_on}: "
                                 f"{'; '.join(report.reasons)} (rule: {report.rule}); fix the training data and "
                                 f"retrain, or {override}", candidate=candidate)
        current = _trained_at(target)
        if current is not None and report.baseline_trained_at is not None and current != report.baseline_trained_at:
            raise PromotionError(f"the report compares {candidate} with a model trained at {report.baseline_trained_at}, "
                                 f"but {target} now holds one trained at {current}: retrain against the current "
                                 f"model, or {override}", candidate=candidate)
    return _swap_in(candidate, target)


def _trained_at(model_dir: Path) -> str | None:
    try:
        manifest = json.loads((model_dir / MANIFEST).read_text(encoding="utf-8"))
        value = manifest.get("meta", {}).get("trained_at")
        return str(value) if value is not None else None
    except (OSError, ValueError, AttributeError):
        return None


def _swap_in(candidate: Path, target: Path) -> Path:
    """Copy the candidate beside the target and swap it in, keeping the old model as ``.previous-<time>``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    previous = target.parent / f"{target.name}.previous-{stamp}"
    n = 1
    while previous.exists():
        previous = target.parent / f"{target.name}.previous-{stamp}-{n}"
        n += 1
    target.parent.mkdir(parents=True, exist_ok=True)
    incoming = staging_path(target, "incoming")
    try:
        shutil.copytree(candidate, incoming)
        replace_directory(incoming, target, keep_old_as=previous)
    except OSError as exc:
        raise ModelError(f"could not swap the model into place ({exc}); the previous model is unchanged", path=target) from exc
    finally:
        if incoming.exists():
            shutil.rmtree(incoming, ignore_errors=True)
    return target


__all__ = ["PromotionError", "previous_versions", "promote"]
