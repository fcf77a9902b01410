"""Certified gate thresholds: accuracy on accepted messages ≥ a target with a stated probability.

:func:`fit_certified_threshold` is Learn-then-Test (Angelopoulos et al. 2021) for a confidence
gate. For each threshold ``t`` of a grid fixed before the data are seen, the null hypothesis is
``H_t: acc(t) < target``, where ``acc(t) = P(correct | confidence ≥ t)`` on the traffic the
validation data were drawn from. Given the number ``n_t`` of validation messages the gate accepts
at ``t``, their correct count is ``Binomial(n_t, acc(t))`` (the accepted ones are i.i.d. draws
from the accepted part of the distribution), so ``P(Binomial(n_t, target) ≥ k_t)`` is a valid
p-value conditional on ``n_t`` and hence also unconditionally. The grid is tested strictest first,
each threshold at a level that grows while the thresholds before it are rejected (the fallback form
of fixed-sequence testing, Wiens 2003; a graphical procedure in the sense of Bretz et al. 2009):
half of δ = 1 − probability enters at the strictest threshold, half at the first threshold ≤ the
target, and a rejected threshold hands its whole level to the next one. Once the run from the top
reaches the target's threshold, thresholds are tested at the full δ, exactly as in plain
fixed-sequence testing, with no multiplicity penalty; the second entry only matters when the very
top accepts too few messages to certify (it then restarts at δ/2 instead of giving up). The
family-wise error is ≤ δ under any dependence, so with probability ≥ ``probability`` over the draw
of the validation data every rejected threshold — the lowest, which is returned, included — has
``acc(t) ≥ target``.

Assumption: validation messages and production traffic are exchangeable (i.i.d. from the same
distribution), and the grid does not depend on the validation data. The statement is about the
accuracy *rate* of the accepted traffic, not about any finite batch of it: a batch of m accepted
messages still scatters around ``acc(t)`` by about ``sqrt(acc(1 − acc) / m)``. With ``window=B`` the
statement covers a batch instead: with probability ≥ ``probability`` over the validation data *and*
a future window of B accepted messages, the window's realised accuracy is ≥ target. It splits δ in
two: the population accuracy is certified ≥ ``target'`` at level δ/2, where ``target'`` is the lowest
accuracy whose B-message windows fall below the target with probability ≤ δ/2 (:func:`window_target`).

:func:`accuracy_interval` is the two-sided Clopper–Pearson interval the service puts on the
accepted accuracy it measures from feedback and review resolutions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

METHOD = "ltt-fallback-sequence/binomial"
"""Learn-then-Test; fixed-sequence (fallback) testing strictest first with two entry points; exact
binomial (Clopper–Pearson) p-values conditional on the number accepted."""

DEFAULT_GRID_SIZE = 400


class CertifiedThreshold(BaseModel):
    """The outcome of :func:`fit_certified_threshold` (saved in the model manifest and eval JSON).

    ``certified`` is False when no grid threshold could be certified; ``threshold`` is then None
    and ``reason`` says why and what to do. ``certified_lower_bound`` is the one-sided
    Clopper–Pearson lower bound of the accepted accuracy at ``threshold`` at the level the test used
    (``probability``, or 1 − (1 − probability) / 2 with a window); it is ≥ ``population_target`` by
    construction. What is guaranteed is ``target_accuracy``: the bound is the value at the selected
    threshold and is not itself corrected for the selection.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    target_accuracy: float = Field(description="the accuracy on accepted messages that is certified")
    probability: float = Field(description="probability, over the draw of the validation data, that the certificate holds")
    certified: bool
    threshold: float | None = Field(description="accept when confidence ≥ threshold; None when nothing certifies")
    certified_lower_bound: float | None = Field(
        None, description="one-sided Clopper–Pearson lower bound of the accepted accuracy at `threshold` (level: see the class doc)")
    n: int = Field(description="validation messages the fit saw")
    n_accepted: int = Field(0, description="validation messages accepted at `threshold`")
    n_correct: int = Field(0, description="of those, correctly labelled")
    accepted_accuracy: float | None = Field(None, description="validation accuracy on accepted messages at `threshold`")
    escalation_rate: float = Field(1.0, description="validation share escalated at `threshold`")
    window: int | None = Field(None, description="when set, the guarantee covers the realised accuracy of a window of this many accepted messages")
    population_target: float | None = Field(None, description="accuracy certified for the accepted traffic as a whole (above target_accuracy when window is set)")
    min_margin: float = Field(0.0, description="the fixed top-2 margin rule the certificate assumes (messages below it are escalated)")
    grid_size: int = 0
    method: str = METHOD
    reason: str = ""

    def describe(self) -> str:
        """One line for logs and the CLI."""
        if not self.certified:
            return f"not certified: {self.reason}"
        scope = f" on a window of {self.window} accepted messages" if self.window else ""
        margin = f", margin {self.min_margin:.2f}" if self.min_margin else ""
        return (f"accuracy on accepted ≥ {self.target_accuracy:.3f}{scope} with probability ≥ {self.probability:.3f} "
                f"at threshold {self.threshold:.4f}{margin} (escalates {self.escalation_rate:.1%} of validation; "
                f"bound {self.certified_lower_bound:.4f} from {self.n_correct}/{self.n_accepted})")


def default_grid(target_accuracy: float, size: int = DEFAULT_GRID_SIZE) -> np.ndarray:
    """The data-independent threshold grid, strictest first: about ``size`` points from
    (1 + target) / 2 down to 0, the target itself included.

    Spaced geometrically in ``1 − t`` so it is fine where confidences crowd near 1. It starts at
    (1 + target) / 2 because for a calibrated model the messages above it are far more accurate
    than the target (the first tests pass once there are enough of them), while stricter
    thresholds accept too few messages to certify anything and would only use up the level.
    """
    if not 0.0 < target_accuracy < 1.0:
        raise ValueError(f"target_accuracy must be in (0, 1) to build a grid, got {target_accuracy}")
    if size < 2:
        raise ValueError(f"grid size must be ≥ 2, got {size}")
    doubt = np.geomspace((1.0 - target_accuracy) / 2.0, 1.0, size)
    return np.unique(np.r_[1.0 - doubt, target_accuracy, 0.0])[::-1]


def entry_weights(grid: np.ndarray, target_accuracy: float) -> np.ndarray:
    """Where the level δ enters the sequence: half at the strictest threshold, half at the first
    threshold ≤ the target (all at the top when that is the same threshold, or none is ≤ target)."""
    w = np.zeros(len(grid))
    w[0] = 0.5
    below = np.flatnonzero(grid <= target_accuracy)
    w[below[0] if len(below) else 0] += 0.5
    return w


def fallback_rejections(p_values: np.ndarray, weights: np.ndarray, delta: float) -> np.ndarray:
    """The fallback procedure: hypothesis j is tested at ``delta·weights[j]`` plus the level of
    hypothesis j − 1 when that one was rejected. Controls the family-wise error at ``delta``."""
    rejected = np.zeros(len(p_values), dtype=bool)
    carried = 0.0
    for j, (p, w) in enumerate(zip(p_values, weights)):
        level = delta * w + carried
        rejected[j] = level > 0.0 and p <= level
        carried = level if rejected[j] else 0.0
    return rejected


def min_accepted_to_certify(target_accuracy: float, probability: float) -> int | None:
    """The fewest accepted messages that can certify ``target_accuracy`` (all of them correct),
    or None when no finite number can (target 1)."""
    _check_level("target_accuracy", target_accuracy, upper_closed=True)
    _check_level("probability", probability)
    if target_accuracy >= 1.0:
        return None
    return max(1, math.ceil(math.log(1.0 - probability) / math.log(target_accuracy) - 1e-12))


def window_target(target_accuracy: float, window: int, risk: float) -> float:
    """The lowest accuracy ``a`` at which a window of ``window`` accepted messages falls below
    ``target_accuracy`` with probability ≤ ``risk``: ``P(Binomial(window, a) < target · window) ≤ risk``."""
    from scipy.stats import beta  # imported on use: scipy.stats takes about a second to import
    _check_level("target_accuracy", target_accuracy)
    _check_level("risk", risk)
    if isinstance(window, bool) or int(window) != window or window < 1:
        raise ValueError(f"window must be a whole number of accepted messages ≥ 1, got {window!r}")
    below = math.ceil(target_accuracy * window - 1e-9) - 1  # the largest correct count that is a violation
    if below < 0:
        return target_accuracy
    # P(Bin(B, a) ≤ below) = I_{1-a}(B - below, below + 1): solve for a in closed form
    return max(target_accuracy, float(1.0 - beta.ppf(risk, window - below, below + 1)))


def binomial_p_values(n_accepted: np.ndarray, n_correct: np.ndarray, target_accuracy: float) -> np.ndarray:
    """p-values of ``H: accuracy < target`` given k correct out of n: ``P(Binomial(n, target) ≥ k)``
    (1 where n = 0)."""
    from scipy.stats import binom
    n = np.asarray(n_accepted, dtype=np.int64)
    k = np.asarray(n_correct, dtype=np.int64)
    p = binom.sf(k - 1, n, target_accuracy)
    return np.where(n > 0, p, 1.0)


def clopper_pearson_lower(n_correct: int, n: int, probability: float) -> float:
    """One-sided lower confidence bound (level ``probability``) of a binomial proportion."""
    from scipy.stats import beta
    if n <= 0 or n_correct <= 0:
        return 0.0
    return float(beta.ppf(1.0 - probability, n_correct, n - n_correct + 1))


def fit_certified_threshold(
    confidence: Sequence[float] | np.ndarray,
    correct: Sequence[bool] | np.ndarray,
    target_accuracy: float,
    probability: float = 0.95,
    grid: Sequence[float] | np.ndarray | None = None,
    *,
    eligible: Sequence[bool] | np.ndarray | None = None,
    window: int | None = None,
) -> CertifiedThreshold:
    """Fit the lowest threshold whose accepted accuracy is certified ≥ ``target_accuracy``.

    ``confidence`` / ``correct``: one row per validation message (the gate's confidence in its top
    label, whether that label is right). ``grid``: candidate thresholds; they must be chosen without
    looking at these validation data (default :func:`default_grid`). ``eligible``: rows the gate's
    other, fixed rules (e.g. a fixed ``min_margin``) would let through; the others are always
    escalated. ``window``: certify the realised accuracy of windows of this many accepted messages
    (e.g. the monitoring window) rather than of the accepted traffic as a whole. Accept means
    ``confidence ≥ threshold``, as in ``GatePolicy.judge``.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct)
    _check_level("target_accuracy", target_accuracy, upper_closed=True)
    _check_level("probability", probability)
    if conf.ndim != 1 or ok.ndim != 1:
        raise ValueError(f"confidence and correct must be 1-D, got shapes {conf.shape} and {ok.shape}")
    if len(conf) != len(ok):
        raise ValueError(f"confidence has {len(conf)} rows but correct has {len(ok)}: pass one of each per validation message")
    if len(conf) == 0:
        raise ValueError("cannot certify a threshold without validation messages: add a validation split")
    if not np.isfinite(conf).all() or conf.min() < 0.0 or conf.max() > 1.0 + 1e-9:
        raise ValueError("confidence must be finite probabilities in [0, 1]: pass calibrated confidences, not logits")
    if ok.dtype != bool:
        if not np.isin(ok, (0, 1)).all():
            raise ValueError("correct must be booleans (or 0/1): whether each message's top label is right")
        ok = ok.astype(bool)
    if window is not None and (isinstance(window, bool) or int(window) != window or window < 1):
        raise ValueError(f"window must be a whole number of accepted messages ≥ 1, got {window!r}")
    if eligible is not None:
        elig = np.asarray(eligible, dtype=bool)
        if elig.shape != conf.shape:
            raise ValueError(f"eligible has shape {elig.shape}, expected {conf.shape}")
        conf = np.where(elig, conf, -np.inf)
    n = len(conf)
    delta = 1.0 - probability
    common = {"target_accuracy": float(target_accuracy), "probability": float(probability), "n": n,
              "window": window, "population_target": float(target_accuracy)}
    if window is not None and target_accuracy < 1.0:
        common["population_target"] = window_target(target_accuracy, window, delta / 2)
        delta /= 2
    target = common["population_target"]

    if target_accuracy >= 1.0:
        return CertifiedThreshold(**common, certified=False, threshold=None, reason=(
            "a target accuracy of 1.0 cannot be certified from finite data (any number of error-free "
            "messages is also likely under an accuracy just below 1): use a target below 1"))
    thr = default_grid(target) if grid is None else _check_grid(grid)
    common["grid_size"] = len(thr)

    # accepted / correct counts at each threshold (accept conf ≥ t), via one sort
    order = np.argsort(-conf, kind="stable")
    cum_ok = np.r_[0, np.cumsum(ok[order])]
    asc = np.sort(conf)
    n_acc = n - np.searchsorted(asc, thr, side="left")
    n_ok = cum_ok[n_acc]
    p = binomial_p_values(n_acc, n_ok, target)
    rejected = np.flatnonzero(fallback_rejections(p, entry_weights(thr, target), delta))

    if not len(rejected):
        need = min_accepted_to_certify(target, 1.0 - delta / 2)
        entry = int(np.flatnonzero(entry_weights(thr, target))[-1])
        tried = ", ".join(f"{thr[i]:.4f} accepts {n_acc[i]}, {n_ok[i]} correct" for i in sorted({0, entry}))
        return CertifiedThreshold(**common, certified=False, threshold=None, reason=(
            f"no threshold shows accuracy ≥ {target:.4f} with probability {1.0 - delta:.3f} on these "
            f"{n} validation messages (where testing starts: {tried}; a start needs at least {need} "
            "accepted, nearly all correct): add validation data, lower the target or the probability, "
            "or (Python API) pass a grid that starts lower, chosen without looking at the validation data"))
    j = int(rejected[-1])  # the lowest certified threshold
    k, m = int(n_ok[j]), int(n_acc[j])
    return CertifiedThreshold(
        **common, certified=True, threshold=float(thr[j]),
        certified_lower_bound=clopper_pearson_lower(k, m, 1.0 - delta),
        n_accepted=m, n_correct=k, accepted_accuracy=k / m, escalation_rate=1.0 - m / n,
        reason="" if j < len(thr) - 1 else "the lowest grid threshold is certified: the gate need not escalate at all",
    )


def accuracy_interval(correct_count: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Clopper–Pearson interval of an accuracy from ``correct_count`` of ``n``.

    Clopper–Pearson rather than Wilson: its coverage is never below ``confidence`` (Wilson's dips
    below nominal for accuracies near 1 and small n, exactly the service's regime), so an alert on
    "upper bound < target" fires wrongly with probability ≤ (1 − confidence) / 2 per look. It is
    also the interval the certified fit inverts. (0, 1) when n = 0.
    """
    from scipy.stats import beta
    _check_level("confidence", confidence)
    if isinstance(n, bool) or isinstance(correct_count, bool) or int(n) != n or int(correct_count) != correct_count:
        raise ValueError(f"correct_count and n must be whole numbers, got {correct_count!r} and {n!r}")
    n, k = int(n), int(correct_count)
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 ≤ correct_count ≤ n, got correct_count={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    a = (1.0 - confidence) / 2.0
    low = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1.0 - a, k + 1, n - k))
    return low, high


def _check_level(name: str, value: float, *, upper_closed: bool = False) -> None:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (0.0 < value < 1.0 or (upper_closed and value == 1.0)):
        interval = "(0, 1]" if upper_closed else "(0, 1)"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")


def _check_grid(grid: Sequence[float] | np.ndarray) -> np.ndarray:
    g = np.asarray(grid, dtype=np.float64).ravel()
    if len(g) == 0:
        raise ValueError("grid is empty: pass candidate thresholds in [0, 1] or None for the default grid")
    if not np.isfinite(g).all() or g.min() < 0.0 or g.max() > 1.0:
        raise ValueError("grid thresholds must be finite and in [0, 1]")
    return np.unique(g)[::-1]  # strictest first; the order is fixed by the values, not by the data
