"""Weekly labelling round trips: sample → Label Studio / Argilla → annotate → import → trend.

Decisions are routed by a real model over the bundled support dataset's validation and test
messages (whose true labels play the annotator) and stored in a real SQLite store (one test also
on PostgreSQL via ``store_url``).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import frontdesk_cli

from frontdesk import Dataset, Decision, FrontdeskError, Router
from frontdesk.loop.labelling import (
    LabelledItem,
    argilla_settings,
    from_argilla,
    from_label_studio,
    import_labels,
    label_studio_config,
    labelled_trend,
    sample_decisions,
    score_labels,
    to_argilla,
    to_label_studio,
)
from frontdesk.loop.labelling.sample import _allocate
from frontdesk.store.store import Store

WEEK1 = datetime(2025, 3, 4, 9, 0, tzinfo=timezone.utc)   # a Tuesday (ISO week starting Monday 3 March)
WEEK2 = datetime(2025, 3, 12, 9, 0, tzinfo=timezone.utc)  # the Wednesday after


def route_into(store: Store, router: Router, support: Dataset) -> dict[str, tuple[str, ...]]:
    """Route validation (week 1) and test (week 2) messages into the store; returns decision id → true labels."""
    gold: dict[str, tuple[str, ...]] = {}
    for start, examples in ((WEEK1, support.validation), (WEEK2, support.test)):
        decisions = [d.model_copy(update={"created_at": start + timedelta(minutes=i)})
                     for i, d in enumerate(router.route_batch([ex.text for ex in examples]))]
        store.save_decisions(decisions)
        gold.update({d.id: ex.labels for d, ex in zip(decisions, examples)})
    return gold


@pytest.fixture
def filled(tmp_path: Path, router: Router, support: Dataset) -> Iterator[tuple[Store, dict[str, tuple[str, ...]]]]:
    with Store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        yield store, route_into(store, router, support)


def test_sample_is_stratified_deterministic_and_skips_labelled(filled: tuple[Store, dict], support: Dataset) -> None:
    store, gold = filled
    everything = store.decisions()
    assert len(everything) == len(gold) == 192
    sample = sample_decisions(store, 40, seed=13)
    assert len(sample) == 40 and len({d.id for d in sample}) == 40
    assert [d.id for d in sample] == [d.id for d in sample_decisions(store, 40, seed=13)]
    assert [d.id for d in sample] != [d.id for d in sample_decisions(store, 40, seed=14)]
    assert sample == sorted(sample, key=lambda d: (d.created_at, d.id))
    pool = Counter(d.labels[0] for d in everything)
    got = Counter(d.labels[0] for d in sample)
    assert set(got) == set(pool)                                    # every predicted label is represented
    for label, size in pool.items():                                 # and proportionally (± rounding)
        assert abs(got[label] - 40 * size / len(everything)) < 1.5, (label, got[label], size)
    # since: only week 2
    week2 = sample_decisions(store, 500, since=WEEK2 - timedelta(hours=1))
    assert len(week2) == len(support.test) and all(d.created_at >= WEEK2 - timedelta(hours=1) for d in week2)
    # decisions already labelled are not sampled again
    import_labels(store, [LabelledItem(d.id, list(gold[d.id]), "ann") for d in sample[:10]])
    again = sample_decisions(store, 500)
    assert len(again) == 192 - 10 and not {d.id for d in sample[:10]} & {d.id for d in again}
    assert len(sample_decisions(store, 500, exclude_labelled=False)) == 192
    uniform = sample_decisions(store, 30, stratify=None)
    assert len(uniform) == 30
    with pytest.raises(FrontdeskError, match="stratify"):
        sample_decisions(store, 10, stratify="tier")


def test_allocation_is_proportional_with_a_floor_of_one() -> None:
    assert _allocate({"a": 90, "b": 9, "c": 1}, 10) == {"a": 8, "b": 1, "c": 1}
    assert _allocate({"a": 50, "b": 50}, 10) == {"a": 5, "b": 5}
    assert _allocate({"a": 3, "b": 2, "c": 1}, 2) == {"a": 1, "b": 1}   # fewer slots than strata: largest first
    alloc = _allocate({"a": 2, "b": 100}, 50)
    assert alloc["a"] <= 2 and sum(alloc.values()) == 50


def test_label_studio_round_trip(filled: tuple[Store, dict], router: Router, tmp_path: Path) -> None:
    store, gold = filled
    labels = list(router.labels)
    sample = sample_decisions(store, 60)
    tasks = to_label_studio(sample, labels)
    config = ET.fromstring(label_studio_config(labels))
    choices = config.find("Choices")
    text_tag = config.find("Text")
    assert choices is not None and text_tag is not None
    assert [c.get("value") for c in choices.findall("Choice")] == labels and choices.get("choice") == "single"
    assert text_tag.get("value") == "$text" and choices.get("toName") == text_tag.get("name")
    by_id = {d.id: d for d in sample}
    for task in tasks:
        d = by_id[task["meta"]["decision_id"]]
        assert task["data"] == {"text": d.text, "decision_id": d.id}
        (pred,) = task["predictions"]
        (result,) = pred["result"]
        assert result["from_name"] == choices.get("name") and result["to_name"] == text_tag.get("name")
        assert result["type"] == "choices" and result["value"]["choices"] == d.labels[:1]
        assert pred["score"] == pytest.approx(d.confidence)
    multi = ET.fromstring(label_studio_config(labels, multi=True)).find("Choices")
    assert multi is not None and multi.get("choice") == "multiple"

    # An annotator labels 50 tasks (true labels), cancels one, leaves the rest; one task is foreign.
    pending_before = {r.decision_id for r in store.review_queue(limit=1000)}
    exported = []
    for i, task in enumerate(tasks):
        task = dict(task, id=i + 1)
        did = task["meta"]["decision_id"]
        if i < 50:
            task["annotations"] = [{"id": 1000 + i, "completed_by": 7, "was_cancelled": False, "result": [
                {"id": f"r{i}", "from_name": "label", "to_name": "text", "type": "choices",
                 "value": {"choices": list(gold[did])}}]}]
        elif i == 50:
            task["annotations"] = [{"id": 2000, "completed_by": {"id": 8, "email": "b@x"}, "was_cancelled": True,
                                    "result": []}]
        exported.append(task)
    exported.append({"id": 999, "data": {"text": "hello", "decision_id": "not-a-decision"}, "meta": {},
                     "annotations": [{"completed_by": 7, "result": [{"from_name": "label", "to_name": "text",
                                                                    "type": "choices", "value": {"choices": ["off_topic"]}}]}]})
    path = tmp_path / "label-studio-export.json"
    path.write_text(json.dumps(exported))

    items = from_label_studio(path)
    assert len(items) == 51 and items[0] == LabelledItem(sample[0].id, list(gold[sample[0].id]), "7")
    report = import_labels(store, items)
    assert report.imported == 50 and [s.decision_id for s in report.skipped] == ["not-a-decision"]
    assert "unknown decision id" in report.skipped[0].reason
    labelled = [d for d in sample[:50]]
    assert report.changed == sum(set(d.labels) != set(gold[d.id]) for d in labelled)
    for d in labelled:
        fb = store.feedback(decision_id=d.id)
        assert fb[-1].source == "labelling" and fb[-1].labels == list(gold[d.id]) and fb[-1].actor == "7"
    # review items of labelled decisions are resolved with the annotator's labels; others stay pending
    needing = {d.id for d in labelled if d.needs_review}
    assert needing and needing <= pending_before and report.reviews_resolved == len(needing)
    pending_after = {r.decision_id for r in store.review_queue(limit=1000)}
    assert not needing & pending_after and pending_after == pending_before - needing
    resolved = {r.decision_id: r for r in store.review_queue(status="resolved", limit=1000)}
    assert all(resolved[i].labels == list(gold[i]) for i in needing)
    # the labels are training data now, with the human label
    examples = {text: labels for text, labels, _src in store.training_examples()}
    assert all(examples[d.text] == gold[d.id] for d in labelled)
    # importing the same export again changes nothing
    again = import_labels(store, from_label_studio(json.loads(path.read_text())))
    assert again.imported == 0 and again.unchanged == 50 and again.reviews_resolved == 0

    # the weekly trend: the model's decisions vs the human labels, per ISO week
    trend = labelled_trend(store)
    assert [w["start"][:10] for w in trend] == sorted({("2025-03-03" if d.created_at < WEEK2 - timedelta(days=2)
                                                        else "2025-03-10") for d in labelled})
    assert sum(w["n"] for w in trend) == 50
    for w in trend:
        rows = [d for d in labelled if w["start"] <= d.created_at.isoformat() < w["end"]]
        assert w["n"] == len(rows)
        assert w["accuracy"] == pytest.approx(sum(set(d.labels) == set(gold[d.id]) for d in rows) / len(rows))
        assert set(w["per_label_recall"]) == {lab for d in rows for lab in gold[d.id]}
        assert 0.0 <= w["macro_f1"] <= 1.0 and sum(w["support"].values()) == len(rows)
    assert labelled_trend(store, source="nobody") == []
    assert len(labelled_trend(store, window_days=365)) == 1


def test_argilla_round_trip(router: Router, support: Dataset, store_url: str, tmp_path: Path) -> None:
    with Store(store_url) as store:
        gold = route_into(store, router, support)
        labels = list(router.labels)
        sample = sample_decisions(store, 24)
        settings = argilla_settings(labels, descriptions=support.descriptions)
        (question,) = settings["questions"]
        assert question["name"] == "label" and question["settings"]["type"] == "label_selection"
        assert [o["value"] for o in question["settings"]["options"]] == labels
        assert settings["fields"][0]["name"] == "text" and settings["fields"][0]["settings"]["type"] == "text"
        assert {m["name"] for m in settings["metadata"]} == {"decision_id", "tier", "confidence"}
        assert argilla_settings(labels, multi=True)["questions"][0]["settings"]["type"] == "multi_label_selection"

        records = to_argilla(sample, labels)
        for rec, d in zip(records, sample):
            assert rec["fields"] == {"text": d.text} and rec["metadata"]["decision_id"] == d.id == rec["id"]
            assert rec["suggestions"]["label"] == {"value": d.labels[0], "score": pytest.approx(d.confidence), "agent": "frontdesk"}
            assert rec["responses"] == {}
        # Annotators answer (Record.to_dict layout): two agree, one discards; one record disagrees 1:1.
        exported = []
        for i, (rec, d) in enumerate(zip(records, sample)):
            rec = json.loads(json.dumps(rec))
            truth = gold[d.id][0]
            if i < 16:
                rec["responses"] = {"label": [{"value": truth, "user_id": "u1", "status": "submitted"},
                                              {"value": truth, "user_id": "u2", "status": "submitted"},
                                              {"value": "off_topic", "user_id": "u3", "status": "discarded"}]}
            elif i == 16:
                other = next(lab for lab in labels if lab != truth)
                rec["responses"] = {"label": [{"value": truth, "user_id": "u1"}, {"value": other, "user_id": "u2"}]}
            elif i < 20:  # the flattened export (to_list(flatten=True)) for a few records
                rec = {"id": rec["id"], "text": d.text, "decision_id": d.id, "label.responses": [truth, truth, "off_topic"],
                       "label.responses.users": ["u1", "u3", "u2"], "label.responses.status": ["submitted", "submitted", "submitted"]}
            exported.append(rec)
        path = tmp_path / "argilla.json"
        path.write_text(json.dumps(exported))
        items = from_argilla(path)
        assert len(items) == 16 * 2 + 2 + 3 * 3
        report = import_labels(store, items)
        assert report.imported == 16 + 3
        assert [s.decision_id for s in report.skipped] == [sample[16].id] and "disagree" in report.skipped[0].reason
        fb = store.feedback(decision_id=sample[0].id)[-1]
        assert fb.labels == [gold[sample[0].id][0]] and fb.actor == "u1, u2" and fb.source == "labelling"
        flat = store.feedback(decision_id=sample[17].id)[-1]
        assert flat.labels == [gold[sample[17].id][0]] and flat.actor == "u1, u3"   # the 2-of-3 majority
        trend = labelled_trend(store)
        assert sum(w["n"] for w in trend) == 19
        rows = [d for i, d in enumerate(sample) if i < 20 and i != 16]
        overall = score_labels([gold[d.id] for d in rows], [d.labels for d in rows])
        assert sum(w["accuracy"] * w["n"] for w in trend) / 19 == pytest.approx(overall["accuracy"])


def test_score_labels_matches_hand_computation() -> None:
    s = score_labels([["a"], ["a"], ["b"], ["c"]], [["a"], ["b"], ["b"], ["a"]])
    assert s["accuracy"] == 0.5 and s["per_label_recall"] == {"a": 0.5, "b": 1.0, "c": 0.0}
    # F1: a = 2·1/(2+1+1) = .5, b = 2·1/(2+1+0) = .667, c = 0
    assert s["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0) / 3)


def test_importers_read_json_min_and_reject_garbage(tmp_path: Path) -> None:
    rows = [{"id": 1, "text": "x", "decision_id": "d1", "label": "refund_request", "annotator": "a@x"},
            {"id": 2, "text": "y", "decision_id": "d2", "label": {"choices": ["a", "b"]}, "annotator": "a@x"},
            {"id": 3, "text": "z", "decision_id": "d3"}]
    assert from_label_studio(rows) == [LabelledItem("d1", ["refund_request"], "a@x"), LabelledItem("d2", ["a", "b"], "a@x")]
    jsonl = tmp_path / "records.jsonl"
    jsonl.write_text("\n".join(json.dumps({"id": "d9", "fields": {"text": "t"}, "metadata": {},
                                           "responses": {"label": [{"value": ["x", "y"], "user_id": "u"}]}}) for _ in range(2)))
    assert from_argilla(jsonl) == [LabelledItem("d9", ["x", "y"], "u")] * 2
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    with pytest.raises(FrontdeskError, match="bad.json:1: invalid JSON"):
        from_label_studio(bad)
    with pytest.raises(FrontdeskError, match="no such file"):
        from_argilla(tmp_path / "missing.json")
    with pytest.raises(FrontdeskError, match="expected a list"):
        from_label_studio(42)


# -- the CLI ----------------------------------------------------------------------------------
def cli(*args: str) -> tuple[int, str, str]:
    return frontdesk_cli(*args)


@pytest.mark.parametrize("fmt", ["label-studio", "argilla"])
def test_cli_sample_import_trend(fmt: str, tmp_path: Path, router: Router, support: Dataset, saved_model: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with Store(url) as store:
        gold = route_into(store, router, support)
    out = tmp_path / "sample.json"
    code, stdout, err = cli("sample", "--store", url, "--n", "30", "--format", fmt, "--out", str(out), "--model", str(saved_model))
    assert code == 0, err
    exported = json.loads(out.read_text())
    assert len(exported) == 30 and "30 decisions sampled" in stdout
    side = out.with_name("sample.label_config.xml" if fmt == "label-studio" else "sample.argilla_settings.json")
    assert side.is_file()
    if fmt == "label-studio":
        assert [c.get("value") for c in ET.fromstring(side.read_text()).iter("Choice")] == list(router.labels)
        for task in exported:
            task["annotations"] = [{"completed_by": 3, "result": [{"from_name": "label", "to_name": "text", "type": "choices",
                                                                   "value": {"choices": list(gold[task["meta"]["decision_id"]])}}]}]
    else:
        assert json.loads(side.read_text())["questions"][0]["settings"]["options"][0]["description"]
        for rec in exported:
            rec["responses"] = {"label": [{"value": gold[rec["metadata"]["decision_id"]][0], "user_id": "u1", "status": "submitted"}]}
    labelled = tmp_path / "labelled.json"
    labelled.write_text(json.dumps(exported))

    code, stdout, err = cli("import-labels", "--store", url, "--format", fmt, str(labelled), "--json")
    assert code == 0, err
    report = json.loads(stdout)
    assert report["imported"] == 30 and report["skipped"] == [] and report["source"] == "labelling"
    code, stdout, _ = cli("import-labels", "--store", url, "--format", fmt, str(labelled))
    assert code == 0 and "already imported" in stdout

    code, stdout, _ = cli("trend", "--store", url, "--json")
    assert code == 0
    windows = json.loads(stdout)
    assert sum(w["n"] for w in windows) == 30 and all(0 <= w["accuracy"] <= 1 for w in windows)
    code, stdout, _ = cli("trend", "--store", url)
    assert code == 0 and "2025-03-" in stdout and "accuracy" in stdout

    code, _, err = cli("sample", "--store", url, "--format", "csv", "--out", str(out))
    assert code == 2 and "unknown format" in err
    code, _, err = cli("sample", "--store", url, "--since", "last tuesday", "--out", str(out))
    assert code == 2 and "ISO" in err


def test_cli_sample_jsonl_without_a_model(tmp_path: Path, router: Router, support: Dataset) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with Store(url) as store:
        route_into(store, router, support)
    out = tmp_path / "sample.jsonl"
    code, _, err = cli("sample", "--store", url, "--n", "12", "--format", "jsonl", "--out", str(out),
                       "--since", "2025-03-10")
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 12 and all(row["created_at"] >= "2025-03-10" for row in rows)
    assert {"decision_id", "text", "labels", "confidence", "tier"} <= set(rows[0])
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    code, _, err = cli("sample", "--store", missing, "--out", str(tmp_path / "x.json"))
    assert code == 2 and "no database at" in err and not (tmp_path / "missing.db").exists()
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    Store(empty).close()
    code, _, err = cli("sample", "--store", empty, "--out", str(tmp_path / "x.json"))
    assert code == 2 and "no decisions" in err


def test_trend_windows_follow_iso_weeks(tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path / 's.db'}") as store:
        made = []
        for i, (when, pred, truth) in enumerate([
            (datetime(2025, 3, 3, 0, 0, tzinfo=timezone.utc), "a", "a"),      # Monday 00:00: week of 3 March
            (datetime(2025, 3, 9, 23, 59, tzinfo=timezone.utc), "a", "b"),    # Sunday: same week
            (datetime(2025, 3, 10, 0, 0, tzinfo=timezone.utc), "b", "b"),     # next Monday: next week
        ]):
            d = Decision(text=f"m{i}", labels=[pred], confidence=0.9, tier="linear", escalated=False, flagged=False,
                         created_at=when)
            store.save_decision(d)
            made.append((d, truth))
        import_labels(store, [LabelledItem(d.id, [t], "x") for d, t in made])
        trend = labelled_trend(store)
    assert [(w["start"][:10], w["n"], w["accuracy"]) for w in trend] == [("2025-03-03", 2, 0.5), ("2025-03-10", 1, 1.0)]
    assert trend[0]["per_label_recall"] == {"a": 1.0, "b": 0.0} and trend[0]["end"][:10] == "2025-03-10"
