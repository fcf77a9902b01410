"""The loop that compounds: human re-routes and LLM answers become training data.

Three steps, each usable on its own (and from the CLI: ``frontdesk retrain`` / ``promote``):

1. :func:`build_training_set` merges the original dataset with what the store learned in
   production (feedback, review resolutions, imported labels, accepted LLM answers) and sets a
   deterministic slice of the human-labelled examples aside for an honest comparison.
2. :func:`retrain` trains a candidate model M2 with the same tiers, parameters, settings and
   objective as the serving model M, then evaluates **both** on the same held-back examples and
   writes ``retrain_report.json`` (a :class:`RetrainReport`) next to the candidate.
3. :func:`~frontdesk.loop.promote.promote` swaps the candidate into the serving directory only when its report says it is
   not worse (or when forced), keeping the previous model as ``<target>.previous-<timestamp>``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from frontdesk.data.dataset import Dataset, Example
from frontdesk.common.progress import Progress
from frontdesk.common.atomic import replace_directory, staging_path
from frontdesk.errors import ConfigError
from frontdesk.gating.gate import Objective
from frontdesk.gating.oos import OOSOptions
from frontdesk.cascade.router import MANIFEST, Router
from frontdesk.common.textkey import text_key
from frontdesk.store.store import Store

REPORT_FILE = "retrain_report.json"
HUMAN_SOURCES_NOTE = "every feedback source except 'llm' (feedback, review, labelling, …) counts as a human label"



# -- the training set -----------------------------------------------------------------------------
def slice_of(text: str, seed: int = 13) -> float:
    """A deterministic number in [0, 1) for a text: the hash of its normalised form (and the seed).

    The same message always lands in the same slice, whatever else is in the store, so a message
    held back once stays held back in every later retrain.
    """
    digest = hashlib.blake2b(f"{seed}\x00{text_key(text)}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


@dataclass
class TrainingSet:
    """What :func:`build_training_set` built, plus the counts that explain it."""

    dataset: Dataset
    held_back: list[Example]
    counts: dict[str, int] = field(default_factory=dict)
    new_labels: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)


def build_training_set(
    base: Dataset, store: Store, *, include_llm: bool = True, holdout: float = 0.2, validation: float = 0.1,
    seed: int = 13,
) -> tuple[Dataset, list[Example]]:
    """Merge the original dataset with the labels learned in production; returns (dataset, held_back).

    Sources, from ``store.training_examples(include_llm=...)`` (which already keeps one example per
    normalised text, the latest human label winning over any LLM label):

    * **human** — every feedback source except ``"llm"``: user re-routes (``feedback``), review
      resolutions (``review``), imported annotations (``labelling``). The latest label per
      decision wins.
    * **llm** — decisions an LLM tier accepted without a flag (only with ``include_llm``).
    * **original** — ``base.train`` / ``base.validation`` / ``base.test``.

    De-duplication is on :func:`frontdesk.common.textkey.text_key` (NFKC, case-folded, whitespace
    collapsed); priority is human > llm > original:

    * A human label for a text that is in the original **train** split replaces that example
      (every copy of it); a human label for a text in the original **validation/test** split
      corrects the label in place — the example stays in its split, so the test set remains the
      same messages and never leaks into training.
    * An LLM label replaces an original **train** example with the same text. It never touches
      validation/test (gold labels stay human): such an LLM example is dropped (counted in
      ``skipped["llm_matches_eval_text"]``).
    * Labels the base dataset does not know are allowed **only from human sources** (a new intent
      is added to the label list, after the base labels, sorted); an LLM example naming an unknown
      label is dropped (``skipped["llm_unknown_label"]``).

    Placement of the human examples that are not original validation/test texts, by
    ``u = slice_of(text, seed)`` (a hash of the normalised text, uniform in [0, 1)):

    * ``u < holdout`` → **held back**: not trained on, not used for thresholds; returned as the
      second value, for comparing the old and the new model;
    * ``holdout ≤ u < holdout + validation`` → **validation** (appended to the original
      validation split, so calibration and thresholds adapt to production traffic);
    * otherwise → **train**.

    Exception: when every human example of a *new* label landed in held-back/validation, those
    examples go to train instead (a label needs training examples to be learned at all; its
    counts are in ``counts["new_label_moved_to_train"]``). LLM examples always go to train.
    The original splits keep their order; store examples follow, oldest decision first.

    Use :func:`build_training` for the same result plus the counts behind it.
    """
    ts = build_training(base, store, include_llm=include_llm, holdout=holdout, validation=validation, seed=seed)
    return ts.dataset, ts.held_back


def build_training(
    base: Dataset, store: Store, *, include_llm: bool = True, holdout: float = 0.2, validation: float = 0.1,
    seed: int = 13,
) -> TrainingSet:
    """:func:`build_training_set` returning a :class:`TrainingSet` (dataset, held back, counts)."""
    if not 0.0 <= holdout < 1.0 or not 0.0 <= validation < 1.0 or holdout + validation >= 1.0:
        raise ConfigError(f"holdout ({holdout}) and validation ({validation}) must be shares in [0, 1) that sum "
                          "to less than 1 (the rest is trained on)", field="holdout")
    known = set(base.labels)
    produced = store.training_examples(include_llm=include_llm)

    # Where each normalised text occurs in the original data.
    eval_index: dict[str, list[tuple[str, int]]] = {}
    for split in ("validation", "test"):
        for i, ex in enumerate(getattr(base, split)):
            eval_index.setdefault(text_key(ex.text), []).append((split, i))
    train_labels: dict[str, tuple[str, ...]] = {}
    for ex in base.train:
        train_labels.setdefault(text_key(ex.text), ex.labels)

    validation_ex = list(base.validation)
    test_ex = list(base.test)
    overridden_train: set[str] = set()
    human_train: list[Example] = []
    human_val: list[Example] = []
    held: list[Example] = []
    llm_train: list[Example] = []
    skipped = {"llm_unknown_label": 0, "llm_matches_eval_text": 0}
    counts = {"feedback_total": 0, "corrected_original": 0, "corrected_eval": 0}
    by_source: dict[str, int] = {}
    new_labels: list[str] = []

    for text, labels, source in produced:
        key = text_key(text)
        labels = tuple(dict.fromkeys(labels))
        if source == "llm":
            if any(label not in known for label in labels):
                skipped["llm_unknown_label"] += 1
                continue
            if key in eval_index:
                skipped["llm_matches_eval_text"] += 1
                continue
            if key in train_labels:
                overridden_train.add(key)
            llm_train.append(Example(text, labels))
            continue
        counts["feedback_total"] += 1
        by_source[source] = by_source.get(source, 0) + 1
        new_labels.extend(label for label in labels if label not in known and label not in new_labels)
        if key in eval_index:
            for split, i in eval_index[key]:
                target = validation_ex if split == "validation" else test_ex
                if target[i].labels != labels:
                    counts["corrected_eval"] += 1
                target[i] = Example(target[i].text, labels)
            continue
        if key in train_labels:
            overridden_train.add(key)
            counts["corrected_original"] += train_labels[key] != labels
        u = slice_of(text, seed)
        example = Example(text, labels)
        if u < holdout:
            held.append(example)
        elif u < holdout + validation:
            human_val.append(example)
        else:
            human_train.append(example)

    # A new label must be trained on: pull its examples back into train when none landed there.
    moved = 0
    for label in new_labels:
        if any(label in ex.labels for ex in human_train):
            continue
        for pool in (held, human_val):
            keep = [ex for ex in pool if label not in ex.labels]
            moved += len(pool) - len(keep)
            human_train.extend(ex for ex in pool if label in ex.labels)
            pool[:] = keep
    original_train = [ex for ex in base.train if text_key(ex.text) not in overridden_train]
    train = original_train + human_train + llm_train
    labels_out = tuple(base.labels) + tuple(sorted(new_labels))
    dataset = Dataset(train, validation_ex + human_val, test_ex, labels=labels_out, descriptions=dict(base.descriptions),
                      name=f"{base.name}+production")
    counts.update({
        "original": len(original_train), "original_replaced": len(base.train) - len(original_train),
        "feedback": len(human_train), "feedback_validation": len(human_val), "feedback_held_back": len(held),
        "llm": len(llm_train), "total": len(train), "validation": len(dataset.validation),
        "test": len(test_ex), "new_label_moved_to_train": moved,
        **{f"source_{k}": v for k, v in sorted(by_source.items())},
    })
    return TrainingSet(dataset, held, counts, sorted(new_labels), skipped)


# -- the retrain report ---------------------------------------------------------------------------
class Metrics(BaseModel):
    """One model's headline numbers on the held-back examples."""

    n: int
    accuracy: float
    macro_f1: float
    escalation_rate: float
    accepted_accuracy: float


class LabelChange(BaseModel):
    """A label whose recall on the held-back examples moved by at least the report's threshold."""

    label: str
    old_recall: float
    new_recall: float
    support: int


class PromotionRule(BaseModel):
    """When a candidate counts as *better* (not worse) than the serving model on the held-back slice."""

    max_accuracy_drop: float = Field(0.005, ge=0.0, le=1.0, description="new accuracy ≥ old − this")
    max_escalation_increase: float = Field(0.02, ge=0.0, le=1.0, description="new escalation rate ≤ old + this")

    def describe(self) -> str:
        return (f"new accuracy ≥ old − {self.max_accuracy_drop * 100:g} points AND new escalation rate ≤ old + "
                f"{self.max_escalation_increase * 100:g} points, on the held-back examples")

    def judge(self, old: Metrics, new: Metrics) -> tuple[bool, list[str]]:
        reasons = []
        ok_acc = new.accuracy >= old.accuracy - self.max_accuracy_drop - 1e-12
        ok_esc = new.escalation_rate <= old.escalation_rate + self.max_escalation_increase + 1e-12
        reasons.append(f"accuracy {old.accuracy:.2%} → {new.accuracy:.2%} "
                       + ("(ok)" if ok_acc else f"(drops more than {self.max_accuracy_drop * 100:g} points)"))
        reasons.append(f"escalation {old.escalation_rate:.2%} → {new.escalation_rate:.2%} "
                       + ("(ok)" if ok_esc else f"(rises more than {self.max_escalation_increase * 100:g} points)"))
        return ok_acc and ok_esc, reasons


class RetrainReport(BaseModel):
    """What ``retrain`` did and how the candidate compares with the serving model (``retrain_report.json``)."""

    created_at: datetime
    old_model: str
    new_model: str
    baseline_trained_at: str | None = Field(None, description="the serving model's meta.trained_at (checked by promote)")
    candidate_trained_at: str | None = None
    data: str
    store: str
    include_llm: bool
    tiers: list[str]
    sizes: dict[str, int] = Field(description="original/feedback/llm/total training examples, validation, held back, …")
    skipped: dict[str, int] = Field(default_factory=dict)
    held_back: dict[str, int] = Field(description="examples both models were evaluated on, by part")
    evaluated_on: str = Field(description="which examples the comparison used, in words")
    old: Metrics
    new: Metrics
    by_part: dict[str, dict[str, float]] = Field(default_factory=dict, description="part → old/new accuracy and n")
    recall_changes: list[LabelChange] = Field(default_factory=list)
    new_labels: list[str] = Field(default_factory=list)
    better: bool
    rule: str
    rule_params: PromotionRule
    reasons: list[str] = Field(default_factory=list)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0


def _metrics(report: Any) -> Metrics:
    return Metrics(n=report.n, accuracy=report.accuracy, macro_f1=report.macro_f1,
                   escalation_rate=report.escalation_rate, accepted_accuracy=report.accepted_accuracy)


def _recall(report: Any) -> dict[str, tuple[float, int]]:
    return {m.label: (m.recall, m.support) for m in report.per_label}


def _tier_params(router: Router) -> tuple[list[str], dict[str, dict[str, Any]]]:
    kinds: list[str] = []
    params: dict[str, dict[str, Any]] = {}
    for tier in router.tiers:
        kinds.append(tier.kind)
        p = getattr(tier, "params", None)
        if isinstance(p, BaseModel):
            params[tier.kind] = p.model_dump()
        elif isinstance(p, Mapping):
            params[tier.kind] = dict(p)
    return kinds, params


def _objective(router: Router) -> Objective:
    saved = router.meta.get("objective")
    if isinstance(saved, Mapping):
        try:
            return Objective(**saved)
        except ValidationError:
            pass
    return Objective()


def retrain(
    model_dir: str | Path,
    store: str | os.PathLike[str] | Store,
    out_dir: str | Path,
    *,
    data: Dataset | str | Path,
    include_llm: bool = True,
    objective: Objective | None = None,
    progress: Progress | None = None,
    holdout: float = 0.2,
    validation: float = 0.1,
    seed: int = 13,
    max_accuracy_drop: float = 0.005,
    max_escalation_increase: float = 0.02,
    recall_change: float = 0.01,
) -> RetrainReport:
    """Train a candidate M2 from the serving model M's recipe plus production labels; compare both.

    M (``Router.load(model_dir)``) provides the tier list (by kind), each tier's parameters
    (``tier.params`` where present), the RouterSettings and the objective saved in its meta
    (``objective`` overrides it). The training set is :func:`build_training`'s; M2 is trained with
    :meth:`Router.train` and written to ``out_dir`` together with ``retrain_report.json``: the
    directory appears complete or not at all (written beside it, then renamed). Gates are refitted
    on the new validation split; hand-set gate overrides belong in ``frontdesk.yaml`` and still apply.

    Both models are evaluated (:func:`frontdesk.evaluation.evaluate.evaluate`) on the same examples: the
    held-back feedback slice plus the dataset's test split (human corrections applied), whichever
    exist; the report says which. ``better`` follows :class:`PromotionRule` with the given
    tolerances; ``recall_changes`` lists the labels whose recall moved by ≥ ``recall_change``.
    """
    from frontdesk.evaluation.evaluate import evaluate

    step = progress or (lambda _msg, _frac: None)
    model_path, out_path = Path(model_dir), Path(out_dir)
    if out_path.resolve() == model_path.resolve():
        raise ConfigError(f"--out {out_path} is the serving model's directory: write the candidate elsewhere and "
                          "promote it with `frontdesk promote` (which keeps the previous model)", field="out")
    if out_path.exists() and (not out_path.is_dir() or (any(out_path.iterdir()) and not (out_path / MANIFEST).is_file())):
        raise ConfigError(f"{out_path} exists and is not a frontdesk model directory: choose another output "
                          "directory (an earlier candidate there would be replaced)", field="out")
    rule = PromotionRule(max_accuracy_drop=max_accuracy_drop, max_escalation_increase=max_escalation_increase)

    step("loading the serving model", 0.0)
    old = Router.load(model_path)
    kinds, tier_params = _tier_params(old)
    objective = objective or _objective(old)
    dataset = data if isinstance(data, Dataset) else Dataset.load(data)
    data_name = str(data) if not isinstance(data, Dataset) else data.name

    owned = not isinstance(store, Store)
    st = Store(store) if owned else store  # type: ignore[arg-type]
    try:
        step("building the training set", 0.05)
        ts = build_training(dataset, st, include_llm=include_llm, holdout=holdout, validation=validation, seed=seed)
        store_name = st.url
    finally:
        if owned:
            st.close()
    compare = list(ts.held_back) + list(ts.dataset.test)
    if not compare:
        raise ConfigError("nothing to compare the models on: the dataset has no test split and no feedback was held "
                          "back (add test.jsonl, or collect more feedback)", field="data")

    def train_progress(msg: str, frac: float) -> None:
        step(f"training: {msg}", 0.1 + 0.6 * max(0.0, min(1.0, frac)))

    t0 = time.perf_counter()
    new = Router.train(ts.dataset, kinds, objective=objective, settings=old.settings.model_copy(),
                       tier_params=tier_params, progress=train_progress, oos=_oos_options(old))
    train_s = time.perf_counter() - t0
    new.meta["retrained_from"] = {"model": str(model_path), "trained_at": old.meta.get("trained_at")}
    new.meta["training_set"] = {"counts": ts.counts, "skipped": ts.skipped, "new_labels": ts.new_labels,
                                "include_llm": include_llm, "holdout": holdout, "validation": validation, "seed": seed}

    step("evaluating the serving model", 0.75)
    t1 = time.perf_counter()
    old_report, old_dec = evaluate(old, compare)
    step("evaluating the candidate", 0.85)
    new_report, new_dec = evaluate(new, compare)
    eval_s = time.perf_counter() - t1

    parts = {"feedback_holdout": len(ts.held_back), "original_test": len(ts.dataset.test)}
    by_part: dict[str, dict[str, float]] = {}
    start = 0
    for part, n in parts.items():
        if n:
            gold = [set(ex.labels) for ex in compare[start:start + n]]
            acc = lambda ds: sum(set(d.labels) == g for d, g in zip(ds[start:start + n], gold)) / n  # noqa: E731
            by_part[part] = {"n": n, "old_accuracy": acc(old_dec), "new_accuracy": acc(new_dec)}
        start += n
    described = " + ".join(
        f"{n} {'held-back feedback examples' if part == 'feedback_holdout' else 'examples of the original test split'}"
        for part, n in parts.items() if n
    )
    old_m, new_m = _metrics(old_report), _metrics(new_report)
    better, reasons = rule.judge(old_m, new_m)
    old_r, new_r = _recall(old_report), _recall(new_report)
    changes = []
    for label in sorted(set(old_r) | set(new_r)):
        o, n_ = old_r.get(label, (0.0, 0)), new_r.get(label, (0.0, 0))
        if abs(n_[0] - o[0]) >= recall_change - 1e-12:
            changes.append(LabelChange(label=label, old_recall=o[0], new_recall=n_[0], support=max(o[1], n_[1])))
    changes.sort(key=lambda c: c.new_recall - c.old_recall)

    report = RetrainReport(
        created_at=datetime.now(timezone.utc), old_model=str(model_path), new_model=str(out_path),
        baseline_trained_at=old.meta.get("trained_at"), candidate_trained_at=new.meta.get("trained_at"),
        data=data_name, store=store_name, include_llm=include_llm, tiers=kinds,
        sizes={**ts.counts, "held_back": len(compare)}, skipped=ts.skipped, held_back=parts,
        evaluated_on=described, old=old_m, new=new_m, by_part=by_part, recall_changes=changes,
        new_labels=[label for label in ts.new_labels if label in new.labels],
        better=better, rule=rule.describe(), rule_params=rule, reasons=reasons,
        train_seconds=round(train_s, 3), eval_seconds=round(eval_s, 3),
    )
    step("saving the candidate", 0.95)
    _write_candidate(new, report, out_path)
    step("done", 1.0)
    return report


def _write_candidate(router: Router, report: RetrainReport, out_path: Path) -> None:
    """Save model + report beside ``out_path`` and swap them into place (replacing an older candidate)."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_path(out_path)
    try:
        router.save(tmp)
        (tmp / REPORT_FILE).write_text(report.model_dump_json(indent=2), encoding="utf-8")
        replace_directory(tmp, out_path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def read_report(model_dir: str | Path) -> RetrainReport | None:
    """The ``retrain_report.json`` of a candidate directory, or None when there is none."""
    path = Path(model_dir) / REPORT_FILE
    if not path.is_file():
        return None
    return RetrainReport.model_validate_json(path.read_text(encoding="utf-8"))


def describe_sizes(sizes: Mapping[str, int]) -> Iterable[tuple[str, int]]:
    """The size counters in a stable, readable order (for tables)."""
    order = ("original", "original_replaced", "feedback", "llm", "total", "validation", "feedback_validation",
             "feedback_held_back", "feedback_total", "test", "held_back", "corrected_original", "corrected_eval",
             "new_label_moved_to_train")
    seen = set()
    for key in order:
        if key in sizes:
            seen.add(key)
            yield key, sizes[key]
    for key, value in sizes.items():
        if key not in seen:
            yield key, value


__all__ = [
    "LabelChange", "Metrics", "PromotionRule", "RetrainReport", "TrainingSet", "build_training",
    "build_training_set", "read_report", "retrain", "slice_of",
]


def _oos_options(old: Router) -> OOSOptions:
    """The out-of-scope options the serving model was trained with (the defaults for a model from before detectors)."""
    saved = old.meta.get("oos")
    if not isinstance(saved, dict):
        return OOSOptions()
    return OOSOptions(**{k: v for k, v in saved.items() if k in OOSOptions.model_fields})
