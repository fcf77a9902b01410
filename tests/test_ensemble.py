"""The ensemble tier: voting rules, the cost-aware early stop and its guarantee, weights, persistence."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from frontdesk import ConfigError, DataError, Dataset, EnsembleParams, EnsembleTier, ModelError, Router, Tier, TierResult, register_tier
from frontdesk.tiers.ensemble import cost_aware_vote, fit_weights, simplex_grid

WORD = {"blocks": [{"analyzer": "word", "ngram_range": [1, 2]}]}
CHAR = {"blocks": [{"analyzer": "char_wb", "ngram_range": [2, 4]}]}


def two_linear(**extra: Any) -> dict[str, Any]:
    """Two linear members that see different features (words vs character n-grams), listed order."""
    return {"members": ["linear:word", "linear:char"], "member_params": {"linear:word": WORD, "linear:char": CHAR},
            "cost_order": "listed", **extra}


@pytest.fixture(scope="module")
def tiers(support: Dataset) -> dict[str, EnsembleTier]:
    return {
        "majority": EnsembleTier("ens", two_linear(voting="majority")).fit(support),
        "weighted": EnsembleTier("ens", two_linear(voting="weighted")).fit(support),
        # the cheap word model is trusted more: it decides alone when its margin exceeds 0.4 / 0.6
        "cost_aware": EnsembleTier("ens", two_linear(voting="cost_aware", weights=[0.6, 0.4])).fit(support),
    }


def member_probs(tier: EnsembleTier, texts: Sequence[str]) -> list[np.ndarray]:
    """Each member's probabilities in the ensemble's label order."""
    return [tier._member_proba(i, texts) for i in range(len(tier.members_))]


def accuracy(tier: Tier, data: Sequence) -> float:
    probs = tier.predict_proba([ex.text for ex in data])
    return float(np.mean([tier.labels_[i] == ex.labels[0] for i, ex in zip(probs.argmax(1), data)]))


@pytest.mark.parametrize("voting", ["majority", "weighted", "cost_aware"])
def test_every_voting_mode_classifies_and_is_calibrated(tiers: dict[str, EnsembleTier], support: Dataset, voting: str) -> None:
    tier = tiers[voting]
    texts = [ex.text for ex in support.test]
    probs = tier.predict_proba(texts)
    assert probs.shape == (len(texts), len(support.labels)) and set(tier.labels_) == set(support.labels)
    np.testing.assert_allclose(probs.sum(1), 1.0)
    assert accuracy(tier, support.test) >= 0.75  # single linear members score ~0.8 on this test split
    res = tier.score_batch(texts)
    assert [r.ranked[0][0] for r in res] == [tier.labels_[i] for i in probs.argmax(1)]
    assert all(len(r.ranked) == 10 and r.ranked[0][1] == pytest.approx(p.max()) for r, p in zip(res, probs))
    one = tier.score(texts[0])
    assert one.ranked[0] == pytest.approx(res[0].ranked[0]) and one.latency_ms > 0
    info = tier.info()
    assert info["temperature"] > 0 and 0.5 <= info["validation_accuracy"] <= 1 and info["voting"] == voting
    assert set(info["member_validation_accuracy"]) == {"linear:word", "linear:char"}


def test_majority_counts_votes_and_breaks_ties_by_mean_probability(tiers: dict[str, EnsembleTier], support: Dataset) -> None:
    tier = tiers["majority"]
    texts = [ex.text for ex in support.test + support.validation]
    pw, pc = member_probs(tier, texts)
    winners = tier.predict_proba(texts).argmax(1)
    agree = pw.argmax(1) == pc.argmax(1)
    assert agree.any() and (~agree).any()
    np.testing.assert_array_equal(winners[agree], pw.argmax(1)[agree])  # two votes beat everything
    a, b = pw.argmax(1), pc.argmax(1)  # one vote each: of the two voted labels, the higher mean probability wins
    rows = np.arange(len(texts))
    tie_break = np.where(pw[rows, a] + pc[rows, a] >= pw[rows, b] + pc[rows, b], a, b)
    np.testing.assert_array_equal(winners[~agree], tie_break[~agree])
    assert all(w in (x, y) for w, x, y in zip(winners[~agree], a[~agree], b[~agree]))  # never an unvoted label
    assert tier.info()["weights"] == [0.5, 0.5] and not tier.info()["weights_fitted"]


def test_weighted_is_the_weighted_average_with_fitted_weights(tiers: dict[str, EnsembleTier], support: Dataset) -> None:
    tier = tiers["weighted"]
    w = tier.weights_
    assert w.sum() == pytest.approx(1.0) and tier.info()["weights_fitted"]
    assert tier.info()["weight_objective"].startswith("validation log-likelihood")
    val = support.validation
    index = {label: i for i, label in enumerate(tier.labels_)}
    y = np.array([index[ex.labels[0]] for ex in val])
    pv = member_probs(tier, [ex.text for ex in val])

    def nll(weights: Sequence[float]) -> float:
        mix = sum(wi * p for wi, p in zip(weights, pv))
        return float(-np.log(mix[np.arange(len(y)), y]).mean())

    for other in ([1, 0], [0, 1], [0.5, 0.5], [0.3, 0.7]):  # the fitted weights are at least as likely as these
        assert nll(w) <= nll(other) + 1e-9
    texts = [ex.text for ex in support.test]
    pw, pc = member_probs(tier, texts)
    mix = w[0] * pw + w[1] * pc
    expected = np.exp(np.log(mix) / tier.temperature_)
    np.testing.assert_allclose(tier.predict_proba(texts), expected / expected.sum(1, keepdims=True), rtol=1e-9)


def test_fit_weights_finds_the_informative_member() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 300)
    good = np.full((300, 4), 0.05)
    good[np.arange(300), y] = 0.85
    noise = rng.dirichlet(np.ones(4), 300)
    w = fit_weights([noise, good], y)
    assert w[1] >= 0.9 and w.sum() == pytest.approx(1.0)
    assert simplex_grid(2).shape == (21, 2) and simplex_grid(5).shape == (1001, 5)
    np.testing.assert_allclose(simplex_grid(4).sum(1), 1.0)


def test_cost_aware_skips_the_second_member_when_the_first_is_sure_and_agrees_with_the_full_vote(
    tiers: dict[str, EnsembleTier], support: Dataset
) -> None:
    tier = tiers["cost_aware"]
    texts = [ex.text for ex in support.test + support.validation]
    before = tier.info()
    res = tier.score_batch(texts)
    consulted = np.array([r.info["members_consulted"] for r in res])
    assert set(consulted) == {1, 2}  # some messages stop after the word model, others need both
    pw, pc = member_probs(tier, texts)
    top2 = -np.sort(-pw, axis=1)[:, :2]
    decisive = 0.6 * (top2[:, 0] - top2[:, 1]) > 0.4  # the rule: the lead exceeds what the char model could add
    np.testing.assert_array_equal(consulted == 1, decisive)
    full = (0.6 * pw + 0.4 * pc).argmax(1)  # the guarantee: the same winner as the full weighted vote, always
    assert [r.ranked[0][0] for r in res] == [tier.labels_[i] for i in full]
    np.testing.assert_array_equal(tier.predict_proba(texts)[consulted == 1].argmax(1), pw[consulted == 1].argmax(1))
    info = tier.info()  # the running mean over everything scored so far includes this batch
    n0, n1 = before.get("messages_scored", 0), info["messages_scored"]
    total0, total1 = before.get("members_consulted_mean", 0) * n0, info["members_consulted_mean"] * n1
    assert n1 - n0 == len(texts) and (total1 - total0) / len(texts) == pytest.approx(consulted.mean())
    assert 1 < info["validation_members_consulted_mean"] < 2


def test_cost_aware_orders_by_measured_cost_and_reports_only_consulted_costs(support: Dataset) -> None:
    params = {
        "members": ["linear:char", "linear:word"], "voting": "cost_aware", "weights": [0.4, 0.6],
        "member_params": {"linear:char": {**CHAR, "cost_per_call_usd": 0.01}, "linear:word": WORD},
    }
    tier = EnsembleTier("ens", params).fit(support)
    assert tier.info()["consult_order"] == ["linear:word", "linear:char"]  # $0 before $0.01, whatever the listing
    assert [c["cost_usd"] for c in tier.info()["member_costs"]] == [0.01, 0.0]
    res = tier.score_batch([ex.text for ex in support.test])
    for r in res:
        assert r.cost_usd == pytest.approx(0.0 if r.info["members_consulted"] == 1 else 0.01)
    assert {r.info["members_consulted"] for r in res} == {1, 2}


def test_cost_aware_vote_guarantee_on_random_members() -> None:
    rng = np.random.default_rng(7)
    n, L = 2000, 6
    for m in (2, 3, 4):
        probs = [rng.dirichlet(np.full(L, 0.3), n) for _ in range(m)]
        random_w = rng.dirichlet(np.ones(m))
        for w in (random_w, np.sort(random_w)[::-1], np.full(m, 1 / m)):  # any weights, in any order
            asked: list[int] = []

            def probs_of(i: int, rows: np.ndarray, _p: list[np.ndarray] = probs, _a: list[int] = asked) -> np.ndarray:
                _a.append(len(rows))
                return _p[i][rows]

            tally, used = cost_aware_vote(probs_of, w, list(range(m)), n, L)
            full = sum(wi * p for wi, p in zip(w, probs))
            np.testing.assert_array_equal(tally.argmax(1), full.argmax(1))  # the guarantee
            assert asked[0] == n and all(a >= b for a, b in zip(asked, asked[1:]))  # each member sees only the undecided
            stopped = used < 1 - 1e-9
            np.testing.assert_allclose(tally[~stopped], full[~stopped])  # those not stopped heard everyone
        # the most trusted members first: messages they are sure about skip the rest
        w = np.sort(random_w)[::-1]
        asked = []
        _, used = cost_aware_vote(lambda i, rows: (asked.append(len(rows)), probs[i][rows])[1], w, list(range(m)), n, L)
        assert asked[0] == n and sum(asked) < m * n and (used < 1 - 1e-9).any()


def test_zero_weight_members_are_never_consulted(support: Dataset) -> None:
    tier = EnsembleTier("ens", two_linear(voting="weighted", weights=[1.0, 0.0])).fit(support)
    texts = [ex.text for ex in support.test]
    res = tier.score_batch(texts)
    assert all(r.info["members_consulted"] == 1 for r in res)
    word = tier.members_[0].predict_proba(texts)
    np.testing.assert_array_equal(tier.predict_proba(texts).argmax(1), word[:, tier._perm[0]].argmax(1))


def test_save_load_round_trip(tiers: dict[str, EnsembleTier], support: Dataset, tmp_path: Path) -> None:
    texts = [ex.text for ex in support.test]
    for voting, tier in tiers.items():
        path = tmp_path / voting
        path.mkdir()
        tier.save(path)
        assert (path / "ensemble.json").is_file() and sorted(p.name for p in (path / "members").iterdir()) == ["0-linear-word", "1-linear-char"]
        again = EnsembleTier.load(path, "ens")
        np.testing.assert_array_equal(again.predict_proba(texts), tier.predict_proba(texts))
        assert again.labels_ == tier.labels_ and again.order_ == tier.order_ and again.params == tier.params
        assert again.info()["weights"] == tier.info()["weights"]


def test_load_errors(tiers: dict[str, EnsembleTier], tmp_path: Path) -> None:
    tiers["weighted"].save(tmp_path)
    meta_path = tmp_path / "members" / "1-linear-char" / "linear.json"
    meta = json.loads(meta_path.read_text())
    meta["labels"][0] = "renamed_label"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="disagree on the label set.*renamed_label"):
        EnsembleTier.load(tmp_path, "ens")
    import shutil

    shutil.rmtree(tmp_path / "members" / "1-linear-char")
    with pytest.raises(ModelError, match="member directory members/1-linear-char is missing"):
        EnsembleTier.load(tmp_path, "ens")
    (tmp_path / "ensemble.json").unlink()
    with pytest.raises(ModelError, match="ensemble.json"):
        EnsembleTier.load(tmp_path, "ens")


class SubsetTier(Tier):
    """A calibrated tier that only knows the first labels of the data (to provoke a label mismatch)."""

    kind = "subset_fake"
    calibrated = True

    def __init__(self, name: str | None = None, params: dict | None = None) -> None:
        super().__init__(name)

    def fit(self, data: Dataset, progress: Any = None) -> SubsetTier:
        self.labels_ = data.labels[:-1]
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return np.full((len(texts), len(self.labels_)), 1.0 / len(self.labels_))

    def score(self, text: str, candidates: Sequence[str] | None = None) -> TierResult:
        return TierResult([(label, 1.0 / len(self.labels_)) for label in self.labels_])

    def save(self, path: Path) -> None:  # pragma: no cover - never saved
        raise NotImplementedError

    @classmethod
    def load(cls, path: Path, name: str) -> SubsetTier:  # pragma: no cover
        raise NotImplementedError


register_tier("subset_fake", SubsetTier)

SMALL = Dataset.from_examples(
    [("refund my order", "refund"), ("I want my money back", "refund"), ("give me a refund", "refund"),
     ("cancel my plan", "cancel"), ("stop my subscription", "cancel"), ("close my account", "cancel"),
     ("where is my parcel", "track"), ("track my package", "track"), ("my order has not arrived", "track")],
    [("refund please", "refund"), ("cancel it", "cancel"), ("where is my package", "track")],
)


def test_members_with_different_label_sets_are_an_error() -> None:
    with pytest.raises(ModelError, match=r"disagree on the label set.*missing in 'subset_fake': \['track'\]"):
        EnsembleTier("ens", {"members": ["linear", "subset_fake"]}).fit(SMALL)


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"members": ["linear", "rules"]}, "no calibrated predict_proba"),
        ({"members": ["linear", "linear"]}, "names must be unique"),
        ({"members": ["linear:a", "linear:b"], "weights": [1.0]}, "1 weights for 2 members"),
        ({"members": ["linear:a", "linear:b"], "weights": [1.0, -1.0]}, "≥ 0"),
        ({"members": ["linear:a", "linear:b"], "voting": "majority", "weights": [1, 2]}, "one vote"),
        ({"members": ["linear:a", "linear:b"], "member_params": {"linear:c": {}}}, "match no member"),
        ({"members": ["linear:a"], "voting": "plurality"}, "voting"),
    ],
)
def test_config_errors_are_clear(params: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        EnsembleTier("ens", params).fit(SMALL)


def test_multi_label_data_is_refused() -> None:
    data = Dataset.from_examples([("refund and cancel", ["refund", "cancel"]), ("refund", "refund"), ("cancel", "cancel")],
                                 [("refund now", "refund")])
    with pytest.raises(DataError, match="multi-label"):
        EnsembleTier("ens", {"members": ["linear:a", "linear:b"]}).fit(data)


def test_params_model_is_strict() -> None:
    assert EnsembleParams().members == ["linear", "encoder"] and EnsembleParams().voting == "weighted"
    with pytest.raises(ValueError, match="extra"):
        EnsembleParams(member="linear")  # type: ignore[call-arg]


def test_router_trains_an_ensemble_tier_and_fits_its_gate(support: Dataset, tmp_path: Path) -> None:
    router = Router.train(support, ["ensemble"], tier_params={"ensemble": two_linear(voting="cost_aware")})
    assert [t.kind for t in router.tiers] == ["ensemble"] and router.labels == router.tiers[0].labels_
    curve = router.curves["ensemble"]
    assert curve.chosen.escalation_rate <= 0.2 + 1e-9 and router.gates["ensemble"].threshold == pytest.approx(curve.chosen.threshold)
    info = router.meta["tiers"]["ensemble"]
    assert info["voting"] == "cost_aware" and len(info["weights"]) == 2 and info["weights_fitted"]
    texts = [ex.text for ex in support.test]
    decisions = router.route_batch(texts)
    assert {d.tier for d in decisions} <= {"ensemble", "human"} and any(d.tier == "ensemble" for d in decisions)
    loaded = Router.load(router.save(tmp_path / "m"))
    again = loaded.route_batch(texts)
    assert [(d.labels, d.tier) for d in again] == [(d.labels, d.tier) for d in decisions]
    assert all(a.confidence == pytest.approx(b.confidence) for a, b in zip(again, decisions))


def test_from_members_combines_trained_tiers_without_refitting_them(support) -> None:  # noqa: ANN001
    from frontdesk.tiers.linear import LinearTier

    word = LinearTier("word", {"blocks": [{"analyzer": "word", "ngram_range": (1, 2)}]}).fit(support)
    char = LinearTier("char", {"blocks": [{"analyzer": "char_wb", "ngram_range": (2, 4)}]}).fit(support)
    texts = [ex.text for ex in support.test]
    before = word.predict_proba(texts)
    ens = EnsembleTier.from_members([word, char], support, {"voting": "weighted"})
    np.testing.assert_array_equal(word.predict_proba(texts), before)  # members untouched
    assert ens.params.members == ["linear:word", "linear:char"] and len(ens.weights_) == 2
    probs = ens.predict_proba(texts)
    assert probs.shape == (len(texts), len(ens.labels_)) and np.allclose(probs.sum(1), 1.0)
    gold = [ex.labels[0] for ex in support.test]
    assert np.mean([ens.labels_[i] == g for i, g in zip(probs.argmax(1), gold)]) >= 0.8
