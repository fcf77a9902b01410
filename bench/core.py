"""Tier-1 benchmark: train + evaluate the linear router on banking77, clinc150 and snips.

Writes the tables into BENCHMARKS.md (section ``core``) and the summary into README.md
(section ``bench-summary``). Run: ``python bench/core.py [--datasets banking77,clinc150,snips]``.
Threads are pinned to 1 so latency numbers mean "one core".
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _common import BENCHMARKS, README, data_root, stamp, table, write_section  # noqa: E402

from frontdesk import Dataset, Objective, Router, RouterSettings  # noqa: E402
from frontdesk.evaluation.evaluate import evaluate  # noqa: E402


def pct(a: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(a), q))


def bench_dataset(name: str, root) -> dict:
    data = Dataset.load(root / name)
    t0 = time.perf_counter()
    router = Router.train(data, ["linear"], objective=Objective(max_escalation=0.2))
    train_s = time.perf_counter() - t0
    info = router.meta["tiers"]["linear"]
    report, _ = evaluate(router, data.test)
    tier = router.tiers[0]
    texts = [ex.text for ex in data.test]
    for t in texts[:200]:  # warm-up
        tier.score(t)
    lat = []
    for t in texts:
        s = time.perf_counter()
        tier.score(t)
        lat.append((time.perf_counter() - s) * 1e3)
    batch = texts * max(1, 10000 // len(texts))
    s = time.perf_counter()
    router.route_batch(batch)
    throughput = len(batch) / (time.perf_counter() - s)
    row = {
        "name": name, "labels": len(router.labels), "train": len(data.train), "train_s": train_s, "info": info,
        "report": report, "tier_p50": pct(lat, 50), "tier_p99": pct(lat, 99), "throughput": throughput,
        "gate": router.gates["linear"], "chosen": router.curves["linear"].chosen,
    }
    if "oos" in router.labels:  # also: low confidence → 'oos' at the same fitted threshold
        unk = Router(router.tiers, router.gates, RouterSettings(fallback="unknown", unknown_label="oos"), curves=router.curves)
        row["unknown_report"], _ = evaluate(unk, data.test)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--datasets", default="banking77,clinc150,snips")
    args = ap.parse_args()
    root = data_root()
    rows = []
    for name in args.datasets.split(","):
        print(f"== {name}", flush=True)
        r = bench_dataset(name, root)
        rep = r["report"]
        print(f"   accuracy {rep.accuracy:.4f}  macro-F1 {rep.macro_f1:.4f}  ECE {rep.ece:.4f}  "
              f"escalation {rep.escalation_rate:.3f}  accepted {rep.accepted_accuracy:.4f}  "
              f"tier p50 {r['tier_p50']:.3f} ms  train {r['train_s']:.1f} s", flush=True)
        rows.append(r)

    main_rows, op_rows, oos_rows = [], [], []
    for r in rows:
        rep, info = r["report"], r["info"]
        main_rows.append([
            r["name"], str(r["labels"]), str(r["train"]), f"{r['train_s']:.1f}", f"{rep.accuracy:.2%}", f"{rep.macro_f1:.2%}",
            f"{info.get('ece_before', 0):.3f} → {info.get('ece_after', 0):.3f}", f"{rep.ece:.3f}",
            f"{rep.escalation_rate:.1%}", f"{rep.accepted_accuracy:.2%}", f"{r['tier_p50']:.3f} / {r['tier_p99']:.3f}",
            f"{rep.latency_ms.p50:.3f} / {rep.latency_ms.p99:.3f}", f"{r['throughput']:,.0f}",
        ])
        op_rows.append([r["name"]] + [f"{p.escalation_rate:.1%} → {p.accepted_accuracy:.2%}" for p in rep.operating_points])
        if "unknown_report" in r:
            u = r["unknown_report"]
            oos_rows.append([f"{r['name']}: 'oos' as a trained class, low confidence → human", f"{rep.in_scope_accuracy:.2%}", f"{rep.oos_recall:.2%}", f"{rep.accuracy:.2%}"])
            oos_rows.append([f"{r['name']}: … and low confidence → 'oos' (fallback unknown)", f"{u.in_scope_accuracy:.2%}", f"{u.oos_recall:.2%}", f"{u.accuracy:.2%}"])

    body = f"""## Tier 1: TF-IDF + linear (`linear`), single tier → human review

{stamp('python bench/core.py')} Thresholds fitted on validation for ≤ 20% escalation; all numbers on the test split.
Latency is in-process on one thread: *tier* = the linear tier's `score()` alone, *route* = `Router.route()`
end to end (gate, trace, Decision). Batch = `Router.route_batch` throughput.

{table(["dataset", "labels", "train n", "train s", "accuracy", "macro-F1", "ECE val (raw → calibrated)", "ECE test", "escalated", "accuracy on accepted", "tier p50 / p99 ms", "route p50 / p99 ms", "batch msgs/s"], main_rows)}

### Operating points on test (validation-fitted threshold for each escalation budget → test escalation → accuracy on accepted)

{table(["dataset", "≤5%", "≤10%", "≤15%", "≤20%", "≤30%"], op_rows)}
"""
    if oos_rows:
        body += f"""
### Out-of-scope (CLINC150, 1,000 of 5,500 test messages are `oos`)

{table(["configuration", "in-scope accuracy", "OOS recall", "overall accuracy"], oos_rows)}
"""
    write_section(BENCHMARKS, "core", body)
    summary = table(
        ["dataset", "accuracy", "macro-F1", "escalated", "accuracy on accepted", "tier-1 p50 ms", "train s"],
        [[r["name"], f"{r['report'].accuracy:.2%}", f"{r['report'].macro_f1:.2%}", f"{r['report'].escalation_rate:.1%}",
          f"{r['report'].accepted_accuracy:.2%}", f"{r['tier_p50']:.3f}", f"{r['train_s']:.1f}"] for r in rows],
    )
    write_section(README, "bench-summary", summary + "\n\nFull tables, machine and date: [BENCHMARKS.md](BENCHMARKS.md).")
    print(f"wrote {BENCHMARKS} and {README}")


if __name__ == "__main__":
    main()
