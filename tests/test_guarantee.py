"""The certified gate (``--guarantee``): the statistics, the gate fit, train/eval/CLI, the service's
accepted-accuracy interval and its alert.

The property tests draw synthetic validation data whose accuracy-vs-threshold function is known in
closed form: confidence C ~ Beta(a, 1) (crowded near 1, like a softmax), P(correct | C = c) = c.
Then P(C ≥ t) = 1 − tᵃ and acc(t) = E[C | C ≥ t] = a/(a+1) · (1 − tᵃ⁺¹) / (1 − tᵃ), so whether a
fitted threshold meets the target on the traffic is computed exactly (the accepted accuracy of an
infinitely large fresh sample; a finite one would add its own sampling noise to the check).
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from scipy.stats import binom, binomtest

from frontdesk import ConfigError, Dataset, Decision, Objective, Router, TierTrace, fit_gate
from frontdesk.config import FrontdeskConfig
from frontdesk.evaluation.evaluate import evaluate
from frontdesk.loop.drift import AcceptedAccuracyWindow, DriftConfig, DriftMonitor, accepting_tier
from frontdesk.pipeline import configure_router
from frontdesk.tiers.base import register_tier
from frontdesk.tiers.linear import LinearTier
from frontdesk.gating.guarantee import (  # noqa: I001
    CertifiedThreshold,
    accuracy_interval,
    binomial_p_values,
    clopper_pearson_lower,
    default_grid,
    entry_weights,
    fallback_rejections,
    fit_certified_threshold,
    min_accepted_to_certify,
    window_target,
)

SEEDS = range(1000)


def true_accuracy(t: float, a: float = 5.0) -> float:
    """Exact accepted accuracy of the synthetic model at threshold t."""
    t = min(max(t, 0.0), 1.0 - 1e-12)
    return a / (a + 1.0) * (1.0 - t ** (a + 1.0)) / (1.0 - t**a)


def synthetic(rng: np.random.Generator, n: int, a: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    conf = rng.beta(a, 1.0, n)
    return conf, rng.random(n) < conf


def plain_fit(conf: np.ndarray, ok: np.ndarray, target: float) -> float:
    """The uncertified fit (lowest threshold whose validation accepted accuracy reaches the target)."""
    order = np.argsort(-conf)
    acc = np.cumsum(ok[order]) / np.arange(1, len(conf) + 1)
    reach = np.flatnonzero(acc >= target)
    return float(conf[order][reach[-1]]) if len(reach) else 1.0


# -- the guarantee, as a property ------------------------------------------------------------------
@pytest.mark.parametrize(("a", "target", "probability", "n"), [(10, 0.95, 0.95, 2000), (20, 0.97, 0.95, 2000), (20, 0.98, 0.9, 3000)])
def test_bound_holds_in_at_least_the_stated_share_of_seeds(a: float, target: float, probability: float, n: int) -> None:
    misses, plain_misses, certified = 0, 0, 0
    for seed in SEEDS:
        conf, ok = synthetic(np.random.default_rng(seed), n, a)
        fit = fit_certified_threshold(conf, ok, target, probability)
        if fit.certified:  # an uncertified fit accepts nothing, which cannot miss
            certified += 1
            misses += true_accuracy(fit.threshold, a) < target
            assert fit.certified_lower_bound >= target
        plain_misses += true_accuracy(plain_fit(conf, ok, target), a) < target
    assert certified >= 0.9 * len(SEEDS), "the synthetic model is good enough that nearly every seed certifies"
    assert misses <= (1 - probability) * len(SEEDS), f"{misses}/{len(SEEDS)} seeds miss the target"
    # the same check catches a fit without the guarantee: the plain fit misses about half the time
    assert plain_misses >= 0.3 * len(SEEDS)


def test_certified_threshold_is_not_needlessly_strict() -> None:
    target, n = 0.9, 2000
    t_star = next(t for t in np.linspace(0, 1, 100_001) if true_accuracy(t) >= target)  # the ideal threshold
    fits = [fit_certified_threshold(*synthetic(np.random.default_rng(s), n), target, 0.95).threshold for s in range(50)]
    escalation = [t**5 for t in fits]  # P(C < t)
    assert np.mean(escalation) - t_star**5 < 0.12  # the price of the guarantee at n = 2000, about 8 points


def test_window_mode_covers_the_realised_accuracy_of_a_fresh_window() -> None:
    a, target, probability, window, seeds = 20.0, 0.95, 0.95, 500, 300
    misses = 0
    for seed in range(seeds):
        rng = np.random.default_rng(10_000 + seed)
        fit = fit_certified_threshold(*synthetic(rng, 3000, a), target, probability, window=window)
        assert fit.certified and fit.population_target > target
        t = fit.threshold
        # a fresh window of `window` accepted messages: C | C ≥ t by inverse CDF, correct ~ Bernoulli(C)
        c = (t**a + rng.random(window) * (1 - t**a)) ** (1 / a)
        misses += (rng.random(window) < c).mean() < target
    assert misses <= (1 - probability) * seeds


# -- the statistics -------------------------------------------------------------------------------
def test_p_values_match_scipys_exact_binomial_test() -> None:
    for k, n, target in [(97, 100, 0.9), (480, 500, 0.97), (10, 10, 0.8), (0, 5, 0.5), (299, 300, 0.99)]:
        expected = binomtest(k, n, target, alternative="greater").pvalue
        assert binomial_p_values(np.array([n]), np.array([k]), target)[0] == pytest.approx(expected, rel=1e-9)
    assert binomial_p_values(np.array([0]), np.array([0]), 0.9)[0] == 1.0


def test_clopper_pearson_bound_and_p_value_agree() -> None:
    for n in (20, 150, 1000):
        for k in range(0, n + 1, max(1, n // 40)):
            rejects = binomial_p_values(np.array([n]), np.array([k]), 0.9)[0] <= 0.05
            assert rejects == (clopper_pearson_lower(k, n, 0.95) >= 0.9 - 1e-12)


def test_fixed_sequence_stops_at_the_first_failure() -> None:
    # 0.9: 200/200 correct → certifies; 0.8 adds 100 rows with 60 wrong → fails; 0.7 adds 2000 correct rows
    # (would pass on its own), but testing stopped at 0.8, so 0.9 is returned
    conf = np.r_[np.full(200, 0.95), np.full(100, 0.85), np.full(2000, 0.75)]
    ok = np.r_[np.ones(200), np.r_[np.ones(40), np.zeros(60)], np.ones(2000)].astype(bool)
    fit = fit_certified_threshold(conf, ok, 0.9, 0.95, grid=[0.7, 0.9, 0.8])
    assert fit.certified and fit.threshold == 0.9
    assert (fit.n_accepted, fit.n_correct) == (200, 200)
    assert fit.escalation_rate == pytest.approx(1 - 200 / 2300)


def test_second_entry_restarts_the_sequence_at_the_target_with_half_the_level() -> None:
    # the top (0.95) accepts 20 messages, too few for 0.9 (0.9²⁰ > 0.05); the sequence restarts at the
    # first threshold ≤ the target (0.9) with δ/2 and certifies down to 0.85
    conf = np.r_[np.full(20, 0.97), np.full(400, 0.92), np.full(300, 0.87), np.full(1000, 0.5)]
    ok = np.r_[np.ones(20), np.ones(390), np.zeros(10), np.ones(280), np.zeros(20), np.zeros(1000)].astype(bool)
    grid = [0.95, 0.9, 0.85, 0.4]
    fit = fit_certified_threshold(conf, ok, 0.9, 0.95, grid=grid)
    assert fit.certified and fit.threshold == 0.85 and (fit.n_accepted, fit.n_correct) == (720, 690)
    assert not fit_certified_threshold(conf, ok, 0.9, 0.95, grid=grid[:1]).certified


def test_fallback_controls_the_family_wise_error() -> None:
    # every hypothesis true, p-values uniform (independent: the hardest case for a fixed sequence)
    rng = np.random.default_rng(11)
    grid = default_grid(0.9, 50)
    w = entry_weights(grid, 0.9)
    assert w.sum() == pytest.approx(1.0) and w[0] == 0.5
    any_rejection = np.mean([fallback_rejections(rng.random(len(grid)), w, 0.05).any() for _ in range(20_000)])
    assert any_rejection <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 20_000)
    # a rejected hypothesis hands its level on; an unrejected one does not
    assert fallback_rejections(np.array([0.01, 0.04, 0.5, 0.03]), np.array([1.0, 0, 0, 0]), 0.05).tolist() == [True, True, False, False]


def test_min_accepted_to_certify() -> None:
    need = min_accepted_to_certify(0.97, 0.95)
    assert 0.97**need <= 0.05 < 0.97 ** (need - 1)
    assert min_accepted_to_certify(1.0, 0.95) is None


def test_window_target_is_the_lowest_accuracy_meeting_the_window_risk() -> None:
    target, window, risk = 0.97, 1000, 0.025
    a = window_target(target, window, risk)
    below = math.ceil(target * window) - 1
    assert binom.cdf(below, window, a) == pytest.approx(risk, rel=1e-6)
    assert binom.cdf(below, window, a - 1e-4) > risk
    assert 0.975 < a < 0.99


# -- edge cases -------------------------------------------------------------------------------------
def test_nothing_certifies_on_a_weak_model() -> None:
    rng = np.random.default_rng(0)
    conf = rng.random(3000)
    fit = fit_certified_threshold(conf, rng.random(3000) < 0.6, 0.95, 0.95)
    assert not fit.certified and fit.threshold is None and fit.certified_lower_bound is None
    assert fit.escalation_rate == 1.0 and "add validation data" in fit.reason
    assert fit.describe().startswith("not certified")


def test_all_correct_certifies_the_lowest_threshold() -> None:
    conf = np.random.default_rng(1).beta(5.0, 1.0, 2000)
    fit = fit_certified_threshold(conf, np.ones(2000, bool), 0.97, 0.95)
    assert fit.certified and fit.threshold == 0.0 and fit.escalation_rate == 0.0
    assert fit.n_accepted == fit.n_correct == 2000 and "need not escalate" in fit.reason


def test_tiny_validation_set_cannot_certify() -> None:
    fit = fit_certified_threshold([0.99] * 10, [True] * 10, 0.97, 0.95)
    assert not fit.certified
    need = min_accepted_to_certify(0.97, 0.975)  # each entry point starts with half the level
    assert f"needs at least {need} accepted" in fit.reason
    # just enough error-free messages does certify
    n = need
    assert fit_certified_threshold([0.99] * n, [True] * n, 0.97, 0.95).certified


def test_target_one_is_never_certified() -> None:
    fit = fit_certified_threshold(np.full(100_000, 0.999), np.ones(100_000, bool), 1.0, 0.95)
    assert not fit.certified and "1.0 cannot be certified" in fit.reason


def test_eligible_rows_are_never_accepted() -> None:
    conf = np.full(400, 0.99)
    ok = np.r_[np.ones(300), np.zeros(100)].astype(bool)
    assert not fit_certified_threshold(conf, ok, 0.95, 0.95).certified  # 75 % accurate
    fit = fit_certified_threshold(conf, ok, 0.95, 0.95, eligible=ok)  # the fixed margin rule drops the wrong ones
    assert fit.certified and fit.n_accepted == 300 and fit.escalation_rate == pytest.approx(0.25)


def test_result_serialises_for_the_manifest() -> None:
    conf, ok = synthetic(np.random.default_rng(3), 1000)
    for fit in (fit_certified_threshold(conf, ok, 0.9), fit_certified_threshold(conf[:5], ok[:5], 0.9)):
        assert CertifiedThreshold(**json.loads(fit.model_dump_json())) == fit


def test_default_grid_is_data_independent_and_strictest_first() -> None:
    g = default_grid(0.97)
    assert g[0] == pytest.approx(0.985) and g[-1] == 0.0 and (np.diff(g) < 0).all() and 0.97 in g


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"confidence": [0.9, 0.8], "correct": [True]}, "one of each"),
        ({"confidence": [], "correct": []}, "add a validation split"),
        ({"confidence": [0.9, float("nan")], "correct": [True, True]}, "not logits"),
        ({"confidence": [3.2, 0.1], "correct": [True, True]}, "not logits"),
        ({"confidence": [0.9, 0.8], "correct": [2, 1]}, "booleans"),
        ({"confidence": [[0.9]], "correct": [[True]]}, "1-D"),
        ({"target_accuracy": 0.0}, "target_accuracy must be"),
        ({"target_accuracy": 1.2}, "target_accuracy must be"),
        ({"probability": 1.0}, "probability must be"),
        ({"probability": 0.0}, "probability must be"),
        ({"probability": float("nan")}, "probability must be"),
        ({"grid": []}, "grid is empty"),
        ({"grid": [0.5, 1.5]}, "grid thresholds"),
        ({"window": 0}, "window must be"),
        ({"eligible": [True]}, "eligible has shape"),
    ],
)
def test_invalid_inputs_raise_clear_errors(kwargs: dict, message: str) -> None:
    args = {"confidence": [0.9, 0.8], "correct": [True, False], "target_accuracy": 0.9, "probability": 0.95} | kwargs
    with pytest.raises(ValueError, match=message):
        fit_certified_threshold(**args)


# -- the service's interval -------------------------------------------------------------------------
def test_accuracy_interval_is_clopper_pearson() -> None:
    for k, n in [(970, 1000), (45, 50), (3, 7), (0, 20), (20, 20)]:
        ci = binomtest(k, n).proportion_ci(0.95, method="exact")
        assert accuracy_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)
    assert accuracy_interval(0, 0) == (0.0, 1.0)
    low, high = accuracy_interval(90, 100, confidence=0.99)
    assert low < accuracy_interval(90, 100)[0] and high > accuracy_interval(90, 100)[1]


def test_accuracy_interval_covers_at_least_the_stated_share() -> None:
    rng = np.random.default_rng(7)
    p, n = 0.97, 150  # the regime where Wilson undercovers
    counts = rng.binomial(n, p, 4000)
    cover = np.mean([lo <= p <= hi for lo, hi in (accuracy_interval(int(k), n) for k in counts)])
    assert cover >= 0.95


@pytest.mark.parametrize(("k", "n"), [(5, 3), (-1, 10), (2.5, 10), (1, -1), (True, 3)])
def test_accuracy_interval_rejects_impossible_counts(k: object, n: object) -> None:
    with pytest.raises(ValueError):
        accuracy_interval(k, n)  # type: ignore[arg-type]


# -- the certified gate fit (gating/gate.py) --------------------------------------------------------
LABELS = ("a", "b", "c")


def synthetic_probs(rng: np.random.Generator, n: int, a: float = 20.0) -> tuple[np.ndarray, list[list[str]]]:
    """Probabilities over three labels whose top confidence is C ~ Beta(a, 1) and is right with
    probability C: the accepted accuracy of `conf ≥ t` is `true_accuracy(t, a)` exactly."""
    conf = rng.beta(a, 1.0, n)
    top = rng.integers(0, 3, n)
    probs = np.empty((n, 3))
    probs[:] = ((1.0 - conf) / 2.0)[:, None]
    probs[np.arange(n), top] = conf
    right = rng.random(n) < conf
    wrong = (top + 1 + rng.integers(0, 2, n)) % 3
    gold = np.where(right, top, wrong)
    return probs, [[LABELS[g]] for g in gold]


def test_fit_gate_with_a_guarantee_holds_in_at_least_95_percent_of_seeds() -> None:
    # the product path (fit_gate → GatePolicy) on synthetic data with a known accuracy curve
    target, seeds = 0.97, 200
    misses = plain_misses = certified = 0
    for seed in range(seeds):
        probs, gold = synthetic_probs(np.random.default_rng(50_000 + seed), 2000)
        objective = Objective(target_accuracy=target, guarantee=0.95, on_uncertified="plain")
        policy, curve = fit_gate(probs, gold, LABELS, objective)
        plain_misses += true_accuracy(curve.plain.threshold, 20.0) < target
        if not curve.guarantee.certified:  # a model that cannot be certified is not shipped: it cannot miss
            assert curve.note.startswith("NOT CERTIFIED")
            continue
        certified += 1
        assert policy.threshold == curve.guarantee.threshold == curve.chosen.threshold and policy.min_margin == 0.0
        misses += true_accuracy(policy.threshold, 20.0) < target
    assert certified >= 0.9 * seeds
    assert misses <= 0.05 * seeds, f"{misses}/{seeds} certified gates miss the target"
    assert plain_misses >= 0.3 * seeds  # the plain fit, same seeds, misses about half the time


def test_certified_gate_keeps_the_margin_fixed_and_reports_the_plain_fit() -> None:
    probs, gold = synthetic_probs(np.random.default_rng(5), 3000)
    obj = Objective(target_accuracy=0.95, guarantee=0.9, min_margin=0.3, flag_accuracy=0.99)
    policy, curve = fit_gate(probs, gold, LABELS, obj)
    cert = curve.guarantee
    assert cert.certified and cert.min_margin == 0.3 and policy.min_margin == 0.3  # not fitted
    conf = probs.max(axis=1)
    margin = conf - np.sort(probs, axis=1)[:, -2]
    accepted = (conf >= policy.threshold) & (margin >= 0.3)
    assert cert.n_accepted == accepted.sum() and cert.escalation_rate == pytest.approx(1 - accepted.mean())
    assert policy.flag_threshold is not None and policy.flag_threshold > policy.threshold  # the review band still fits
    assert curve.plain is not None and curve.plain.escalation_rate < cert.escalation_rate  # the price is positive
    assert "certified threshold" in curve.objective and "0.900" in curve.objective


def test_uncertified_fails_by_default_and_says_what_to_change() -> None:
    probs, gold = synthetic_probs(np.random.default_rng(6), 60)  # far too few messages for 0.97
    with pytest.raises(ConfigError, match="add validation data, lower the target or the probability") as info:
        fit_gate(probs, gold, LABELS, Objective(target_accuracy=0.97, guarantee=0.95))
    assert "--on-uncertified plain" in str(info.value) and info.value.field == "objective.guarantee"


def test_uncertified_plain_keeps_the_plain_fit_with_a_loud_note() -> None:
    probs, gold = synthetic_probs(np.random.default_rng(6), 60)
    obj = Objective(target_accuracy=0.97, guarantee=0.95, on_uncertified="plain")
    policy, curve = fit_gate(probs, gold, LABELS, obj)
    plain_policy, plain_curve = fit_gate(probs, gold, LABELS, obj.without_guarantee())
    assert policy == plain_policy and curve.chosen == plain_curve.chosen
    assert curve.guarantee is not None and not curve.guarantee.certified and curve.guarantee.threshold is None
    assert curve.note.startswith("NOT CERTIFIED")


def test_multi_label_and_per_label_gates_are_refused() -> None:
    probs = np.random.default_rng(0).random((50, 3))
    with pytest.raises(ConfigError, match="only available for single-label models"):
        fit_gate(probs, [["a", "b"]] + [["a"]] * 49, LABELS, Objective(target_accuracy=0.9, guarantee=0.9))
    with pytest.raises(ConfigError, match="only available for single-label models"):
        fit_gate(probs, [["a"]] * 50, LABELS, Objective(target_accuracy=0.9, guarantee=0.9), multi_label=True)
    obj = Objective(target_accuracy=0.9, guarantee=0.9)
    obj.per_label = True  # assignment is not validated: the fit checks again
    with pytest.raises(ConfigError, match="one global threshold"):
        fit_gate(probs, [["a"]] * 50, LABELS, obj)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"guarantee": 0.95}, "give target_accuracy"),
        ({"max_escalation": 0.2, "guarantee": 0.95}, "give target_accuracy"),
        ({"target_accuracy": 0.9, "guarantee_window": 500}, "needs guarantee"),
        ({"target_accuracy": 0.9, "guarantee": 0.95, "per_label": True}, "one global threshold"),
        ({"target_accuracy": 0.9, "guarantee": 1.0}, "guarantee"),
        ({"target_accuracy": 0.9, "guarantee": 0.95, "on_uncertified": "escalate"}, "on_uncertified"),
    ],
)
def test_objective_rejects_inconsistent_guarantee_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Objective(**kwargs)


# -- Router.train, save/load, eval -----------------------------------------------------------------
SUPPORT_GUARANTEE = Objective(target_accuracy=0.75, guarantee=0.9)  # 96 validation messages certify this much


@pytest.fixture(scope="module")
def certified(support: Dataset) -> Router:
    return Router.train(support, ["linear"], objective=SUPPORT_GUARANTEE)


def test_train_certifies_the_primary_gate_and_save_load_keeps_it(certified: Router, tmp_path: Path) -> None:
    cert = certified.guarantee
    assert cert is not None and cert.certified and cert.target_accuracy == 0.75 and cert.probability == 0.9
    assert certified.gates["linear"].threshold == cert.threshold and certified.guarantee_gap() == ""
    assert certified.meta["objective"]["guarantee"] == 0.9
    loaded = Router.load(certified.save(tmp_path / "m"))
    assert loaded.guarantee == cert and loaded.curves["linear"].plain == certified.curves["linear"].plain
    assert loaded.gates["linear"] == certified.gates["linear"]


class SecondLinear(LinearTier):
    kind = "linear_b"


def test_only_the_primary_tier_is_certified(support: Dataset) -> None:
    register_tier("linear_b", SecondLinear)
    router = Router.train(support, ["linear", "linear_b"], objective=SUPPORT_GUARANTEE)
    assert router.primary.name == "linear" and router.guarantee is not None and router.guarantee.certified
    later = router.curves["linear_b"]
    assert later.guarantee is None and "certified" not in later.objective  # the plain objective, same target
    assert "0.750" in later.objective


def test_eval_reports_the_guarantee_on_the_split(certified: Router, support: Dataset) -> None:
    report, decisions = evaluate(certified, support.test)
    g = report.guarantee
    assert g is not None and g.certified and g.in_force and g.tier == "linear"
    assert (g.target_accuracy, g.probability, g.threshold) == (0.75, 0.9, certified.guarantee.threshold)
    assert g.certified_lower_bound == certified.guarantee.certified_lower_bound >= 0.75
    # recomputed from the decisions: a single-tier router answers exactly the accepted ones
    answered = [(d, ex) for d, ex in zip(decisions, support.test) if d.tier == "linear"]
    assert g.accepted == len(answered) and g.messages == len(support.test)
    assert g.correct == sum(set(d.labels) == set(ex.labels) for d, ex in answered)
    assert g.interval == pytest.approx(accuracy_interval(g.correct, g.accepted))
    assert g.escalation_rate == pytest.approx(1 - g.accepted / g.messages)
    assert g.price == pytest.approx(g.escalation_rate - g.plain_escalation_rate) and g.price > 0
    assert evaluate(Router.train(support, ["linear"], objective=Objective(target_accuracy=0.75)), support.test[:5])[0].guarantee is None


def test_a_gate_changed_after_training_is_not_covered(certified: Router, support: Dataset,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    config = FrontdeskConfig(model="unused", gates={"linear": {"threshold": 0.5}})
    with caplog.at_level(logging.WARNING, logger="frontdesk.router"):
        router = configure_router(certified, config)  # what the service does with frontdesk.yaml's gates:
    assert "does not cover it" in caplog.text
    assert "threshold 0.5000 instead of the certified" in router.guarantee_gap()
    g = evaluate(router, support.test[:20])[0].guarantee
    assert g is not None and g.certified and not g.in_force and "changed after training" in g.note


# -- the CLI round trip -----------------------------------------------------------------------------
def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "frontdesk", *args], capture_output=True, text=True, timeout=300)


def test_cli_train_and_eval_with_a_guarantee(support_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    res = cli("train", "--data", str(support_dir), "--out", str(model), "--target-accuracy", "0.75", "--guarantee", "0.9", "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)["guarantee"]
    assert summary["certified"] and summary["tier"] == "linear" and summary["threshold"] > 0
    res = cli("eval", "--model", str(model), "--data", str(support_dir), "--json")
    assert res.returncode == 0, res.stderr
    g = json.loads(res.stdout)["guarantee"]
    for key in ("target_accuracy", "probability", "certified_lower_bound", "threshold"):
        assert g[key] is not None
    assert (g["target_accuracy"], g["probability"], g["threshold"]) == (0.75, 0.9, summary["threshold"])
    res = cli("eval", "--model", str(model), "--data", str(support_dir))
    assert res.returncode == 0 and "guarantee (tier 'linear')" in res.stdout and "certified threshold" in res.stdout


def test_cli_uncertified_fails_without_writing_or_falls_back_loudly(support_dir: Path, tmp_path: Path) -> None:
    args = ("train", "--data", str(support_dir), "--target-accuracy", "0.97", "--guarantee", "0.95")
    res = cli(*args, "--out", str(tmp_path / "no"))
    assert res.returncode == 2 and "add validation data" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "no").exists()
    res = cli(*args, "--out", str(tmp_path / "plain"), "--on-uncertified", "plain")
    assert res.returncode == 0, res.stderr
    assert "NOT CERTIFIED" in res.stdout
    res = cli("eval", "--model", str(tmp_path / "plain"), "--data", str(support_dir), "--json")
    g = json.loads(res.stdout)["guarantee"]
    assert g["certified"] is False and g["threshold"] is None and not g["in_force"] and "add validation data" in g["note"]
    res = cli("train", "--data", str(support_dir), "--out", str(tmp_path / "x"), "--guarantee", "0.95")
    assert res.returncode == 2 and "give target_accuracy" in res.stderr
    res = cli("train", "--data", str(support_dir), "--out", str(tmp_path / "x"), "--target-accuracy", "0.8",
              "--guarantee", "0.9", "--per-label-thresholds")
    assert res.returncode == 2 and "one global threshold" in res.stderr


# -- the service: accepted accuracy from feedback, its interval and alert ---------------------------
def labelled(tier: str = "linear", verdict: str = "accept", label: str = "a", decision_id: str | None = None) -> Decision:
    trace = [TierTrace(tier="linear", kind="linear", verdict=verdict if tier == "linear" else "escalate", labels=[label], confidence=0.9)]
    if tier == "human":
        trace.append(TierTrace(tier="human", kind="human", verdict="review", labels=[label], confidence=0.9))
    elif tier != "linear":
        trace.append(TierTrace(tier=tier, kind="llm", verdict=verdict, labels=[label], confidence=0.8))
    extra = {"id": decision_id} if decision_id else {}
    return Decision(text="x", labels=[label], confidence=0.9, tier=tier, escalated=tier != "linear",
                    flagged=tier == "human" or verdict == "flag", trace=trace, **extra)


def test_only_decisions_a_model_tier_accepted_count() -> None:
    assert accepting_tier(labelled()) == "linear" and accepting_tier(labelled(verdict="flag")) == "linear"
    assert accepting_tier(labelled("llm")) == "llm" and accepting_tier(labelled("human")) is None
    assert accepting_tier(labelled(verdict="unknown")) is None  # fallback to the unknown label: nobody accepted it


def test_window_counts_a_decision_once_and_forgets_the_oldest() -> None:
    w = AcceptedAccuracyWindow(window=3)
    d1, d2 = labelled(decision_id="d1"), labelled("llm", decision_id="d2")
    assert w.add(d1, ["b"]) and w.add(d2, ["a"]) and not w.add(labelled("human"), ["a"])
    assert w.add(d1, ["a"])  # a review overrides the earlier feedback: counted once, now correct
    est = w.estimate("all", confidence=0.95)
    assert (est.labelled, est.correct) == (2, 2) and w.tiers() == ["linear", "llm"]
    for i in range(3):
        w.add(labelled(decision_id=f"n{i}"), ["b"])
    assert len(w) == 3 and w.estimate("llm", confidence=0.95).labelled == 0
    lin = w.estimate("linear", confidence=0.95)
    assert (lin.labelled, lin.correct, lin.estimate) == (3, 0, 0.0)
    assert (lin.low, lin.high) == pytest.approx(accuracy_interval(0, 3))


def test_alert_fires_on_the_upper_bound_and_clears_on_the_estimate() -> None:
    cfg = DriftConfig(accepted_accuracy_min_labelled=50, accepted_accuracy_window=200, accepted_accuracy_target=0.95)
    m = DriftMonitor(cfg, primary_tier="linear", notify=False)
    for i in range(49):
        m.observe_feedback(labelled(decision_id=f"w{i}"), ["b"])  # all wrong, but too few to judge
    assert m.check() == []
    m.observe_feedback(labelled(decision_id="w49"), ["b"])
    [alert] = m.check()
    assert alert.kind == "accepted_accuracy" and alert.state == "firing" and "upper bound is below" in alert.message
    # 50 wrong + 150 right: estimate 0.75, upper bound < 0.95 — still firing
    for i in range(150):
        m.observe_feedback(labelled(decision_id=f"r{i}"), ["a"])
    assert m.check() == [] and [a.kind for a in m.active_alerts()] == ["accepted_accuracy"]
    high = m.snapshot().accepted_accuracy["linear"].high
    assert high < 0.95
    # the 50 wrong ones are corrected by reviews: estimate back at 1.0 ≥ target → cleared
    for i in range(50):
        m.observe_feedback(labelled(decision_id=f"w{i}"), ["a"])
    [cleared] = m.check()
    assert cleared.state == "cleared" and m.active_alerts() == []


def test_no_target_no_alert_but_the_gauges_stay() -> None:
    m = DriftMonitor(DriftConfig(accepted_accuracy_min_labelled=1), primary_tier="linear", notify=False)
    for i in range(100):
        m.observe_feedback(labelled(decision_id=f"w{i}"), ["b"])
    assert m.check() == [] and m.accepted_accuracy_target is None
    snap = m.snapshot().accepted_accuracy
    assert snap["linear"].labelled == 100 and snap["linear"].target is None and snap["all"].estimate == 0.0
    with pytest.raises(ValidationError, match="could never fire"):
        DriftConfig(accepted_accuracy_min_labelled=2000)


def metric_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_service_metrics_and_alert_from_feedback(certified: Router, support: Dataset, store_url: str, tmp_path: Path) -> None:
    from test_server import ADMIN_KEY, Running, write_config

    model = certified.save(tmp_path / "model")
    config = write_config(tmp_path / "frontdesk.yaml", model, store_url,
                          drift={"accepted_accuracy_min_labelled": 20, "accepted_accuracy_window": 500})
    svc = Running(config)
    try:
        monitor = svc.app.state.frontdesk.monitor
        assert monitor.accepted_accuracy_target == 0.75  # the model's guarantee
        texts = [ex.text for ex in support.test + support.validation]
        with svc.client(ADMIN_KEY) as c:
            decisions = [c.post("/v1/route", json={"text": t}).json()["decision"] for t in texts]
            accepted = [d for d in decisions if d["tier"] == "linear"]
            human = [d for d in decisions if d["tier"] == "human"]
            assert len(accepted) >= 40 and human
            labels = sorted(certified.labels)
            wrong = lambda d: next(x for x in labels if x not in d["labels"])  # noqa: E731
            for d in accepted[:30]:  # 30 corrections: every one of them wrong
                assert c.post("/v1/feedback", json={"decision_id": d["id"], "labels": [wrong(d)]}).status_code == 200
            for d in accepted[30:40]:  # 10 confirmations
                assert c.post("/v1/feedback", json={"decision_id": d["id"], "labels": d["labels"]}).status_code == 200
            r = c.post(f"/v1/review/{human[0]['id']}", json={"labels": [labels[0]], "reviewer": "ana"})
            assert r.status_code == 200  # a human-review decision: nobody accepted it, not counted
            monitor.check()  # the service's checker thread runs the same call every 15 s
            values = metric_values(c.get("/metrics").text)
            low, high = accuracy_interval(10, 40)
            key = lambda name, **labels: (name, tuple(sorted(labels.items())))  # noqa: E731
            assert values[key("frontdesk_accepted_accuracy", tier="linear", bound="estimate")] == pytest.approx(0.25)
            assert values[key("frontdesk_accepted_accuracy", tier="linear", bound="high")] == pytest.approx(high)
            assert values[key("frontdesk_accepted_accuracy", tier="all", bound="low")] == pytest.approx(low)
            assert values[key("frontdesk_accepted_accuracy_labelled", tier="linear")] == 40
            assert values[key("frontdesk_accepted_accuracy_target", tier="linear")] == 0.75
            assert values[key("frontdesk_drift_alerts_active", kind="accepted_accuracy")] == 1.0
            # reviews find the 30 were right after all (the feedback was mistaken): counted once each, now correct
            for d in accepted[:30]:
                assert c.post("/v1/feedback", json={"decision_id": d["id"], "labels": d["labels"]}).status_code == 200
            monitor.check()
            values = metric_values(c.get("/metrics").text)
            assert values[key("frontdesk_accepted_accuracy", tier="linear", bound="estimate")] == 1.0
            assert values[key("frontdesk_accepted_accuracy_labelled", tier="linear")] == 40
            assert values[key("frontdesk_drift_alerts_active", kind="accepted_accuracy")] == 0.0
    finally:
        svc.stop()


def test_drift_replay_measures_accepted_accuracy_from_stored_feedback(tmp_path: Path) -> None:
    from typer.testing import CliRunner
    import typer

    from frontdesk.cli.monitor import register
    from frontdesk.loop.drift import drift_report
    from frontdesk.store.store import Store

    url = f"sqlite:///{tmp_path / 'fd.db'}"
    decisions = [labelled(label="a") for _ in range(120)] + [labelled("human") for _ in range(10)]
    with Store(url) as store:
        store.save_decisions(decisions)
        for d in decisions[:60]:
            store.add_feedback(d.id, ["b"] if d in decisions[:30] else ["a"])  # 30 wrong, 30 confirmed
        for d in decisions[120:]:
            store.add_feedback(d.id, ["b"])  # human review: not an accepted decision
        report = drift_report(store, config=DriftConfig(window=200, min_window=100, accepted_accuracy_target=0.9))
    acc = report.snapshot.accepted_accuracy
    assert (acc["linear"].labelled, acc["linear"].correct) == (60, 30)
    assert acc["all"].target == 0.9 and acc["all"].labelled == 60  # a replay knows no primary tier: all tiers together
    assert [a.kind for a in report.active] == ["accepted_accuracy"]  # fired after the last feedback item
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["drift", "--store", url, "--window", "200", "--target-accuracy", "0.9"])
    assert result.exit_code == 0, result.output
    assert "accepted accuracy, linear" in result.output and "accepted accuracy, all" in result.output
    assert "target 0.900" in result.output
    assert "accepted_accuracy" in result.output


def test_html_report_states_the_guarantee(certified: Router, support: Dataset, tmp_path: Path) -> None:
    from frontdesk.evaluation.report import write_html_report

    report, _ = evaluate(certified, support.test)
    html = write_html_report(report, certified, tmp_path / "r.html").read_text()
    assert "guarantee (linear)" in html and f"certified at threshold {certified.guarantee.threshold:.4f}" in html
