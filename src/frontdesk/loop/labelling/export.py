"""Exporting sampled decisions as Label Studio tasks or Argilla records (with the model's prediction)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from xml.sax.saxutils import quoteattr


from frontdesk.errors import ConfigError
from frontdesk.types import Decision
from frontdesk.loop.labelling.items import AGENT, FROM_NAME, TO_NAME


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
