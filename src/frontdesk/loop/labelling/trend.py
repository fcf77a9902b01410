"""The model's accuracy on the labelled samples, per week."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any


from frontdesk.errors import ConfigError
from frontdesk.store.store import Store
from frontdesk.types import Decision
from frontdesk.loop.labelling.items import LABELLING_SOURCE


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
