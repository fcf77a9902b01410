"""The population stability index of label shares, and the PSI that sampling noise alone shows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_PSI_SMOOTHING = 0.5  # pseudo-count added to every bucket before the PSI's log ratios


def psi(window: Sequence[float], baseline: Sequence[float], *, n: float, m: float,
        smoothing: float = _PSI_SMOOTHING) -> tuple[float, np.ndarray]:
    """Population stability index Σ (p − q)·ln(p / q) between window counts and baseline shares.

    ``window`` holds counts (``n`` in all), ``baseline`` the shares of ``m`` observations; both get
    ``smoothing`` pseudo-counts per bucket so that empty buckets give finite terms. Returns
    ``(psi, per-bucket terms)``.
    """
    p_counts = np.asarray(window, dtype=float)
    q_share = np.asarray(baseline, dtype=float)
    k = len(p_counts)
    p = (p_counts + smoothing) / (n + smoothing * k)
    q = (q_share * m + smoothing) / (m + smoothing * k)
    terms = (p - q) * np.log(p / q)
    return float(terms.sum()), terms


def psi_noise(baseline: Sequence[float], *, n: int, m: int, draws: int = 64, seed: int = 0) -> float:
    """The PSI that sampling noise alone gives: the mean PSI between a window of ``n`` and a baseline
    of ``m`` observations both drawn from the baseline shares (Monte Carlo, ``draws`` pairs).

    It grows with the number of labels K, roughly (K − 1)·(1/n + 1/m): with 150 labels, a
    500-decision window and a 3,000-decision baseline it is ≈ 0.3 — above the usual 0.2 rule of
    thumb without any drift at all, hence ``DriftConfig.psi_noise_correction``.
    """
    q = np.asarray(baseline, dtype=float)
    total = q.sum()
    if n < 1 or m < 1 or total <= 0:
        return 0.0
    q = q / total
    rng = np.random.default_rng(seed)
    windows = rng.multinomial(n, q, size=draws)
    bases = rng.multinomial(m, q, size=draws) / m
    return float(np.mean([psi(windows[i], bases[i], n=n, m=m)[0] for i in range(draws)]))


def round2(n: int) -> int:
    """n rounded to two significant digits (the PSI-noise cache key)."""
    if n < 100:
        return n
    digits = 10 ** (len(str(n)) - 2)
    return int(round(n / digits) * digits)
