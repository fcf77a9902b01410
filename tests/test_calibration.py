from __future__ import annotations

import numpy as np

from frontdesk.gating.calibration import TemperatureScaler, expected_calibration_error, reliability_bins, softmax_t


def _toy(n: int = 4000, k: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax is calibrated at T=1, then multiplied by 4: an over-confident model."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, size=(n, k))
    p = softmax_t(logits)
    y = np.array([rng.choice(k, p=row) for row in p])
    return logits * 4.0, y


def test_temperature_scaling_fixes_overconfidence() -> None:
    logits, y = _toy()
    before = softmax_t(logits)
    scaler = TemperatureScaler.fit(logits, y)
    after = scaler.transform(logits)
    correct = before.argmax(1) == y
    ece_before = expected_calibration_error(before.max(1), correct)
    ece_after = expected_calibration_error(after.max(1), correct)
    assert 3.0 < scaler.temperature_ < 5.0  # recovers the factor 4 it was distorted by
    assert ece_before > 0.1 and ece_after < 0.03 and ece_after < ece_before / 3
    assert (after.argmax(1) == before.argmax(1)).all()  # ranking and accuracy unchanged


def test_ece_zero_for_perfectly_calibrated_bins() -> None:
    conf = np.array([0.8] * 10)
    correct = np.array([1] * 8 + [0] * 2)
    assert expected_calibration_error(conf, correct) < 1e-12
    bins = reliability_bins(conf, correct, n_bins=10)
    assert sum(b.count for b in bins) == 10 and bins[8].accuracy == 0.8


def test_confidence_one_lands_in_last_bin() -> None:
    bins = reliability_bins(np.array([1.0, 0.0]), np.array([1, 0]), n_bins=4)
    assert bins[-1].count == 1 and bins[0].count == 1
