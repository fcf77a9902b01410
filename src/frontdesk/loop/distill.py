"""Distillation: a fast student tier learns from a bigger teacher model's labels.

The teacher (e.g. an encoder model) labels the training texts plus any unlabelled texts, and the
student trains on those labels. Only the train split changes: validation and test stay gold, so
the student's calibration and gate thresholds are fitted on gold labels, never on the teacher's.

* ``soft`` — the teacher's calibrated distribution from its last calibrated model tier, as one
  weighted row per label with p ≥ 0.05 (renormalised to sum to 1 per text). For logistic
  regression, weighted rows are exactly cross-entropy on the teacher's distribution.
* ``hard`` — the teacher's routed decision: one row per text with its label(s). Texts the teacher
  sends to human review (or to the unknown label) are skipped.

Texts whose teacher confidence is below ``min_confidence`` are skipped in both modes.
``keep_gold`` adds each labelled training text's gold row (its own weight, 1 by default) too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel

from frontdesk.data.dataset import Dataset, Example
from frontdesk.errors import ConfigError, DataError

if TYPE_CHECKING:
    from frontdesk.cascade.router import Router
    from frontdesk.tiers.base import Tier

#: soft labels keep the labels with at least this teacher probability (the top label always)
SOFT_FLOOR = 0.05
_CHUNK = 2048


class DistillReport(BaseModel):
    """What distillation did: how many texts and rows came from the teacher, and what was skipped."""

    mode: Literal["soft", "hard"]
    keep_gold: bool
    min_confidence: float
    teacher_tier: str
    labelled_texts: int
    unlabelled_texts: int
    unlabelled_dropped: int
    teacher_texts: int
    teacher_rows: int
    gold_rows: int
    skipped_review: int
    skipped_low_confidence: int
    teacher_agreement: float | None


@dataclass
class Distilled:
    """The relabelled dataset and the report of how it was made."""

    dataset: Dataset
    report: DistillReport


def distill_dataset(
    teacher: Router,
    data: Dataset,
    unlabelled: Sequence[str] = (),
    mode: Literal["soft", "hard"] = "soft",
    keep_gold: bool = True,
    min_confidence: float = 0.0,
) -> Dataset:
    """A copy of ``data`` whose train split is labelled by ``teacher`` (validation and test stay gold)."""
    return distill(teacher, data, unlabelled, mode=mode, keep_gold=keep_gold, min_confidence=min_confidence).dataset


def distill(
    teacher: Router,
    data: Dataset,
    unlabelled: Sequence[str] = (),
    *,
    mode: Literal["soft", "hard"] = "soft",
    keep_gold: bool = True,
    min_confidence: float = 0.0,
) -> Distilled:
    """Like :func:`distill_dataset`, plus a :class:`DistillReport` (what ``frontdesk train`` records)."""
    if mode not in ("soft", "hard"):
        raise ConfigError(f"unknown distillation mode {mode!r}: use soft or hard", field="distill")
    if not 0.0 <= min_confidence <= 1.0:
        raise ConfigError(f"min_confidence must be in [0, 1], got {min_confidence}", field="distill.min_confidence")
    if not data.train:
        raise DataError("the training split is empty: distillation relabels the training texts")
    tier = _soft_tier(teacher) if mode == "soft" else None
    check_labels(teacher.labels if tier is None else tier.labels_, data)

    labelled = [ex.text for ex in data.train]
    known = set(labelled)
    extra = list(dict.fromkeys(t.strip() for t in unlabelled if t.strip() and t.strip() not in known))
    texts = labelled + extra
    if tier is not None:
        rows, confident, top, skipped_low = _soft_rows(tier, texts, min_confidence)
        skipped_review = 0
    else:
        rows, confident, top, skipped_review, skipped_low = _hard_rows(teacher, texts, set(data.labels), min_confidence)

    train: list[Example] = []
    for i, ex in enumerate(data.train):
        train += rows[i]
        if keep_gold:
            train.append(ex)
    for i in range(len(labelled), len(texts)):
        train += rows[i]
    if not train:
        raise DataError("the teacher labelled no text confidently enough: lower min_confidence, use soft mode or keep the gold labels")
    agree = [top[i] in ex.labels for i, ex in enumerate(data.train) if top[i] is not None]
    report = DistillReport(
        mode=mode, keep_gold=keep_gold, min_confidence=min_confidence,
        teacher_tier=tier.name if tier is not None else "router",
        labelled_texts=len(labelled), unlabelled_texts=len(extra), unlabelled_dropped=len(unlabelled) - len(extra),
        teacher_texts=int(sum(confident)), teacher_rows=sum(len(r) for r in rows),
        gold_rows=len(data.train) if keep_gold else 0, skipped_review=skipped_review, skipped_low_confidence=skipped_low,
        teacher_agreement=float(np.mean(agree)) if agree else None,
    )
    dataset = Dataset(train, list(data.validation), list(data.test), labels=data.labels, descriptions=dict(data.descriptions), name=data.name)
    return Distilled(dataset, report)


def check_labels(teacher_labels: Sequence[str], data: Dataset) -> None:
    """Raise :class:`DataError` unless the teacher knows every training label and no label outside the data's."""
    unknown = sorted(set(teacher_labels) - set(data.labels))
    missing = sorted({label for ex in data.train for label in ex.labels} - set(teacher_labels))
    if unknown or missing:
        parts = ([f"{len(missing)} training label(s) the teacher does not know: {missing[:5]}"] if missing else []) + (
            [f"{len(unknown)} teacher label(s) not in the data: {unknown[:5]}"] if unknown else []
        )
        raise DataError(
            "the teacher's label set does not match the data's (" + "; ".join(parts)
            + "): distil from a teacher trained on the same labels (same labels.txt)"
        )


def _soft_tier(teacher: Router) -> Tier:
    """The teacher's last calibrated model tier (whose probabilities become the soft labels)."""
    calibrated = [t for t in teacher.tiers if t.calibrated]
    if not calibrated:
        raise ConfigError("the teacher has no calibrated model tier to take soft labels from: use hard distillation", field="distill")
    tier = calibrated[-1]
    gate = teacher.gates.get(tier.name)
    if getattr(tier, "multi_label_", False) or (gate is not None and gate.multi_label):
        raise ConfigError("soft labels need a single-label teacher (a multi-label teacher's scores are not one distribution): use hard", field="distill")
    return tier


def _soft_rows(tier: Tier, texts: list[str], min_confidence: float) -> tuple[list[list[Example]], list[bool], list[str | None], int]:
    """Per text: weighted rows for the labels with p ≥ SOFT_FLOOR (renormalised); plus confident flags, top labels, skips."""
    labels = tier.labels_
    rows: list[list[Example]] = []
    confident: list[bool] = []
    top: list[str | None] = []
    skipped = 0
    for start in range(0, len(texts), _CHUNK):
        chunk = texts[start:start + _CHUNK]
        probs = np.asarray(tier.predict_proba(chunk), dtype=np.float64)
        for text, p in zip(chunk, probs):
            best = int(p.argmax())
            top.append(labels[best])
            if p[best] < min_confidence:
                rows.append([]), confident.append(False)
                skipped += 1
                continue
            keep = np.flatnonzero(p >= SOFT_FLOOR)
            if best not in keep:
                keep = np.array([best])
            keep = keep[np.argsort(-p[keep], kind="stable")]
            w = p[keep] / p[keep].sum()
            rows.append([Example(text, (labels[j],), float(wj)) for j, wj in zip(keep, w)])
            confident.append(True)
    return rows, confident, top, skipped


def _hard_rows(
    teacher: Router, texts: list[str], known: set[str], min_confidence: float
) -> tuple[list[list[Example]], list[bool], list[str | None], int, int]:
    """Per text: one row with the teacher's decided labels, none when it went to review or was not confident."""
    rows: list[list[Example]] = []
    confident: list[bool] = []
    top: list[str | None] = []
    review = low = 0
    for start in range(0, len(texts), _CHUNK):
        chunk = texts[start:start + _CHUNK]
        for text, d in zip(chunk, teacher.route_batch(chunk)):
            top.append(d.labels[0] if d.labels else None)
            to_review = d.tier == "human" or bool(d.trace and d.trace[-1].verdict == "unknown")
            unsure = to_review or not d.labels or not set(d.labels) <= known
            if unsure or d.confidence < min_confidence:
                rows.append([]), confident.append(False)
                review += unsure
                low += not unsure
                continue
            rows.append([Example(text, tuple(d.labels))])
            confident.append(True)
    return rows, confident, top, review, low


def read_texts(path: str | Path) -> list[str]:
    """Unlabelled texts: one per line, or JSONL objects with a ``"text"`` field (other fields ignored)."""
    p = Path(path)
    if not p.is_file():
        raise DataError("no such file: give a text file (one message per line) or a .jsonl file with \"text\"", path=p)
    try:
        content = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"invalid UTF-8 at byte {exc.start}: re-encode the file as UTF-8", path=p) from exc
    lines = content.splitlines()
    if p.suffix.lower() != ".jsonl":
        return [line.strip() for line in lines if line.strip()]
    texts = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON ({exc.msg} at column {exc.colno})", path=p, line=lineno) from exc
        text = row.get("text") if isinstance(row, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise DataError('each line must be a JSON object with a non-empty "text"', path=p, line=lineno)
        texts.append(text.strip())
    return texts
