"""Sampling stored decisions for labelling, stratified by predicted label."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime


from frontdesk.errors import ConfigError
from frontdesk.store.store import Store
from frontdesk.types import Decision
from frontdesk.loop.labelling.items import LABELLING_SOURCE


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
