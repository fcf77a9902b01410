"""Distillation benchmark: the linear tier on gold labels vs distilled from a teacher model (soft and hard).

Two settings, all numbers on the test split, every gate fitted on the gold validation split:

* full — every training text is labelled; the teacher relabels them (distilled rows + the gold rows).
* half — a low-label setting: the first 50 % of train (seeded, stratified by label) keeps its labels,
  the other 50 % is handed to the teacher as unlabelled texts. For an honest result the teacher must
  itself have been trained on the labelled half only: write that half with ``--write-half DIR``, train
  the teacher on it (``frontdesk train --data DIR --tiers encoder --out T_HALF``) and pass
  ``--half-teacher T_HALF``. Without it the full-data ``--teacher`` is used and the table says that the
  half rows are an upper bound (the teacher saw the labels of the "unlabelled" half).

Writes BENCHMARKS.md section ``distill``. Run:
``python bench/distill.py --teacher MODEL_DIR --dataset banking77 [--half-teacher T_HALF]``.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _common import BENCHMARKS, dataset_dir, stamp, table, write_section  # noqa: E402

from frontdesk import Dataset, Objective, Router  # noqa: E402
from frontdesk.data.dataset import write_jsonl  # noqa: E402
from frontdesk.loop.distill import distill  # noqa: E402
from frontdesk.evaluation.evaluate import EvalReport, report_from_decisions  # noqa: E402


def half_split(data: Dataset, seed: int) -> tuple[Dataset, list[str]]:
    """(the dataset with a seeded, stratified 50 % of train, the other 50 %'s texts as unlabelled)."""
    from sklearn.model_selection import train_test_split

    firsts = [ex.labels[0] for ex in data.train]
    stratify = firsts if min(Counter(firsts).values()) >= 2 else None
    labelled, rest = train_test_split(list(data.train), train_size=0.5, random_state=seed, stratify=stratify)
    half = Dataset(list(labelled), data.validation, data.test, labels=data.labels, descriptions=data.descriptions,
                   name=f"{data.name}-half")
    return half, [ex.text for ex in rest]


def evaluate_fast(router: Router, data: Dataset) -> EvalReport:
    """Test-split metrics, routed in one batch (an encoder teacher batches far better than one by one)."""
    return report_from_decisions(router, data.test, router.route_batch([ex.text for ex in data.test]))


def row(name: str, report: EvalReport, rows_from_teacher: str = "—", train_s: float | None = None) -> list[str]:
    return [name, f"{report.accuracy:.2%}", f"{report.macro_f1:.2%}", f"{report.escalation_rate:.1%}",
            f"{report.accepted_accuracy:.2%}", rows_from_teacher, "—" if train_s is None else f"{train_s:.1f}"]


def students(teacher: Router, data: Dataset, unlabelled: list[str], objective: Objective, keep_gold: bool) -> list[list[str]]:
    """Linear on gold, then linear distilled from ``teacher`` (soft, hard): one table row each."""
    out = []
    t0 = time.perf_counter()
    gold = Router.train(data, ["linear"], objective=objective)
    out.append(row("linear, gold labels", evaluate_fast(gold, data), train_s=time.perf_counter() - t0))
    print("  ", out[-1], flush=True)
    for mode in ("soft", "hard"):
        result = distill(teacher, data, unlabelled, mode=mode, keep_gold=keep_gold)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        student = Router.train(result.dataset, ["linear"], objective=objective)
        r = result.report
        made = f"{r.teacher_rows:,} rows / {r.teacher_texts:,} texts" + (f" ({r.skipped_review:,} skipped)" if r.skipped_review else "")
        gold_note = " + gold" if keep_gold else ""
        out.append(row(f"linear, distilled {mode}{gold_note}", evaluate_fast(student, result.dataset), made, time.perf_counter() - t0))
        print("  ", out[-1], flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", type=Path, help="teacher model directory (trained on the full train split)")
    ap.add_argument("--half-teacher", type=Path, help="teacher trained on the labelled half only (see --write-half)")
    ap.add_argument("--teacher-trained-on-half", action="store_true", help="--teacher itself was trained on the labelled half")
    ap.add_argument("--dataset", default="banking77", help="a dataset folder under $FRONTDESK_DATA")
    ap.add_argument("--settings", default="full,half", help="full and/or half")
    ap.add_argument("--seed", type=int, default=13, help="seed of the stratified 50 %% split")
    ap.add_argument("--max-escalation", type=float, default=0.2, help="gate objective (fitted on gold validation)")
    ap.add_argument("--no-keep-gold", action="store_true", help="train students on the teacher's labels only")
    ap.add_argument("--write-half", type=Path, help="write the labelled-half dataset here (to train the half teacher) and exit")
    ap.add_argument("--no-write", action="store_true", help="print only; do not touch BENCHMARKS.md")
    args = ap.parse_args()
    if args.teacher is None and args.write_half is None:
        ap.error("--teacher MODEL_DIR is required (or --write-half DIR)")

    data = Dataset.load(dataset_dir(args.dataset))
    if args.write_half:
        half, unlabelled = half_split(data, args.seed)
        args.write_half.mkdir(parents=True, exist_ok=True)
        for split in ("train", "validation", "test"):
            write_jsonl(args.write_half / f"{split}.jsonl", half.split(split))
        (args.write_half / "labels.txt").write_text("\n".join(data.labels) + "\n", encoding="utf-8")
        print(f"wrote {args.write_half}: {len(half.train)} labelled training examples ({len(unlabelled)} held back as unlabelled)")
        return
    objective = Objective(max_escalation=args.max_escalation)
    keep_gold = not args.no_keep_gold
    teacher = Router.load(args.teacher)
    kinds = "+".join(t.kind for t in teacher.tiers)
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    sections = []

    if "full" in settings:
        print(f"== {args.dataset}: full ({len(data.train)} labelled)", flush=True)
        rows = [row(f"teacher ({kinds}), for reference", evaluate_fast(teacher, data))]
        rows += students(teacher, data, [], objective, keep_gold)
        sections.append(f"### (a) All {len(data.train):,} training texts labelled\n\n"
                        + table(["model", "accuracy", "macro-F1", "escalated", "accuracy on accepted", "from the teacher", "train s"], rows))
    if "half" in settings:
        half, unlabelled = half_split(data, args.seed)
        half_teacher = Router.load(args.half_teacher) if args.half_teacher else teacher
        honest = args.half_teacher is not None or args.teacher_trained_on_half
        print(f"== {args.dataset}: half ({len(half.train)} labelled, {len(unlabelled)} unlabelled)", flush=True)
        rows = [row(f"teacher ({'+'.join(t.kind for t in half_teacher.tiers)}), for reference", evaluate_fast(half_teacher, data))]
        rows += students(half_teacher, half, unlabelled, objective, keep_gold)
        note = ("The teacher was trained on the labelled half only." if honest else
                "**Upper bound:** this teacher was trained on the full train split, so it saw the labels of the "
                "\"unlabelled\" half; retrain it on `--write-half` data and pass `--half-teacher` for the honest number.")
        sections.append(f"### (b) Low-label: {len(half.train):,} labelled (seeded, stratified 50 %), {len(unlabelled):,} "
                        f"unlabelled texts for the teacher\n\n{note}\n\n"
                        + table(["model", "accuracy", "macro-F1", "escalated", "accuracy on accepted", "from the teacher", "train s"], rows))

    command = f"python bench/distill.py --teacher {args.teacher} --dataset {args.dataset}" + (
        f" --half-teacher {args.half_teacher}" if args.half_teacher else "")
    body = f"""## Distillation: the linear tier learns from a teacher model ({args.dataset})

{stamp(command)} Teacher: `{args.teacher}` ({kinds}). Students are the default linear tier; *soft* = one training row
per label with teacher probability ≥ 0.05, weighted by it; *hard* = the teacher's routed decision (texts it sends to
human review are skipped){'; the gold rows of the labelled texts are kept' if keep_gold else ''}. Validation and test
stay gold: every gate is fitted on gold validation for ≤ {args.max_escalation:.0%} escalation; all numbers on test.

""" + "\n\n".join(sections)
    print(body)
    if not args.no_write:
        write_section(BENCHMARKS, "distill", body)
        print(f"wrote {BENCHMARKS}")


if __name__ == "__main__":
    main()
