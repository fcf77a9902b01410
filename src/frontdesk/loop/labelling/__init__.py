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

from frontdesk.loop.labelling.export import argilla_settings, label_studio_config, to_argilla, to_label_studio
from frontdesk.loop.labelling.imports import ImportReport, SkippedItem, from_argilla, from_label_studio, import_labels
from frontdesk.loop.labelling.items import LABELLING_SOURCE, LabelledItem
from frontdesk.loop.labelling.sample import sample_decisions
from frontdesk.loop.labelling.trend import labelled_trend, score_labels

__all__ = [
    "LABELLING_SOURCE", "ImportReport", "LabelledItem", "SkippedItem", "argilla_settings", "from_argilla",
    "from_label_studio", "import_labels", "label_studio_config", "labelled_trend", "sample_decisions", "score_labels",
    "to_argilla", "to_label_studio",
]
