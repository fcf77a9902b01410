"""Distillation: a teacher router relabels the training texts (and unlabelled ones) for a student."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from frontdesk import ConfigError, DataError, Dataset, Example, Router, distill_dataset
from frontdesk.data.dataset import read_examples, write_jsonl
from frontdesk.loop.distill import SOFT_FLOOR, distill, read_texts
from frontdesk.tiers.linear import LinearTier

NEW_TEXTS = [
    "my parcel still has not shown up, it has been two weeks",
    "please give me my money back for the broken kettle",
    "I can't log in, the reset link never arrives",
    "hello",
]


def weights_by_text(examples: list[Example]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for ex in examples:
        out[ex.text][ex.labels[0]] = out[ex.text].get(ex.labels[0], 0.0) + ex.weight
    return out


def test_soft_labels_are_the_teachers_distribution(router: Router, support: Dataset) -> None:
    result = distill(router, support, NEW_TEXTS, mode="soft", keep_gold=False)
    data, report = result.dataset, result.report
    assert data.validation == support.validation and data.test == support.test and data.labels == support.labels
    rows = weights_by_text(data.train)
    probs = router.tiers[0].predict_proba(NEW_TEXTS)
    for text, p in zip(NEW_TEXTS, probs):
        got = rows[text]
        assert sum(got.values()) == pytest.approx(1.0)
        assert max(got, key=got.get) == router.labels[int(p.argmax())]  # the teacher's top label leads
        kept = {router.labels[j] for j in np.flatnonzero(p >= SOFT_FLOOR)} or {router.labels[int(p.argmax())]}
        assert set(got) == kept
        for label, w in got.items():  # renormalised teacher probabilities
            assert w == pytest.approx(p[router.labels.index(label)] / p[p >= SOFT_FLOOR].sum())
    # every text (labelled or not) carries total weight 1 without the gold rows
    assert sum(ex.weight for ex in data.train) == pytest.approx(len(support.train) + len(NEW_TEXTS))
    assert report.unlabelled_texts == 4 and report.teacher_texts == len(support.train) + 4 and report.gold_rows == 0
    assert report.teacher_rows == len(data.train) and report.teacher_tier == "linear"


def test_keep_gold_adds_each_gold_row_once(router: Router, support: Dataset) -> None:
    kept = distill(router, support, NEW_TEXTS, mode="soft", keep_gold=True)
    counts = Counter(kept.dataset.train)
    assert all(counts[ex] >= 1 for ex in support.train)  # each gold example (weight 1) is there
    assert kept.report.gold_rows == len(support.train)
    assert len(kept.dataset.train) == kept.report.teacher_rows + len(support.train)
    hard = distill(router, support, NEW_TEXTS, mode="hard", keep_gold=False)
    assert len(hard.dataset.train) == hard.report.teacher_rows and hard.report.gold_rows == 0
    hard_gold = distill(router, support, NEW_TEXTS, mode="hard", keep_gold=True)
    assert len(hard_gold.dataset.train) == hard.report.teacher_rows + len(support.train)


def test_hard_labels_follow_the_teachers_decisions_and_skip_review(router: Router, support: Dataset) -> None:
    unlabelled = [ex.text for ex in support.test[:60]]
    result = distill(router, support, unlabelled, mode="hard", keep_gold=False)
    decisions = router.route_batch(unlabelled)
    assert {d.tier for d in decisions} == {"linear", "human"}  # both outcomes are exercised
    rows = defaultdict(list)
    for ex in result.dataset.train:
        rows[ex.text].append(ex)
    for text, d in zip(unlabelled, decisions):
        if d.tier == "human":
            assert text not in rows  # sent to human review: no teacher label
        else:
            assert [ex.labels for ex in rows[text]] == [tuple(d.labels)] and rows[text][0].weight == 1.0
    review = sum(d.tier == "human" for d in router.route_batch([ex.text for ex in support.train] + unlabelled))
    assert result.report.skipped_review == review and result.report.skipped_low_confidence == 0
    strict = distill(router, support, unlabelled, mode="hard", keep_gold=False, min_confidence=0.9)
    confident = {d.text for d in decisions if d.tier != "human" and d.confidence >= 0.9}
    assert {ex.text for ex in strict.dataset.train} & set(unlabelled) == confident
    assert strict.report.skipped_low_confidence > 0 and strict.report.teacher_rows < result.report.teacher_rows


def test_a_student_trains_on_distilled_labels_and_gates_on_gold_validation(router: Router, support: Dataset) -> None:
    data = distill_dataset(router, support, [ex.text for ex in support.test[:40]], mode="soft")
    student = Router.train(data, ["linear"])
    assert student.meta["sizes"]["validation"] == len(support.validation)
    assert student.tiers[0].info()["sample_weight_sum"] == pytest.approx(sum(ex.weight for ex in data.train), rel=1e-3)
    texts = [ex.text for ex in support.test[40:]]
    agree = np.mean([a.labels == b.labels for a, b in zip(student.route_batch(texts), router.route_batch(texts))])
    assert agree >= 0.8  # the student imitates its teacher


def test_mismatched_teacher_labels_are_a_clear_error(router: Router) -> None:
    other = Dataset.from_examples(
        [("refund my order", "refund_request"), ("where is my parcel", "parcel_lost"), ("cancel it", "cancel_subscription")],
        [("refund please", "refund_request")],
    )
    with pytest.raises(DataError, match=r"label set does not match.*does not know: \['parcel_lost'\].*same labels"):
        distill_dataset(router, other)
    with pytest.raises(ConfigError, match="soft or hard"):
        distill_dataset(router, other, mode="warm")  # type: ignore[arg-type]


def test_example_weight_defaults_keep_old_behaviour(support: Dataset, tmp_path: Path) -> None:
    assert Example("a", ("b",)).weight == 1.0 and Example("a", ("b",)) == Example("a", ("b",), 1.0)
    assert all(ex.weight == 1.0 for split in (support.train, support.validation, support.test) for ex in split)
    write_jsonl(tmp_path / "d.jsonl", [Example("a", ("x",)), Example("b", ("y",), 0.25)])
    lines = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert "weight" not in lines[0] and lines[1]["weight"] == 0.25
    assert read_examples(tmp_path / "d.jsonl") == [Example("a", ("x",)), Example("b", ("y",), 0.25)]
    (tmp_path / "bad.jsonl").write_text('{"text": "a", "labels": ["x"], "weight": -1}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1: 'weight' must be a number ≥ 0"):
        read_examples(tmp_path / "bad.jsonl")


def test_sample_weights_change_the_linear_fit(support: Dataset) -> None:
    target = "refund_request"
    light = [Example(ex.text, ex.labels, 1e-3 if ex.labels[0] == target else 1.0) for ex in support.train]
    base = LinearTier().fit(support)
    weighted = LinearTier().fit(Dataset(light, support.validation, support.test, labels=support.labels))
    texts = [ex.text for ex in support.test if ex.labels[0] == target]
    col = list(base.labels_).index(target)
    assert weighted.predict_proba(texts)[:, col].mean() < 0.5 * base.predict_proba(texts)[:, col].mean()
    assert sum(base.labels_[i] == target for i in base.predict_proba(texts).argmax(1)) > sum(
        weighted.labels_[i] == target for i in weighted.predict_proba(texts).argmax(1))
    bad = [Example(ex.text, ex.labels, -1.0) for ex in support.train]
    with pytest.raises(DataError, match="≥ 0"):
        LinearTier().fit(Dataset(bad, support.validation, labels=support.labels))


def test_read_texts(tmp_path: Path) -> None:
    (tmp_path / "u.txt").write_text("one\n\n  two  \n")
    assert read_texts(tmp_path / "u.txt") == ["one", "two"]
    (tmp_path / "u.jsonl").write_text('{"text": "a", "labels": ["x"]}\n{"text": " b "}\n')
    assert read_texts(tmp_path / "u.jsonl") == ["a", "b"]
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n{"label": "x"}\n')
    with pytest.raises(DataError, match='bad.jsonl:2: .*"text"'):
        read_texts(tmp_path / "bad.jsonl")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "frontdesk", *args], capture_output=True, text=True, timeout=300)


def test_cli_train_distill_from(saved_model: Path, support_dir: Path, tmp_path: Path) -> None:
    unlabelled = tmp_path / "u.jsonl"
    unlabelled.write_text("".join(json.dumps({"text": t}) + "\n" for t in NEW_TEXTS))
    out = tmp_path / "student"
    res = run("train", "--data", str(support_dir), "--out", str(out), "--distill-from", str(saved_model),
              "--unlabelled", str(unlabelled), "--json")
    assert res.returncode == 0, res.stderr
    facts = json.loads(res.stdout)["distillation"]
    assert facts["mode"] == "soft" and facts["unlabelled_texts"] == 4 and facts["teacher_rows"] >= 364 and facts["gold_rows"] == 360
    saved = json.loads((out / "frontdesk.json").read_text())["meta"]["distillation"]
    assert saved == facts and saved["teacher"] == str(saved_model)
    res = run("train", "--data", str(support_dir), "--out", str(tmp_path / "hard"), "--distill-from", str(saved_model),
              "--distill", "hard", "--no-keep-gold")
    assert res.returncode == 0, res.stderr
    assert "training rows came from the teacher" in res.stdout and "plus 0 gold rows" in res.stdout


def test_cli_distill_errors(saved_model: Path, support_dir: Path, tmp_path: Path) -> None:
    res = run("train", "--data", str(support_dir), "--out", str(tmp_path / "m"), "--distill", "hard")
    assert res.returncode == 2 and "need --distill-from" in res.stderr
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"text": f"text number {i}", "labels": [f"label_{i % 3}"]}) + "\n" for i in range(30)))
    res = run("train", "--data", str(other), "--out", str(tmp_path / "m"), "--distill-from", str(saved_model))
    assert res.returncode == 2 and "label set does not match" in res.stderr and "Traceback" not in res.stderr
