"""Weekly labelling: sample stored decisions, export them to an annotation tool, import the labels.

The round trip::

    sample = sample_decisions(store, n=300, since=last_monday)          # stratified by predicted label
    tasks = to_label_studio(sample, labels)                              # or to_argilla(...)
    ... annotators label them in Label Studio / Argilla, you export the project ...
    report = import_labels(store, from_label_studio("export.json"))     # feedback, source "labelling"
    labelled_trend(store)                                                # accuracy of the model, per week

Formats (checked against the tools' documentation and source):

* **Label Studio** (1.x): tasks in the basic Label Studio JSON format, ``data.text`` plus
  ``data.decision_id``, ``meta.decision_id``, and ``predictions[].result[]`` of type ``choices``
  whose ``from_name``/``to_name`` match :func:`label_studio_config` (``<Choices name="label"
  toName="text">``). Imports read the *JSON* export (``annotations[].result[].value.choices``,
  cancelled annotations skipped, ``completed_by`` as a user id or a user object) and the
  *JSON_MIN* export (``decision_id`` and ``label`` at the top level).
* **Argilla** (2.x): record dicts in the layout of ``rg.Record.to_dict()`` / ``Record.from_dict``
  (``id``, ``fields.text``, ``metadata.decision_id``, ``suggestions.label = {value, score, agent}``);
  :func:`argilla_settings` is in the layout of ``rg.Settings.serialize()`` (``Settings.from_json``).
  Imports read ``dataset.records.to_json()`` output (nested ``responses.label = [{value, user_id,
  status}]``) and ``to_list(flatten=True)`` output (``label.responses``, ``label.responses.users``,
  ``label.responses.status``); discarded and draft responses are skipped.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple
from xml.sax.saxutils import quoteattr

from pydantic import BaseModel, Field

from frontdesk.errors import ConfigError, DataError
from frontdesk.store.store import Store, StoreError
from frontdesk.types import Decision

LABELLING_SOURCE = "labelling"
"""The feedback ``source`` of labels imported by :func:`import_labels` (what :func:`labelled_trend` reads)."""
FROM_NAME = "label"
TO_NAME = "text"
AGENT = "frontdesk"


class LabelledItem(NamedTuple):
    """One annotation read back from a labelling tool."""

    decision_id: str
    labels: list[str]
    annotator: str | None


# -- sampling -------------------------------------------------------------------------------------
def sample_decisions(
    store: Store, n: int = 300, *, since: datetime | None = None, until: datetime | None = None, seed: int = 13,
    stratify: str | None = "label", exclude_labelled: bool = True, source: str = LABELLING_SOURCE,
) -> list[Decision]:
    """A deterministic, stratified sample of the stored decisions with ``since <= created_at < until``.

    Strata are the predicted (first) label (``"(none)"`` for decisions without one); each stratum
    gets a share of ``n`` proportional to its size (largest remainders), at least one decision per
    stratum when ``n`` ≥ the number of strata (otherwise the ``n`` largest strata get one each),
    never more than it holds. ``stratify=None`` (or ``"none"``) samples uniformly. Decisions that
    repeat an earlier one (``duplicate_of``) are left out, and so are decisions that already have
    feedback from ``source`` when ``exclude_labelled``. Same store, same arguments → same sample.

    Escalated / low-confidence decisions are **not** over-weighted: the sample estimates the
    model's accuracy on the traffic as routed (:func:`labelled_trend`), and the human-review queue
    already covers the uncertain messages. The minimum of one per label over-represents rare
    labels slightly; per-label recall is unaffected by that, pooled accuracy a little.
    Returned oldest first.
    """
    if n < 1:
        raise ConfigError(f"n must be at least 1, got {n}", field="n")
    if stratify not in ("label", "none", None):
        raise ConfigError(f"stratify must be 'label' or None, got {stratify!r}", field="stratify")
    pool = [d for d in store.decisions(since=since, until=until) if d.duplicate_of is None]
    if exclude_labelled:
        done = {fb.decision_id for fb in store.feedback() if fb.source == source}
        pool = [d for d in pool if d.id not in done]
    rng = random.Random(seed)
    if len(pool) <= n:
        chosen = pool
    elif stratify in (None, "none"):
        chosen = rng.sample(pool, n)
    else:
        strata: dict[str, list[Decision]] = defaultdict(list)
        for d in pool:
            strata[d.labels[0] if d.labels else "(none)"].append(d)
        alloc = _allocate({k: len(v) for k, v in strata.items()}, n)
        chosen = []
        for key in sorted(strata):
            if alloc.get(key):
                chosen.extend(rng.sample(strata[key], alloc[key]))
    return sorted(chosen, key=lambda d: (d.created_at, d.id))


def _allocate(sizes: Mapping[str, int], n: int) -> dict[str, int]:
    """Proportional allocation of ``n`` over strata, ≥ 1 each where possible, capped at the sizes."""
    total = sum(sizes.values())
    keys = sorted(sizes, key=lambda k: (-sizes[k], k))
    if n < len(keys):
        return {k: 1 for k in keys[:n]}
    target = {k: n * sizes[k] / total for k in keys}
    alloc = {k: min(sizes[k], max(1, int(target[k]))) for k in keys}
    while sum(alloc.values()) < n:
        open_ = [k for k in keys if alloc[k] < sizes[k]]
        k = max(open_, key=lambda k: (target[k] - alloc[k], sizes[k]))
        alloc[k] += 1
    while sum(alloc.values()) > n:
        reducible = [k for k in keys if alloc[k] > 1]
        k = min(reducible, key=lambda k: (target[k] - alloc[k], -sizes[k]))
        alloc[k] -= 1
    return alloc


# -- export ---------------------------------------------------------------------------------------
def _predicted(d: Decision, labels: Sequence[str], multi: bool) -> list[str]:
    known = set(labels)
    chosen = [label for label in d.labels if label in known]
    return chosen if multi else chosen[:1]


def _label_scores(d: Decision) -> dict[str, float]:
    """The answering tier's scores per label (from the trace), for multi-label suggestion scores."""
    for entry in reversed(d.trace):
        if entry.tier == d.tier and entry.top:
            return {s.label: s.score for s in entry.top}
    return {}


def label_studio_config(labels: Sequence[str], multi: bool = False) -> str:
    """The Label Studio labelling config (XML) that :func:`to_label_studio` tasks match."""
    if not labels:
        raise ConfigError("a labelling config needs at least one label", field="labels")
    choices = "\n".join(f"    <Choice value={quoteattr(label)}/>" for label in labels)
    return (
        "<View>\n"
        f"  <Header value={quoteattr('Which intent does this message have?' + (' (all that apply)' if multi else ''))}/>\n"
        f'  <Text name="{TO_NAME}" value="$text"/>\n'
        f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="{"multiple" if multi else "single"}" '
        'showInline="false" required="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )


def to_label_studio(decisions: Iterable[Decision], labels: Sequence[str], *, multi: bool = False,
                    model_version: str = AGENT) -> list[dict[str, Any]]:
    """Label Studio tasks (basic JSON import format), one per decision, with the model's labels as a
    ``choices`` prediction (pre-annotation) when they are in ``labels``."""
    tasks = []
    for d in decisions:
        predicted = _predicted(d, labels, multi)
        task: dict[str, Any] = {
            "data": {"text": d.text, "decision_id": d.id},
            "meta": {"decision_id": d.id, "tier": d.tier, "confidence": d.confidence,
                     "created_at": d.created_at.isoformat(), "model_labels": list(d.labels)},
            "predictions": [],
        }
        if predicted:
            task["predictions"].append({
                "model_version": model_version, "score": float(d.confidence),
                "result": [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices",
                            "value": {"choices": predicted}}],
            })
        tasks.append(task)
    return tasks


def argilla_settings(labels: Sequence[str], *, multi: bool = False, guidelines: str | None = None,
                     descriptions: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Argilla 2.x dataset settings (``rg.Settings.serialize()`` layout; ``Settings.from_json`` reads it):
    a ``text`` field, a ``label`` (multi-)label question, and ``decision_id``/``tier``/``confidence``
    metadata."""
    if not labels:
        raise ConfigError("Argilla settings need at least one label", field="labels")
    desc = descriptions or {}
    question_settings: dict[str, Any] = {
        "type": "multi_label_selection" if multi else "label_selection",
        "options": [{"value": label, "text": label, "description": desc.get(label)} for label in labels],
        "visible_options": len(labels) if len(labels) >= 3 else None,
    }
    if multi:
        question_settings["options_order"] = "natural"
    return {
        "guidelines": guidelines or ("Pick the intent of the customer's message" + (" (all that apply)" if multi else "")
                                     + ". The suggestion is the model's answer: correct it when it is wrong."),
        "fields": [{"name": "text", "title": "Message", "required": True, "description": None,
                    "settings": {"type": "text", "use_markdown": False}}],
        "questions": [{"name": FROM_NAME, "title": "Intent", "description": None, "required": True,
                       "settings": question_settings}],
        "metadata": [
            {"name": "decision_id", "title": "decision id", "type": "terms", "visible_for_annotators": False,
             "settings": {"type": "terms", "values": None, "visible_for_annotators": False}},
            {"name": "tier", "title": "answering tier", "type": "terms", "visible_for_annotators": False,
             "settings": {"type": "terms", "values": None, "visible_for_annotators": False}},
            {"name": "confidence", "title": "model confidence", "type": "float", "visible_for_annotators": False,
             "settings": {"type": "float", "min": 0.0, "max": 1.0, "visible_for_annotators": False}},
        ],
        "vectors": [],
        "allow_extra_metadata": False,
        "distribution": {"strategy": "overlap", "min_submitted": 1},
        "mapping": None,
    }


def to_argilla(decisions: Iterable[Decision], labels: Sequence[str], *, multi: bool = False) -> list[dict[str, Any]]:
    """Argilla 2.x record dicts (``rg.Record.to_dict()`` layout), one per decision, with the model's
    label(s) and confidence as the ``label`` suggestion when they are in ``labels``."""
    records = []
    for d in decisions:
        predicted = _predicted(d, labels, multi)
        suggestions: dict[str, Any] = {}
        if predicted:
            if multi:
                scores = _label_scores(d)
                suggestions[FROM_NAME] = {"value": predicted, "score": [float(scores.get(p, d.confidence)) for p in predicted],
                                          "agent": AGENT}
            else:
                suggestions[FROM_NAME] = {"value": predicted[0], "score": float(d.confidence), "agent": AGENT}
        records.append({
            "id": d.id,
            "fields": {"text": d.text},
            "metadata": {"decision_id": d.id, "tier": d.tier, "confidence": float(d.confidence)},
            "suggestions": suggestions,
            "responses": {},
            "vectors": {},
        })
    return records


# -- import ---------------------------------------------------------------------------------------
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


# -- the weekly trend -----------------------------------------------------------------------------
_ORIGIN = datetime(2000, 1, 3, tzinfo=timezone.utc)  # a Monday: 7-day windows are ISO weeks


def _window_start(t: datetime, days: int) -> datetime:
    t = t if t.tzinfo else t.replace(tzinfo=timezone.utc)
    k = (t - _ORIGIN) // timedelta(days=days)
    return _ORIGIN + k * timedelta(days=days)


def score_labels(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Exact-match accuracy, macro-F1 and recall over the labels present in ``gold`` (set-based)."""
    n = len(gold)
    gs, ps = [set(g) for g in gold], [set(p) for p in pred]
    present = sorted(set().union(*gs)) if gs else []
    recall, support, f1 = {}, {}, []
    for label in present:
        tp = sum(label in g and label in p for g, p in zip(gs, ps))
        fn = sum(label in g and label not in p for g, p in zip(gs, ps))
        fp = sum(label not in g and label in p for g, p in zip(gs, ps))
        support[label] = tp + fn
        recall[label] = tp / (tp + fn) if tp + fn else 0.0
        f1.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return {
        "n": n,
        "accuracy": sum(g == p for g, p in zip(gs, ps)) / n if n else 0.0,
        "macro_f1": sum(f1) / len(f1) if f1 else 0.0,
        "per_label_recall": recall,
        "support": support,
    }


def labelled_trend(store: Store, *, window_days: int = 7, source: str = LABELLING_SOURCE,
                   since: datetime | None = None) -> list[dict[str, Any]]:
    """The model's quality on the labelled samples, per window of ``window_days`` (oldest first).

    Takes every decision whose feedback includes a ``source`` row (default ``"labelling"``: the
    labels :func:`import_labels` stored) and compares the decision's labels (for decisions sent
    to human review: the model's best guess) with the latest ``source`` labels. Windows are by
    the decision's ``created_at`` (when the message was routed), aligned so that 7-day windows
    are ISO weeks (Monday 00:00 UTC). Each window: ``start``, ``end``, ``n``, ``accuracy`` (exact
    label-set match), ``macro_f1`` and ``per_label_recall`` over the human labels present,
    ``support`` per label, ``escalation_rate`` and ``review_rate`` of the sampled decisions.
    """
    if window_days < 1:
        raise ConfigError(f"window_days must be at least 1, got {window_days}", field="window_days")
    latest: dict[str, list[str]] = {}
    for fb in store.feedback():
        if fb.source == source:
            latest[fb.decision_id] = list(fb.labels)
    windows: dict[datetime, list[tuple[Decision, list[str]]]] = defaultdict(list)
    for decision_id, labels in latest.items():
        d = store.get_decision(decision_id)
        if d is None or (since is not None and d.created_at < since):
            continue
        windows[_window_start(d.created_at, window_days)].append((d, labels))
    out = []
    for start in sorted(windows):
        rows = windows[start]
        scores = score_labels([g for _d, g in rows], [d.labels for d, _g in rows])
        out.append({
            "start": start.isoformat(), "end": (start + timedelta(days=window_days)).isoformat(),
            **scores,
            "escalation_rate": sum(d.escalated for d, _g in rows) / len(rows),
            "review_rate": sum(d.needs_review for d, _g in rows) / len(rows),
        })
    return out


__all__ = [
    "ImportReport", "LabelledItem", "SkippedItem", "argilla_settings", "from_argilla", "from_label_studio",
    "import_labels", "label_studio_config", "labelled_trend", "sample_decisions", "score_labels", "to_argilla",
    "to_label_studio",
]
