"""Confidence calibration: temperature scaling of logits and the expected calibration error.

A linear model's softmax over decision values is not a probability; temperature scaling fits one
scalar T on held-out data (minimising negative log-likelihood) so that ``softmax(z / T)`` is. It
keeps the ranking (and so the accuracy) and only moves confidences, which is what the gate needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax


def softmax_t(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``."""
    return softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=-1)


@dataclass(frozen=True)
class TemperatureScaler:
    """Fitted temperature; ``temperature_ > 1`` softens over-confident scores, ``< 1`` sharpens."""

    temperature_: float = 1.0

    @classmethod
    def fit(cls, logits: np.ndarray, y: np.ndarray) -> TemperatureScaler:
        """Fit T on held-out ``logits`` (n, k) and integer targets ``y`` (n,) by minimising NLL."""
        z = np.asarray(logits, dtype=np.float64)
        y = np.asarray(y, dtype=np.int64)
        if z.ndim != 2 or len(z) != len(y) or len(z) == 0:
            raise ValueError("TemperatureScaler.fit needs logits of shape (n, k) and n targets, n > 0")
        rows = np.arange(len(y))

        def nll(log_t: float) -> float:
            return float(-log_softmax(z / np.exp(log_t), axis=1)[rows, y].mean())

        res = minimize_scalar(nll, bounds=(-6.0, 6.0), method="bounded", options={"xatol": 1e-4})
        return cls(float(np.exp(res.x)))

    def transform(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities ``softmax(logits / T)``."""
        return softmax_t(logits, self.temperature_)


def calibrate_temperature(logits: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, float]]:
    """Fit T on validation ``logits`` / targets ``y``; also the facts a tier reports (accuracy, ECE before/after)."""
    temperature = TemperatureScaler.fit(logits, y).temperature_
    before, after = softmax_t(logits, 1.0), softmax_t(logits, temperature)
    correct = before.argmax(1) == np.asarray(y)
    return temperature, {
        "validation_accuracy": float(correct.mean()),
        "ece_before": expected_calibration_error(before.max(1), correct),
        "ece_after": expected_calibration_error(after.max(1), correct),
    }


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    """ECE: the mean |accuracy − confidence| over equal-width confidence bins, weighted by bin size."""
    bins = reliability_bins(confidence, correct, n_bins)
    n = max(1, sum(b.count for b in bins))
    return float(sum(b.count * abs(b.accuracy - b.confidence) for b in bins if b.count) / n)


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of a reliability diagram."""

    lower: float
    upper: float
    count: int
    confidence: float
    accuracy: float


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> list[ReliabilityBin]:
    """Equal-width bins over [0, 1] with the mean confidence and accuracy of each."""
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins - 1)
    out = []
    for b in range(n_bins):
        mask = idx == b
        count = int(mask.sum())
        out.append(
            ReliabilityBin(
                float(edges[b]), float(edges[b + 1]), count,
                float(conf[mask].mean()) if count else 0.0, float(ok[mask].mean()) if count else 0.0,
            )
        )
    return out
