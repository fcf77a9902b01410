"""What a labelling round trip exchanges: the feedback source name, the tools' field names, one annotation."""

from __future__ import annotations

from typing import NamedTuple

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
