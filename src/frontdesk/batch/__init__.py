"""Batch routing of whole files: a vectorised cascade, streaming readers/writers, local workers or Ray.

    from frontdesk.batch import BatchOptions, run_batch
    summary = run_batch(BatchOptions(model="model/", input="tickets.jsonl", output="decisions.jsonl"))

``BatchCascade`` routes one chunk of texts with array operations (the same decisions as ``Router.route``).
"""

from __future__ import annotations

from frontdesk.batch.cascade import BatchCascade, Rows
from frontdesk.batch.engine import BatchOptions, BatchSummary, run_batch

__all__ = ["BatchCascade", "BatchOptions", "BatchSummary", "Rows", "run_batch"]
