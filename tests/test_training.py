"""The loop that compounds: production labels → training set → candidate model → promotion.

Real models trained on the bundled support dataset, a real SQLite store in tmp_path (one test
also on PostgreSQL via ``store_url``), real directory swaps.
"""

from __future__ import annotations

import itertools
import json
import random
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import frontdesk_cli

from frontdesk import Dataset, Decision, FrontdeskError, Router, TierTrace
from frontdesk.common.textkey import text_key as normalise_text
from frontdesk.store.store import Store
from frontdesk.loop.promote import PromotionError, previous_versions, promote
from frontdesk.loop.retrain import (
    REPORT_FILE,
    RetrainReport,
    build_training,
    build_training_set,
    read_report,
    retrain,
    slice_of,
)

LOYALTY = "loyalty_points"
OPENERS = ["", "Hi, ", "Hello! ", "Quick question: ", "Hey team, "]
CORES = [
    "how many reward points do I have", "my loyalty points disappeared", "can I redeem my reward points on this order",
    "when do my loyalty points expire", "I didn't get points for my last purchase",
    "how do I convert points into a voucher", "what is my loyalty tier", "points from my order were never credited",
    "can I transfer my reward points to my partner", "how many points do I earn per dollar",
]
CLOSERS = ["?", ".", " please.", ", thanks!"]


def loyalty_texts() -> list[str]:
    """50 distinct messages of an intent the bundled dataset does not have."""
    return [o + c + CLOSERS[i % 4] for i, (o, c) in enumerate(itertools.product(OPENERS, CORES))]


def llm_decision(text: str, labels: list[str]) -> Decision:
    """A decision the (future) LLM tier accepted after the linear tier escalated."""
    trace = [
        TierTrace(tier="linear", kind="linear", verdict="escalate", labels=[labels[0]], confidence=0.3, reason="low"),
        TierTrace(tier="llm", kind="llm", verdict="accept", labels=labels, confidence=0.95, reason="llm says so"),
    ]
    return Decision(text=text, labels=labels, confidence=0.95, tier="llm", escalated=True, flagged=False, trace=trace)


def add_feedback(store: Store, router: Router, texts: list[str], labels: list[list[str]], *, source: str = "feedback") -> None:
    decisions = router.route_batch(texts)
    store.save_decisions(decisions)
    for d, y in zip(decisions, labels):
        store.add_feedback(d.id, y, source=source)


def trained_at(model_dir: Path) -> str:
    return json.loads((model_dir / "frontdesk.json").read_text())["meta"]["trained_at"]


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path / 'store.db'}") as s:
        yield s


# -- the training set -------------------------------------------------------------------------
def test_feedback_beats_llm_and_original_labels(support: Dataset, router: Router, store_url: str) -> None:
    train_a, train_b, train_c = support.train[0], support.train[1], support.train[2]
    test_c, test_d = support.test[0], support.test[1]
    other = lambda ex: next(lab for lab in support.labels if lab not in ex.labels)  # noqa: E731
    fb_a, llm_a = other(train_a), [lab for lab in support.labels if lab not in train_a.labels][1]
    with Store(store_url) as store:
        # A: original label ← LLM label ← a human's label; the feedback text differs only in case/spaces.
        store.save_decision(llm_decision(train_a.text, [llm_a]))
        add_feedback(store, router, ["  " + train_a.text.upper().replace(" ", "   ") + " "], [[fb_a]])
        # B: an LLM answer relabels an original training text.
        store.save_decision(llm_decision(train_b.text, [other(train_b)]))
        # C (test split): a human correction stays in test, corrected, and is never trained on.
        add_feedback(store, router, [test_c.text], [[other(test_c)]])
        # D (test split): an LLM label never overrides a gold test label.
        store.save_decision(llm_decision(test_d.text, [other(test_d)]))
        # An LLM answer naming a label nobody knows is dropped; a human's new label is welcome.
        store.save_decision(llm_decision("what's the wifi password of your warehouse", ["made_up_intent"]))
        add_feedback(store, router, ["how many reward points do I have?"], [[LOYALTY]], source="review")
        # C in the original train split too? (it is not; train_c stays untouched)

        ts = build_training(support, store)
        data, held = ts.dataset, ts.held_back
        everywhere = data.train + data.validation + held
        by_key: dict[str, list[tuple[str, ...]]] = {}
        for ex in everywhere:
            by_key.setdefault(normalise_text(ex.text), []).append(ex.labels)

        assert by_key[normalise_text(train_a.text)] == [(fb_a,)]                      # feedback > llm > original
        assert by_key[normalise_text(train_b.text)] == [(other(train_b),)]            # llm > original
        assert [ex for ex in data.train if ex.text == train_b.text] == [type(train_b)(train_b.text, (other(train_b),))]
        assert by_key[normalise_text(train_c.text)] == [train_c.labels]               # untouched
        assert normalise_text(test_c.text) not in by_key                               # not trained on, not held back
        assert data.test[0].labels == (other(test_c),) and data.test[0].text == test_c.text
        assert data.test[1] == test_d                                                  # LLM never changes gold
        assert ts.skipped == {"llm_unknown_label": 1, "llm_matches_eval_text": 1}
        assert "made_up_intent" not in data.labels and LOYALTY in data.labels
        assert data.labels[: len(support.labels)] == support.labels and ts.new_labels == [LOYALTY]
        assert ts.counts["corrected_original"] == 1 and ts.counts["corrected_eval"] == 1
        assert ts.counts["llm"] == 1 and ts.counts["original"] == len(support.train) - 2
        assert len(data.test) == len(support.test) and len(data.train) == ts.counts["total"]

        # Without LLM answers, B keeps its original label and A still takes the human's.
        data2, _ = build_training_set(support, store, include_llm=False)
        assert [ex.labels for ex in data2.train if ex.text == train_b.text] == [train_b.labels]
        assert all(normalise_text(ex.text) != normalise_text(train_a.text) or ex.labels == (fb_a,)
                   for ex in data2.train + data2.validation)


def test_slices_are_deterministic_and_proportional(support: Dataset, router: Router, sqlite_store: Store) -> None:
    texts = [f"order {i} question number {i * 7}: where is parcel {i}?" for i in range(300)]
    add_feedback(sqlite_store, router, texts, [["shipping_status"]] * len(texts))
    data, held = build_training_set(support, sqlite_store, holdout=0.2, validation=0.1)
    again, held_again = build_training_set(support, sqlite_store, holdout=0.2, validation=0.1)
    assert held == held_again and data.train == again.train and data.validation == again.validation
    held_texts = {ex.text for ex in held}
    fb_val = [ex for ex in data.validation if ex.text in set(texts)]
    fb_train = [ex for ex in data.train if ex.text in set(texts)]
    assert len(held) + len(fb_val) + len(fb_train) == 300
    assert 0.13 < len(held) / 300 < 0.27 and 0.05 < len(fb_val) / 300 < 0.16
    assert not held_texts & {ex.text for ex in data.train + data.validation}
    assert all(slice_of(t) < 0.2 for t in held_texts)
    assert all(0.2 <= slice_of(ex.text) < 0.3 for ex in fb_val)
    assert slice_of("Where is  my PARCEL?") == slice_of("where is my parcel?") != slice_of("where is my parcel?", seed=1)
    # The original validation split is kept, in order, before the feedback examples.
    assert data.validation[: len(support.validation)] == support.validation
    with pytest.raises(FrontdeskError, match="holdout"):
        build_training_set(support, sqlite_store, holdout=0.8, validation=0.3)


def test_a_new_label_that_would_only_be_held_back_is_trained_on(support: Dataset, router: Router, sqlite_store: Store) -> None:
    texts = [t for t in (f"gift card number {i} shows a zero balance" for i in range(400)) if slice_of(t) < 0.2][:4]
    assert len(texts) == 4
    add_feedback(sqlite_store, router, texts, [["gift_cards"]] * 4)
    ts = build_training(support, sqlite_store)
    assert ts.held_back == [] and ts.counts["new_label_moved_to_train"] == 4
    assert sorted(ex.text for ex in ts.dataset.train if ex.labels == ("gift_cards",)) == sorted(texts)


# -- retrain + promote ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory, support: Dataset, router: Router, support_dir: Path) -> dict[str, Path]:
    """A serving model M, a store whose feedback teaches a new intent, and the retrained candidate."""
    root = tmp_path_factory.mktemp("loop")
    model = router.save(root / "M")
    with Store(f"sqlite:///{root / 'good.db'}") as store:
        texts = loyalty_texts()
        add_feedback(store, router, texts, [[LOYALTY]] * len(texts))
        # a few human corrections of ordinary traffic and some LLM answers, as production would have
        add_feedback(store, router, [ex.text for ex in support.validation[:6]], [list(ex.labels) for ex in support.validation[:6]])
        for ex in support.train[:5]:
            store.save_decision(llm_decision(ex.text, list(ex.labels)))
        retrain(model, store, root / "M2", data=support_dir)
    return {"root": root, "model": model, "candidate": root / "M2", "store": root / "good.db"}


def test_retrain_learns_a_new_intent_and_reports_the_comparison(loop: dict[str, Path], support: Dataset) -> None:
    report = read_report(loop["candidate"])
    assert report is not None
    assert report == RetrainReport.model_validate_json((loop["candidate"] / REPORT_FILE).read_text())
    m2 = Router.load(loop["candidate"])
    assert LOYALTY in m2.labels and report.new_labels == [LOYALTY]
    for unseen in ("Where are my bonus points from the last order?", "do my reward points expire at the end of the year"):
        assert m2.route(unseen).labels == [LOYALTY]
    old = Router.load(loop["model"])
    assert LOYALTY not in old.labels
    # same recipe: tiers, tier params, settings, objective
    assert [t.kind for t in m2.tiers] == [t.kind for t in old.tiers] == report.tiers
    assert m2.tiers[0].params == old.tiers[0].params and m2.settings == old.settings
    assert m2.meta["objective"] == old.meta["objective"]
    assert m2.meta["retrained_from"]["trained_at"] == old.meta["trained_at"] == report.baseline_trained_at

    # both models were evaluated on the same held-back slice: feedback holdout + the original test split
    assert report.held_back["original_test"] == len(support.test) and report.held_back["feedback_holdout"] > 0
    assert report.old.n == report.new.n == sum(report.held_back.values()) == report.sizes["held_back"]
    assert "held-back feedback" in report.evaluated_on and "original test split" in report.evaluated_on
    assert report.by_part["feedback_holdout"]["old_accuracy"] < 0.2   # the old model cannot know the new intent
    assert report.by_part["feedback_holdout"]["new_accuracy"] > 0.8
    assert report.new.accuracy > report.old.accuracy and report.better
    loyalty = next(c for c in report.recall_changes if c.label == LOYALTY)
    assert loyalty.old_recall == 0.0 and loyalty.new_recall > 0.8
    assert all(abs(c.new_recall - c.old_recall) >= 0.01 for c in report.recall_changes)
    assert report.sizes["llm"] == 5 and report.sizes["feedback"] > 30 and report.sizes["original"] == len(support.train) - 5
    assert report.sizes["total"] == report.sizes["original"] + report.sizes["feedback"] + report.sizes["llm"]
    assert "accuracy" in report.rule and "escalation" in report.rule


def test_promotion_accepts_a_better_model_and_keeps_the_previous_one(loop: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "serving" / "model"
    shutil.copytree(loop["model"], target)
    before = trained_at(target)
    stop = threading.Event()
    missing: list[int] = []

    def watch() -> None:  # a service polling the directory never finds it missing or half-written
        while not stop.is_set():
            if not (target / "frontdesk.json").is_file() or not (target / "tiers" / "linear").is_dir():
                missing.append(1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert promote(loop["candidate"], target) == target
    finally:
        stop.set()
        watcher.join()
    assert missing == []
    assert trained_at(target) == trained_at(loop["candidate"]) != before
    assert LOYALTY in Router.load(target).labels
    prev = previous_versions(target)
    assert len(prev) == 1 and prev[0].name.startswith("model.previous-") and trained_at(prev[0]) == before
    assert (loop["candidate"] / "frontdesk.json").is_file()               # the candidate is copied, not moved
    assert sorted(p.name for p in target.parent.iterdir() if p.name.startswith(".")) == []  # no temp dirs left
    # The report compared against the *old* model; the target now holds the candidate itself → refused.
    with pytest.raises(PromotionError, match="retrain against the current model"):
        promote(loop["candidate"], target)


def test_promotion_refuses_a_worse_model(loop: dict[str, Path], support: Dataset, router: Router, support_dir: Path,
                                         tmp_path: Path) -> None:
    target = tmp_path / "model"
    shutil.copytree(loop["model"], target)
    before = trained_at(target)
    rng = random.Random(7)
    with Store(f"sqlite:///{tmp_path / 'bad.db'}") as store:   # feedback that mislabels every training message
        add_feedback(store, router, [ex.text for ex in support.train],
                     [[rng.choice([lab for lab in support.labels if lab not in ex.labels])] for ex in support.train])
        report = retrain(target, store, tmp_path / "M2bad", data=support_dir)
    assert not report.better
    assert report.by_part["original_test"]["new_accuracy"] < report.by_part["original_test"]["old_accuracy"] - 0.2
    assert any("drops more than 0.5 points" in r for r in report.reasons)
    with pytest.raises(PromotionError) as err:
        promote(tmp_path / "M2bad", target)
    assert "not better" in str(err.value) and "--force" in str(err.value)
    assert trained_at(target) == before and previous_versions(target) == []
    # forcing is possible, and still keeps the previous model
    promote(tmp_path / "M2bad", target, force=True)
    assert trained_at(target) == trained_at(tmp_path / "M2bad") and trained_at(previous_versions(target)[0]) == before


def test_promotion_refuses_without_a_report_and_never_a_broken_model(loop: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "model"
    shutil.copytree(loop["model"], target)
    bare = tmp_path / "bare"
    shutil.copytree(loop["candidate"], bare)
    (bare / REPORT_FILE).unlink()
    with pytest.raises(PromotionError, match="no retrain_report.json"):
        promote(bare, target)
    (bare / REPORT_FILE).write_text("{not json")
    with pytest.raises(PromotionError, match="not a valid retrain report"):
        promote(bare, target)
    broken = tmp_path / "broken"
    broken.mkdir()
    with pytest.raises(FrontdeskError, match="frontdesk.json"):
        promote(broken, target, force=True)
    assert trained_at(target) == trained_at(loop["model"])
    # a first deployment (no target yet) with force
    fresh = tmp_path / "fresh" / "model"
    promote(bare, fresh, force=True)
    assert trained_at(fresh) == trained_at(bare) and previous_versions(fresh) == []


def test_promotion_without_an_atomic_exchange_uses_two_renames(loop: dict[str, Path], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import frontdesk.common.atomic as atomic

    monkeypatch.setattr(atomic, "exchange", lambda a, b: False)   # e.g. not Linux
    target = tmp_path / "model"
    shutil.copytree(loop["model"], target)
    promote(loop["candidate"], target)
    assert trained_at(target) == trained_at(loop["candidate"])
    assert trained_at(previous_versions(target)[0]) == trained_at(loop["model"])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_retrain_refuses_to_overwrite_the_serving_model(loop: dict[str, Path], support_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FrontdeskError, match="serving model"):
        retrain(loop["model"], loop["store"], loop["model"], data=support_dir)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("keep me")
    with pytest.raises(FrontdeskError, match="not a frontdesk model directory"):
        retrain(loop["model"], loop["store"], junk, data=support_dir)
    assert (junk / "notes.txt").read_text() == "keep me"


# -- the CLI ----------------------------------------------------------------------------------
def cli(*args: str) -> tuple[int, str, str]:
    return frontdesk_cli(*args)


def test_cli_retrain_and_promote(loop: dict[str, Path], support_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "model"
    shutil.copytree(loop["model"], target)
    store = f"sqlite:///{loop['store']}"
    code, stdout, _ = cli("retrain", "--model", str(target), "--store", store, "--data", str(support_dir),
                          "--out", str(tmp_path / "M2"), "--json")
    assert code == 0, stdout
    report = json.loads(stdout)
    assert report["better"] is True and report["new_labels"] == [LOYALTY]
    assert set(report["old"]) >= {"accuracy", "macro_f1", "escalation_rate", "accepted_accuracy"}

    code, stdout, _ = cli("retrain", "--model", str(target), "--store", store, "--data", str(support_dir),
                          "--out", str(tmp_path / "M2"), "--no-llm")
    assert code == 0
    assert "old vs new" in stdout and "loyalty_points" in stdout and "better" in stdout and "frontdesk promote" in stdout
    assert read_report(tmp_path / "M2").include_llm is False and read_report(tmp_path / "M2").sizes["llm"] == 0

    code, stdout, _ = cli("promote", "--candidate", str(tmp_path / "M2"), "--to", str(target))
    assert code == 0 and "previous model kept at" in stdout
    assert LOYALTY in Router.load(target).labels and len(previous_versions(target)) == 1

    code, _, err = cli("promote", "--candidate", str(tmp_path / "M2"), "--to", str(target))
    assert code == 2 and "--force" in err
