"""New-intent discovery: cluster the messages the model could not place, biggest coherent groups first.

When the unknown rate climbs (see :mod:`frontdesk.loop.drift`), the messages behind it are usually a
few new topics (a product launch, an outage) plus scattered noise. :func:`discover` groups them:

1. **Features**: TF-IDF over word 1–2-grams (English stop words removed) and character 3–5-grams
   (within word boundaries, robust to typos and plurals), each L2-normalised and concatenated with
   equal weight; texts without any feature are left out.
2. **Clustering**: agglomerative clustering with *average* linkage on cosine distance, cut at
   ``distance_threshold`` (0.9 by default: the members of a cluster are on average at least 0.1
   cosine-similar). The threshold, not a fixed k, decides how many clusters there are — noise stays
   in singletons and tiny groups instead of being forced into some cluster, which is what k-means
   does: on the unknown decisions of the CLINC150 simulation (bench/simulation.py), k-means for k in
   10…80 (silhouette rising with k) merged the out-of-scope noise into a few large mixed clusters and
   surfaced at most one held-out intent in its top 10, where average linkage surfaced four of five.
   The threshold was picked on that simulation and the synthetic test set (0.8 split each new
   intent into 2–3 clusters, 0.9 kept them whole). ``n_clusters=k`` cuts the same tree into exactly
   k clusters instead.
3. **Selection**: clusters with at least ``min_cluster_size`` members, ranked by size (or, with
   ``rank="novelty"``, by size × (1 − mean confidence of the model's best guess), which favours
   topics the model has no idea about over known intents it is merely unsure of); the first
   ``top`` are returned with their distinctive terms, the 5 members closest to the centroid, and the
   decision ids.

It needs scikit-learn only and is O(n²) in memory (a distance matrix): at most ``MAX_ITEMS`` texts
per call (2,000 take about a second).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, Field

from frontdesk.common.textkey import text_key
from frontdesk.errors import ConfigError
from frontdesk.loop.drift import is_escalated, is_unknown, primary_confidence
from frontdesk.types import Decision

if TYPE_CHECKING:
    from frontdesk.store.store import Store

MAX_ITEMS = 5000
"""The most texts one :func:`discover` call clusters (its distance matrix is n × n)."""


class Cluster(BaseModel):
    """One group of similar messages."""

    rank: int = Field(description="1 = first in the ranking")
    size: int
    terms: list[str] = Field(description="the most distinctive words and word pairs, strongest first")
    examples: list[str] = Field(description="up to 5 distinct member texts, the most central first")
    decision_ids: list[str] = Field(default_factory=list, description="ids of the member decisions (when decisions were given)")
    indices: list[int] = Field(description="positions of the members in the input")
    coherence: float = Field(description="mean pairwise cosine similarity of the members (0–1)")
    mean_confidence: float | None = Field(None, description="mean primary-tier confidence of the members' decisions")
    guess: str | None = Field(None, description="the primary tier's most frequent best-guess label among the members")
    guess_share: float | None = Field(None, description="share of the members with that best guess")


def _text_of(item: str | Decision) -> str:
    return item if isinstance(item, str) else item.text


def _best_guess(decision: Decision) -> str | None:
    """The primary tier's top label (what the model thought, before any fallback)."""
    for entry in decision.trace:
        if entry.role != "model":
            continue
        return entry.top[0].label if entry.top else (entry.labels[0] if entry.labels else None)
    return None


def discover(
    items: Sequence[str] | Sequence[Decision],
    *,
    n_clusters: int | None = None,
    min_cluster_size: int = 5,
    top: int = 10,
    distance_threshold: float = 0.9,
    rank: Literal["size", "novelty"] = "size",
    n_examples: int = 5,
    n_terms: int = 8,
) -> list[Cluster]:
    """Cluster ``items`` (texts, or Decisions whose ``text`` is used) and return the ``top`` biggest
    clusters of at least ``min_cluster_size`` members (see the module docstring for the method).

    ``n_clusters=None`` lets ``distance_threshold`` (cosine distance, average linkage) decide how
    many clusters there are; an int cuts the tree into exactly that many.
    """
    if min_cluster_size < 2:
        raise ConfigError(f"min_cluster_size must be ≥ 2, got {min_cluster_size}", field="min_cluster_size")
    if top < 1:
        raise ConfigError(f"top must be ≥ 1, got {top}", field="top")
    if not 0.0 < distance_threshold < 2.0:
        raise ConfigError(f"distance_threshold is a cosine distance in (0, 2), got {distance_threshold}",
                          field="distance_threshold")
    if rank not in ("size", "novelty"):
        raise ConfigError(f"rank must be 'size' or 'novelty', got {rank!r}", field="rank")
    if n_clusters is not None and n_clusters < 1:
        raise ConfigError(f"n_clusters must be ≥ 1 or None (automatic), got {n_clusters}", field="n_clusters")
    if len(items) > MAX_ITEMS:
        raise ConfigError(f"{len(items)} messages to cluster; at most {MAX_ITEMS} per call (the distance matrix is "
                          "n × n): pass the most recent ones (e.g. candidates_from_store(limit=2000))", field="items")
    texts = [_text_of(x) for x in items]
    if len(texts) < min_cluster_size:
        return []

    from scipy import sparse
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2, stop_words="english",
                            token_pattern=r"(?u)\b\w\w+\b")
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=2)
    try:
        xw = words.fit_transform(texts)
    except ValueError:  # empty vocabulary: every word is a stop word or appears once
        xw = sparse.csr_matrix((len(texts), 0))
    try:
        xc = chars.fit_transform(texts)
    except ValueError:
        return []
    x = normalize(sparse.hstack([normalize(xw), normalize(xc)] if xw.shape[1] else [normalize(xc)]).tocsr())
    keep = np.flatnonzero(x.getnnz(axis=1) > 0)
    if len(keep) < max(2, min_cluster_size):
        return []
    xk = x[keep]
    sim = (xk @ xk.T).toarray()
    np.clip(sim, 0.0, 1.0, out=sim)
    dist = 1.0 - sim
    np.fill_diagonal(dist, 0.0)
    if n_clusters is not None:
        model = AgglomerativeClustering(n_clusters=min(n_clusters, len(keep)), metric="precomputed", linkage="average")
    else:
        model = AgglomerativeClustering(n_clusters=None, metric="precomputed", linkage="average",
                                        distance_threshold=distance_threshold)
    assign = model.fit_predict(dist)

    decisions = [x for x in items if isinstance(x, Decision)]
    have_decisions = len(decisions) == len(items)
    vocab = words.get_feature_names_out() if xw.shape[1] else np.array([])
    xw_norm = normalize(xw) if xw.shape[1] else xw
    global_mean = np.asarray(xw_norm.mean(axis=0)).ravel() if xw.shape[1] else np.zeros(0)

    found: list[tuple[float, Cluster]] = []
    for label, size in Counter(assign.tolist()).items():
        if size < min_cluster_size:
            continue
        local = np.flatnonzero(assign == label)
        members = keep[local]
        block = sim[np.ix_(local, local)]
        coherence = float((block.sum() - size) / (size * (size - 1)))
        centrality = block.mean(axis=1)
        order = local[np.argsort(-centrality, kind="stable")]
        examples: list[str] = []
        seen: set[str] = set()
        for i in keep[order]:
            key = text_key(texts[i])
            if key not in seen:
                seen.add(key)
                examples.append(texts[i])
            if len(examples) >= n_examples:
                break
        terms: list[str] = []
        if xw.shape[1]:
            weight = np.asarray(xw_norm[members].mean(axis=0)).ravel() - global_mean
            terms = [str(vocab[j]) for j in np.argsort(-weight)[:n_terms] if weight[j] > 0]
        cluster = Cluster(rank=0, size=size, terms=terms, examples=examples, coherence=round(coherence, 4),
                          indices=sorted(int(i) for i in members))
        score = float(size)
        if have_decisions:
            member_decisions = [decisions[i] for i in cluster.indices]
            cluster.decision_ids = [d.id for d in member_decisions]
            confs = [c for c in (primary_confidence(d) for d in member_decisions) if c is not None]
            if confs:
                cluster.mean_confidence = round(float(np.mean(confs)), 4)
            guesses = Counter(g for g in (_best_guess(d) for d in member_decisions) if g is not None)
            if guesses:
                guess, count = guesses.most_common(1)[0]
                cluster.guess, cluster.guess_share = guess, round(count / size, 4)
            if rank == "novelty" and cluster.mean_confidence is not None:
                score = size * (1.0 - cluster.mean_confidence)
        found.append((score, cluster))
    found.sort(key=lambda sc: (-sc[0], -sc[1].coherence, sc[1].indices[0]))
    out = []
    for position, (_score, cluster) in enumerate(found[:top], 1):
        cluster.rank = position
        out.append(cluster)
    return out


def candidates_from_store(store: Store, *, since: datetime | None = None, limit: int = 2000,
                          unknown_labels: Sequence[str] = ("oos", "unknown"),
                          include_flagged: bool = True) -> list[Decision]:
    """The most recent ``limit`` stored decisions (oldest first) the model could not place: unknown
    (an unknown label, or human review without a label), escalated past the first tier or sent to
    human review, and — with ``include_flagged`` — accepted but flagged for review. Duplicates of
    earlier decisions are left out."""
    if limit < 1:
        raise ConfigError(f"limit must be ≥ 1, got {limit}", field="limit")
    picked = [d for d in store.decisions(since=since)
              if not d.duplicate_of and (is_unknown(d, unknown_labels) or is_escalated(d)
                                         or (include_flagged and d.flagged))]
    return picked[-limit:]
