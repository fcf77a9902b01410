from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from frontdesk import Dataset, ModelError, NotFittedError
from frontdesk.tiers.linear import LinearTier


@pytest.fixture(scope="module")
def tier(support: Dataset) -> LinearTier:
    return LinearTier().fit(support)


def test_fast_path_matches_sklearn_transform(tier: LinearTier, support: Dataset) -> None:
    texts = [ex.text for ex in support.test] + ["", "ÀÉÎ ünïcödé — ok?", "zzzz qqqq"]
    mats = [v.transform(texts) * blk.weight for v, blk in zip(tier._vectorizers, tier.params.blocks)]
    reference = np.asarray(sp.hstack(mats, format="csr") @ tier._W, dtype=np.float64) + tier._b
    np.testing.assert_allclose(tier.decision_function(texts), reference, rtol=1e-5, atol=1e-6)
    one = np.array([tier._logits_one(t) for t in texts])
    np.testing.assert_allclose(one, reference, rtol=1e-5, atol=1e-6)


def test_probabilities_and_ranking(tier: LinearTier, support: Dataset) -> None:
    probs = tier.predict_proba([ex.text for ex in support.validation])
    assert probs.shape == (len(support.validation), len(tier.labels_))
    np.testing.assert_allclose(probs.sum(1), 1.0)
    res = tier.score(support.validation[0].text)
    assert len(res.ranked) == tier.params.top_k
    assert [p for _, p in res.ranked] == sorted((p for _, p in res.ranked), reverse=True)
    assert res.ranked[0][1] == pytest.approx(probs[0].max())
    info = tier.info()
    assert info["ece_after"] <= info["ece_before"] and info["temperature"] > 0


def test_save_load_round_trip(tier: LinearTier, support: Dataset, tmp_path: Path) -> None:
    tier.save(tmp_path)
    again = LinearTier.load(tmp_path, "linear")
    texts = [ex.text for ex in support.test]
    np.testing.assert_allclose(again.predict_proba(texts), tier.predict_proba(texts), rtol=1e-6)
    assert again.labels_ == tier.labels_


def test_load_reports_missing_and_corrupt_files(tier: LinearTier, tmp_path: Path) -> None:
    tier.save(tmp_path)
    (tmp_path / "coef.npy").unlink()
    with pytest.raises(ModelError, match="coef.npy"):
        LinearTier.load(tmp_path, "linear")
    tier.save(tmp_path)
    (tmp_path / "linear.json").write_text("{not json")
    with pytest.raises(ModelError, match="corrupt"):
        LinearTier.load(tmp_path, "linear")


def test_binary_labels_work() -> None:
    data = Dataset.from_examples(
        [("I want a refund please", "refund"), ("refund my money", "refund"), ("give me my money back", "refund"),
         ("hello there", "greet"), ("hi how are you", "greet"), ("good morning", "greet")],
        [("refund now", "refund"), ("hey hello", "greet")],
    )
    tier = LinearTier().fit(data)
    assert tier.score("please refund my order").ranked[0][0] == "refund"
    assert tier.predict_proba(["hello"]).shape == (1, 2)


def test_unfitted_errors() -> None:
    with pytest.raises(NotFittedError, match="call fit"):
        LinearTier().score("hello")


def test_multi_label_one_vs_rest_with_sigmoid_calibration() -> None:
    parts = {"refund": ["refund my order", "I want my money back", "give me a refund"],
             "cancel": ["cancel my plan", "stop my subscription", "close my account now"],
             "track": ["where is my parcel", "track my package", "my order has not arrived"]}
    train = [(t, k) for k, ts in parts.items() for t in ts]
    train += [(f"{a} and {b}", [ka, kb]) for ka, ta in parts.items() for kb, tb in parts.items() if ka < kb for a, b in zip(ta, tb)]
    data = Dataset.from_examples(train, train[:6] + train[-3:])
    tier = LinearTier().fit(data)
    probs = tier.predict_proba(["refund my order and cancel my plan"])
    assert tier.multi_label_ and probs.shape == (1, 3) and not np.isclose(probs.sum(), 1.0)
    got = {label for label, p in tier.score("refund my order and cancel my plan").ranked if p >= 0.5}
    assert got == {"refund", "cancel"}
    assert tier.info()["ece_after"] <= tier.info()["ece_before"] + 1e-9
