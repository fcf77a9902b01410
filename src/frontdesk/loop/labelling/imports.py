"""Reading annotations back from Label Studio / Argilla exports and storing them as feedback."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from frontdesk.errors import DataError
from frontdesk.store.store import Store, StoreError
from frontdesk.loop.labelling.items import FROM_NAME, LABELLING_SOURCE, LabelledItem


def _load(path_or_obj: Any) -> Any:
    if isinstance(path_or_obj, (str, Path)):
        path = Path(path_or_obj)
        if not path.is_file():
            raise DataError("no such file: export the annotations from the labelling tool first", path=path)
        raw = path.read_text(encoding="utf-8")
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            pass
        rows = []  # not one JSON document: JSON lines?
        for lineno, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid JSON ({exc.msg} at column {exc.colno}): expected the tool's JSON export "
                                "(a list of tasks/records) or JSON lines", path=path, line=lineno) from exc
        return rows
    return path_or_obj


def _rows(obj: Any, what: str) -> list[Mapping[str, Any]]:
    if isinstance(obj, Mapping):
        obj = [obj]
    if not isinstance(obj, list) or not all(isinstance(r, Mapping) for r in obj):
        raise DataError(f"expected a list of {what} (JSON objects), got {type(obj).__name__}")
    return obj


def _as_labels(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value.strip()] if value.strip() else []
    if isinstance(value, Mapping):
        return _as_labels(value.get("choices"))
    if isinstance(value, (list, tuple)):
        return list(dict.fromkeys(str(v).strip() for v in value if isinstance(v, str) and v.strip()))
    return []


def _user(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        for key in ("email", "username", "id"):
            if value.get(key) not in (None, ""):
                return str(value[key])
        return None
    return str(value)


def from_label_studio(path_or_obj: Any, *, from_name: str = FROM_NAME) -> list[LabelledItem]:
    """Annotations from a Label Studio export (JSON or JSON_MIN; a path or the parsed object).

    One item per non-cancelled annotation that chose at least one label; tasks without
    annotations (not yet labelled) give nothing. The decision id comes from ``meta.decision_id``
    or ``data.decision_id`` (JSON_MIN: the top-level ``decision_id``). Choices are read from the
    results whose ``from_name`` is ``from_name`` (any ``choices`` result when none has it).
    """
    items: list[LabelledItem] = []
    for task in _rows(_load(path_or_obj), "Label Studio tasks"):
        data = task.get("data") if isinstance(task.get("data"), Mapping) else {}
        meta = task.get("meta") if isinstance(task.get("meta"), Mapping) else {}
        decision_id = meta.get("decision_id") or data.get("decision_id") or task.get("decision_id")
        if not decision_id:
            continue
        annotations = task.get("annotations")
        if isinstance(annotations, list):
            for ann in annotations:
                if not isinstance(ann, Mapping) or ann.get("was_cancelled"):
                    continue
                results = [r for r in ann.get("result") or [] if isinstance(r, Mapping) and r.get("type", "choices") == "choices"]
                named = [r for r in results if r.get("from_name") == from_name] or results
                labels: list[str] = []
                for r in named:
                    labels.extend(x for x in _as_labels(r.get("value")) if x not in labels)
                if labels:
                    items.append(LabelledItem(str(decision_id), labels, _user(ann.get("completed_by"))))
        elif from_name in task:  # JSON_MIN: the control's value at the top level
            labels = _as_labels(task.get(from_name))
            if labels:
                items.append(LabelledItem(str(decision_id), labels, _user(task.get("annotator"))))
    return items


def from_argilla(path_or_obj: Any, *, question: str = FROM_NAME) -> list[LabelledItem]:
    """Responses from an Argilla 2.x export (``records.to_json`` / ``to_list``, nested or flattened).

    One item per submitted response (responses with status ``discarded`` or ``draft`` are
    skipped); the decision id is ``metadata.decision_id`` (flattened: ``decision_id``), else the
    record ``id``.
    """
    items: list[LabelledItem] = []
    for rec in _rows(_load(path_or_obj), "Argilla records"):
        metadata = rec.get("metadata") if isinstance(rec.get("metadata"), Mapping) else {}
        decision_id = metadata.get("decision_id") or rec.get("decision_id") or rec.get("id")
        if not decision_id:
            continue
        responses = rec.get("responses")
        if isinstance(responses, Mapping):
            for resp in responses.get(question) or []:
                if not isinstance(resp, Mapping) or resp.get("status") in ("discarded", "draft"):
                    continue
                labels = _as_labels(resp.get("value"))
                if labels:
                    items.append(LabelledItem(str(decision_id), labels, _user(resp.get("user_id"))))
        elif isinstance(rec.get(f"{question}.responses"), list):
            values = rec[f"{question}.responses"]
            users = rec.get(f"{question}.responses.users") or [None] * len(values)
            status = rec.get(f"{question}.responses.status") or [None] * len(values)
            for value, user, st in zip(values, users, status):
                labels = _as_labels(value)
                if labels and st not in ("discarded", "draft"):
                    items.append(LabelledItem(str(decision_id), labels, _user(user)))
    return items


class SkippedItem(BaseModel):
    decision_id: str
    reason: str


class ImportReport(BaseModel):
    """What :func:`import_labels` stored and what it skipped (and why)."""

    received: int = Field(description="annotations handed in")
    decisions: int = Field(description="distinct decision ids among them")
    imported: int = Field(description="decisions that got a feedback row")
    reviews_resolved: int = 0
    changed: int = Field(0, description="imported labels that differ from the model's decision")
    unchanged: int = Field(0, description="already imported with the same labels (re-import is a no-op)")
    skipped: list[SkippedItem] = Field(default_factory=list)
    source: str = LABELLING_SOURCE


def import_labels(store: Store, items: Iterable[LabelledItem | tuple[str, Sequence[str], str | None]], *,
                  source: str = LABELLING_SOURCE, resolve_reviews: bool = True, note: str | None = None) -> ImportReport:
    """Record imported annotations as feedback (``source``, default ``"labelling"``).

    Per decision: several annotations that agree give one feedback row (``actor`` = the
    annotators, comma-separated); when they disagree the strict-majority label set wins, and
    without a majority the decision is skipped ("annotators disagree"). With ``resolve_reviews``,
    a decision whose review item is still pending gets it resolved with these labels
    (``Store.resolve_review``: a ``review`` feedback row plus the resolution), then the
    ``source`` row is added — the latest row, which :func:`labelled_trend` reads and which
    ``training_examples`` uses. Skipped, with the reason in the report: unknown decision ids,
    empty labels, disagreements, and decisions whose latest ``source`` feedback already has these
    labels (importing the same file twice changes nothing).
    """
    grouped: dict[str, list[tuple[list[str], str | None]]] = {}
    received = 0
    for item in items:
        decision_id, labels, annotator = item
        received += 1
        clean = list(dict.fromkeys(str(x).strip() for x in labels if isinstance(x, str) and x.strip()))
        grouped.setdefault(str(decision_id), []).append((clean, annotator))
    report = ImportReport(received=received, decisions=len(grouped), imported=0, source=source)
    for decision_id, votes in grouped.items():
        voted = [(tuple(sorted(lbls)), lbls, who) for lbls, who in votes if lbls]
        if not voted:
            report.skipped.append(SkippedItem(decision_id=decision_id, reason="no labels chosen"))
            continue
        tally = Counter(key for key, _l, _w in voted)
        key, count = tally.most_common(1)[0]
        if count * 2 <= len(voted) and len(tally) > 1:
            options = "; ".join(f"{list(k)} ×{c}" for k, c in tally.most_common())
            report.skipped.append(SkippedItem(decision_id=decision_id, reason=f"annotators disagree ({options})"))
            continue
        labels = next(lbls for k, lbls, _w in voted if k == key)
        who = ", ".join(dict.fromkeys(w for k, _l, w in voted if k == key and w)) or None
        decision = store.get_decision(decision_id)
        if decision is None:
            report.skipped.append(SkippedItem(decision_id=decision_id, reason="unknown decision id (not in this store)"))
            continue
        previous = [fb for fb in store.feedback(decision_id=decision_id) if fb.source == source]
        if previous and sorted(previous[-1].labels) == sorted(labels):
            report.unchanged += 1
            continue
        if resolve_reviews and decision.needs_review:
            try:
                store.resolve_review(decision_id, labels, reviewer=who)
                report.reviews_resolved += 1
            except StoreError:
                pass  # no review item, or already resolved: the feedback row below still records the labels
        store.add_feedback(decision_id, labels, source=source, actor=who, note=note)
        report.imported += 1
        report.changed += set(labels) != set(decision.labels)
    return report
