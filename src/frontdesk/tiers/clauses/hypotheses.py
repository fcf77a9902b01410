"""Decoding: hypotheses (a split plus one label per clause), their scores, and label-to-clause assignment."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from frontdesk.tiers.clauses.params import CLIP


@lru_cache(maxsize=64)
def product_indices(k: int, c: int) -> np.ndarray:
    """All index tuples (k^c, c): which of its top-k labels each of c clauses takes."""
    return np.array(list(itertools.product(range(k), repeat=c)), dtype=np.int64).reshape(-1, c)


@dataclass(slots=True)
class Hypotheses:
    """One message's hypotheses: their score terms, label sets and readings (split, label per clause)."""

    split: np.ndarray  # (H,) log P(split) under the boundary classifier
    clause: np.ndarray  # (H,) Σ log P(label | clause)
    message: np.ndarray  # (H,) Σ over the hypothesis' labels of the message tier's log-odds
    member: np.ndarray  # (H, L) bool: the labels of each hypothesis
    splits: list[list[str]]  # the clauses of each split
    reading: np.ndarray  # (H, 1 + max clauses): split index, then the label of each clause (-1 padded)

    def scores(self, weights: tuple[float, float]) -> np.ndarray:
        return weights[0] * self.split + self.clause + weights[1] * self.message

    def best(self, weights: tuple[float, float]) -> list[tuple[str, int]]:
        """(clause, label index) pairs of the best hypothesis (the first on ties)."""
        row = self.reading[int(np.argmax(self.scores(weights)))]
        return list(zip(self.splits[row[0]], row[1:].tolist()))


def best_permutation(logp: Sequence[np.ndarray], labels: Sequence[str], index: dict[str, int]) -> tuple[float, tuple[str, ...]]:
    """(score, labels in clause order): the assignment of ``labels`` to clauses with the highest log-probability."""
    best: tuple[float, tuple[str, ...]] | None = None
    for perm in itertools.permutations(labels):
        s = float(sum(lp[index[label]] for lp, label in zip(logp, perm)))
        if best is None or s > best[0]:
            best = (s, perm)
    assert best is not None
    return best


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, CLIP, 1 - CLIP)
    return np.log(p) - np.log1p(-p)
