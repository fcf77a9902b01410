"""Multi-intent benchmark on MixSNIPS: exact match of the intent set, per-label F1, lost intents.

Rows: the linear tier in multi-label mode (one-vs-rest, calibrated sigmoids, per-label decision
thresholds fitted on validation), and the clause tier (split at joiners, classify each clause,
decode jointly with the whole-message scores) with each clause classifier of ``--clause-tier``.
Every model is fitted on train and calibrated / gated on validation; the validation and test
splits are then routed one message at a time (uncertain sets → human review, best guess counted).
Trained routers are saved under ``--models`` and reused when already there.

Run: ``python bench/multi_intent.py [--clause-tier linear,encoder] [--models DIR]``
(the encoder fine-tunes all-MiniLM-L6-v2 on the derived clauses: long on CPU).
Writes BENCHMARKS.md section ``multi``.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _common import BENCHMARKS, dataset_dir, stamp, table, write_section  # noqa: E402

from frontdesk import Dataset, Router  # noqa: E402
from frontdesk.evaluation.evaluate import EvalReport, evaluate  # noqa: E402

#: the encoder as clause classifier: training on both cores, inference on one (as bench/cascade.py)
ENCODER_DEFAULTS = {"train_threads": 2, "threads": 1}


def log(*a: object) -> None:
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def trained(key: str, data: Dataset, kind: str, params: dict[str, Any] | None, models: Path | None) -> tuple[Router, float]:
    """(router, train seconds): loaded from ``models/key`` when saved there, else trained (and saved)."""
    path = models / key if models else None
    if path is not None and (path / "frontdesk.json").is_file():
        router = Router.load(path)
        log(f"{key}: loaded {path}")
        return router, float(router.meta.get("bench_train_seconds", 0))
    last = [0.0]

    def progress(msg: str, frac: float) -> None:
        if time.perf_counter() - last[0] > 30:
            last[0] = time.perf_counter()
            log(f"  {key}: {msg} ({frac:.0%})")

    t0 = time.perf_counter()
    router = Router.train(data, [kind], tier_params={kind: params} if params else None, progress=progress)
    train_s = time.perf_counter() - t0
    router.meta["bench_train_seconds"] = train_s
    if path is not None:
        router.save(path)
    log(f"{key}: trained in {train_s:.0f} s")
    return router, train_s


def row(name: str, train_s: float, val: EvalReport, test: EvalReport) -> list[str]:
    return [
        name, f"{train_s:.0f}", f"{val.exact_match:.2%}", f"{test.exact_match:.2%}", f"{test.multi_intent_exact_match:.2%}",
        f"{test.lost_intent_rate:.2%}", f"{test.macro_f1:.2%}", f"{test.escalation_rate:.1%}", f"{test.accepted_accuracy:.2%}",
        f"{test.latency_ms.p50:.3f}",
    ]


def error_kinds(examples: list, decisions: list) -> tuple[int, int]:
    """(wrong sets, wrong sets with the gold number of intents: a clause got the wrong label)."""
    wrong = [(set(ex.labels), set(d.labels)) for ex, d in zip(examples, decisions) if set(ex.labels) != set(d.labels)]
    return len(wrong), sum(len(g) == len(p) for g, p in wrong)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clause-tier", default="linear", help="clause classifier kinds, comma-separated (linear, encoder)")
    ap.add_argument("--clause-params", default="{}", help='JSON params per clause kind, e.g. \'{"encoder": {"epochs": 3}}\'')
    ap.add_argument("--models", type=Path, help="save trained routers here and reuse them on the next run")
    args = ap.parse_args()
    kinds = [k.strip() for k in args.clause_tier.split(",") if k.strip()]
    extra = json.loads(args.clause_params)

    data = Dataset.load(dataset_dir("mixsnips"))
    runs: list[tuple[str, Router, float]] = [("linear (one-vs-rest, TF-IDF)", *trained("linear", data, "linear", None, args.models))]
    for kind in kinds:
        clause_params = {**(ENCODER_DEFAULTS if kind == "encoder" else {}), **extra.get(kind, {})}
        params = {"clause_tier": kind, **({"clause_params": clause_params} if clause_params else {})}
        runs.append((f"clauses (clause classifier: {kind})", *trained(f"clauses-{kind}", data, "clauses", params, args.models)))

    rows, reports = [], {}
    for name, router, train_s in runs:
        val, _ = evaluate(router, data.validation)
        test, decisions = evaluate(router, data.test)
        reports[name] = (router, val, test, error_kinds(data.test, decisions))
        rows.append(row(name, train_s, val, test))
        log(rows[-1])

    best = max(reports, key=lambda n: reports[n][1].exact_match)  # chosen on validation
    router, val, test, _ = reports[best]
    f1 = ", ".join(f"{label} {v:.3f}" for label, v in sorted(test.per_label_f1.items()))
    gates = "; ".join(
        f"{name}: decision threshold {g.decision_threshold:.2f} ({len(g.label_thresholds)} per-label), set confidence ≥ {g.threshold:.3f}"
        for name, (r, *_) in reports.items() for g in [r.gates[r.primary.name]]
    )
    notes = []
    for name, (r, v, t, (wrong, swapped)) in reports.items():
        info = r.primary.info()
        if r.primary.kind == "clauses":
            splits = info["derived_splits"]["train"]
            notes.append(
                f"*{name}*: {info['clauses']['train']:,} distinct training clauses (train messages split unambiguously "
                f"{splits.get('unambiguous', 0):,}, by known clauses {splits.get('known clauses', 0):,}, by the bootstrap "
                f"classifier {splits.get('bootstrap', 0):,}); the boundary classifier splits "
                f"{info['boundary']['validation_split_accuracy']:.1%} of validation messages as derived; the clause classifier "
                f"labels {info['clause_info'].get('validation_accuracy', float('nan')):.1%} of validation clauses right; the "
                f"decoded set (no gate) is exact on {info['validation_exact_match']:.2%} of validation with decoding weights "
                f"α = {info['weights']['boundary']:g}, δ = {info['weights']['message']:g}."
            )
        notes.append(f"*{name}* test errors: {wrong:,}, of which {swapped:,} have the right number of intents but a wrong label.")
    lin_test = reports[runs[0][0]][2]
    goal = test.exact_match >= 0.96
    verdict = (
        f"**{'Meets' if goal else 'Below'} the 96 % goal on test**: {test.exact_match:.2%} for {best} (the best row on "
        f"validation, {val.exact_match:.2%}); linear one-vs-rest {lin_test.exact_match:.2%}; published AGIF 95.1 %. "
        f"Lost intents: {lin_test.lost_intent_rate:.2%} → {test.lost_intent_rate:.2%} of multi-intent messages."
    )
    body = f"""## Multi-intent: MixSNIPS (exact match of the intent set)

{stamp('python bench/multi_intent.py --clause-tier ' + ','.join(kinds))} Validation 2,198 and test 2,199 messages (80 % with
2–3 intents). *exact match* counts a message right only when the predicted set equals the gold set (escalated messages
count with their best guess); *lost intent* = multi-intent messages whose prediction is a strict subset of the gold set.
Every model is fitted on train; calibration and gates are fitted on validation (so the validation column is optimistic),
test is only reported. Gates for ≤ 20 % escalation — {gates}.

{table(["model", "train s", "exact match (val)", "exact match", "exact match, multi-intent", "lost intent", "macro-F1", "escalated", "exact match on accepted", "p50 ms"], rows)}

Per-label F1 (test, {best}): {f1}.

The **clause tier** (`--tiers clauses`) marks candidate boundaries at joiners ("and", ",", "and then", "and also",
"then", "also", …), scores each candidate with a logistic-regression boundary classifier on its context, classifies
every clause with a calibrated single-label tier (`clause_tier`: linear or encoder), and decodes the best split and
label per clause jointly with the whole-message one-vs-rest scores. Its per-label probabilities are the posterior
chance of each label being in the set (hypothesis softmax at a validation-fitted temperature, Platt-scaled), so the
usual multi-label gate applies. Clause training data is derived from the multi-label examples themselves.

{chr(10).join("- " + n for n in notes)}

{verdict} A clause-level confusion (a wrong label with the right number of intents) is what a stronger clause
classifier (`--clause-tier encoder`) addresses; a wrong number of intents is a splitting error.
"""
    write_section(BENCHMARKS, "multi", body)
    log(f"wrote {BENCHMARKS}")


if __name__ == "__main__":
    main()
