"""Encoder tiers and the cascade: linear, encoder, linear → encoder, linear → encoder → local LLM.

For each dataset (banking77, clinc150, snips) one ``Router.train(data, ["linear", "encoder"])`` is
trained (the encoder fine-tuned all-MiniLM-L6-v2 with the tier's defaults), exported to ONNX INT8
with ``export_model`` and cut into the configurations below; each tier keeps the gate fitted on
validation for ≤ 20 % escalation, and whatever the last tier escalates goes to human review
(counted with its best guess in accuracy, and in the "human" share). Latency is per message
routed one at a time on one thread; msgs/s is ``route_batch`` over the test split on one thread.
The LLM row runs on a seeded sample of the test split (the local model takes seconds per call).

Also writes, for BANKING77, the encoder variants (heads, torch vs ONNX fp32 vs INT8: accuracy, size,
batch-1 latency) and the ensemble-vs-cascade comparison. Trained models are kept under
``--models`` (default runs/bench-models) and reused with ``--reuse``.

Run: ``python bench/cascade.py [--datasets banking77,clinc150,snips] [--llm-sample 300] [--reuse]``
Writes BENCHMARKS.md sections ``cascade`` and ``encoder``.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _common import BENCHMARKS, ROOT, data_root, stamp, table, write_section  # noqa: E402

from frontdesk import Dataset, Objective, Router  # noqa: E402
from frontdesk.evaluation.evaluate import evaluate  # noqa: E402
from frontdesk.tiers.encoder import EncoderTier, export_model  # noqa: E402


def log(*a: object) -> None:
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def trained(name: str, data: Dataset, models: Path, reuse: bool, tier_params: dict | None = None, suffix: str = "") -> tuple[Router, Router, float]:
    """(torch router, INT8 router, train seconds) for linear + encoder on ``name``."""
    path = models / f"{name}{suffix}"
    if reuse and (path / "frontdesk.json").is_file():
        router = Router.load(path)
        train_s = float(router.meta.get("bench_train_seconds", 0))
    else:
        t0 = time.perf_counter()
        last = [0.0]

        def progress(msg: str, frac: float) -> None:
            if time.perf_counter() - last[0] > 30:
                last[0] = time.perf_counter()
                log(f"  {name}: {msg} ({frac:.0%})")

        params = {"encoder": {"train_threads": 2, "threads": 1, **(tier_params or {})}}
        router = Router.train(data, ["linear", "encoder"], objective=Objective(max_escalation=0.2), tier_params=params, progress=progress)
        train_s = time.perf_counter() - t0
        router.meta["bench_train_seconds"] = train_s
        router.save(path)
    int8_path = path.with_name(path.name + "-int8")
    if not (int8_path / "frontdesk.json").is_file():
        export_model(path, int8_path, int8=True)
    return Router.load(path), Router.load(int8_path), train_s


def sub(router: Router, names: list[str], tiers: dict[str, object] | None = None) -> Router:
    """The cascade of ``names`` (tiers taken from ``tiers`` when given) with the trained gates."""
    picked = [(tiers or {}).get(n) or router.tier(n) for n in names]
    return Router(picked, {n: router.gates[n] for n in names}, router.settings, curves=router.curves,
                  descriptions=router.descriptions, examples=router.examples, meta=router.meta)


def throughput(router: Router, texts: list[str]) -> float:
    t0 = time.perf_counter()
    router.route_batch(texts)
    return len(texts) / (time.perf_counter() - t0)


def row(config: str, report, msgs_s: float | None, n_note: str = "") -> list[str]:  # noqa: ANN001
    share = report.tier_share
    oos = "—" if report.in_scope_accuracy is None else f"{report.in_scope_accuracy:.2%} / {report.oos_recall:.2%}"
    return [
        config + n_note, f"{report.accuracy:.2%}", f"{report.macro_f1:.2%}", oos,
        ", ".join(f"{t} {s:.1%}" for t, s in share.items()),
        f"{report.latency_ms.mean:.2f}", f"{report.latency_ms.p95:.2f}", "—" if msgs_s is None else f"{msgs_s:,.0f}",
    ]


def bench_dataset(name: str, root: Path, models: Path, args: argparse.Namespace) -> tuple[list[list[str]], dict]:
    data = Dataset.load(root / name)
    log(f"{name}: training linear + encoder ({len(data.train)} train)")
    router, router8, train_s = trained(name, data, models, args.reuse, {"epochs": args.epochs} if args.epochs else None)
    enc8 = router8.tier("encoder")
    test = data.test
    texts = [ex.text for ex in test]
    rows, facts = [], {"train_s": train_s, "linear_s": router.meta["tiers"]["linear"].get("train_seconds"),
                       "encoder_s": router.meta["tiers"]["encoder"].get("train_seconds")}
    configs = [
        ("linear", sub(router, ["linear"])),
        ("encoder (torch fp32)", sub(router, ["encoder"])),
        ("encoder (ONNX INT8)", sub(router, ["encoder"], {"encoder": enc8})),
        ("linear → encoder (INT8)", sub(router, ["linear", "encoder"], {"encoder": enc8})),
    ]
    for label, r in configs:
        report, _ = evaluate(r, test)
        rows.append(row(label, report, throughput(r, texts)))
        facts[label] = report
        log(f"  {name} {label}: acc {report.accuracy:.4f} share {report.tier_share} mean {report.latency_ms.mean:.2f} ms")
    if args.llm_sample:
        sample = random.Random(13).sample(test, min(args.llm_sample, len(test)))
        base = sub(router, ["linear", "encoder"], {"encoder": enc8})
        report, _ = evaluate(base, sample)
        rows.append(row("linear → encoder (INT8)", report, None, f" — sample of {len(sample)}"))
        llm = base.with_llm({"provider": "local", "n_threads": 2, "timeout_s": 120})
        t0 = time.perf_counter()
        report, _ = evaluate(llm, sample)
        rows.append(row("linear → encoder (INT8) → local LLM", report, None, f" — sample of {len(sample)}"))
        facts["llm"] = report
        log(f"  {name} +LLM: acc {report.accuracy:.4f} share {report.tier_share} in {time.perf_counter() - t0:.0f} s")
    return rows, {"router": router, "router8": router8, "data": data, **facts}


def latency(tier: EncoderTier, texts: list[str]) -> tuple[float, float]:
    for t in texts[:30]:
        tier.score(t)
    lat = []
    for t in texts:
        s = time.perf_counter()
        tier.score(t)
        lat.append((time.perf_counter() - s) * 1e3)
    return float(np.percentile(lat, 50)), float(np.percentile(lat, 95))


def dir_mb(path: Path, pattern: str) -> float:
    return sum(p.stat().st_size for p in path.rglob(pattern)) / 1e6


def encoder_variants(b77: dict, models: Path, args: argparse.Namespace) -> str:
    """Heads and runtimes on BANKING77: accuracy, size, batch-1 latency on one thread."""
    data, router = b77["data"], b77["router"]
    test = data.test
    texts = [ex.text for ex in test]
    lat_texts = texts[:500]
    gold = [ex.labels[0] for ex in test]

    def acc(tier) -> float:  # noqa: ANN001
        p = tier.predict_proba(texts)
        return float(np.mean([tier.labels_[i] == g for i, g in zip(p.argmax(1), gold)]))

    rows = []
    base = models / "banking77"
    fp32_dir = models / "banking77-onnx"
    if not (fp32_dir / "frontdesk.json").is_file():
        export_model(base, fp32_dir, int8=False)
    variants = [
        ("fine-tuned, torch fp32", router.tier("encoder"), dir_mb(base / "tiers/encoder/backbone", "*.safetensors"), b77["encoder_s"]),
        ("fine-tuned, ONNX fp32", Router.load(fp32_dir).tier("encoder"), dir_mb(fp32_dir, "*.onnx"), None),
        ("fine-tuned, ONNX INT8", b77["router8"].tier("encoder"), dir_mb(models / "banking77-int8", "*.onnx"), None),
    ]
    if args.heads:
        for head in ("logreg", "knn"):
            path = models / f"banking77-{head}"
            if args.reuse and (path / "frontdesk.json").is_file():
                tier = Router.load(path).tier("encoder")
            else:
                t0 = time.perf_counter()
                tier = EncoderTier("encoder", {"head": head, "threads": 1, "train_threads": 2}).fit(data)
                Router([tier]).save(path)
                tier._info["bench_train_seconds"] = time.perf_counter() - t0
            variants.append((f"frozen + {head}, torch fp32", tier, dir_mb(path / "tiers/encoder/backbone", "*.safetensors"),
                             tier.info().get("train_seconds")))
    for label, tier, mb, train_s in variants:
        a = acc(tier)
        p50, p95 = latency(tier, lat_texts)
        rows.append([label, f"{a:.2%}", f"{mb:.1f}", f"{p50:.2f} / {p95:.2f}", "—" if train_s is None else f"{train_s:.0f}"])
        log(f"  variant {label}: acc {a:.4f} size {mb:.1f} MB p50 {p50:.2f} ms")
    return table(["encoder tier (BANKING77)", "test accuracy", "model MB", "batch-1 p50 / p95 ms (1 thread)", "train s (2 cores)"], rows)


def ensembles(b77: dict) -> str:
    """Ensemble voting (linear + INT8 encoder) against the linear → encoder cascade on BANKING77."""
    from frontdesk.gating.gate import fit_gate
    from frontdesk.tiers.ensemble import EnsembleTier

    data, router = b77["data"], b77["router"]
    lin, enc8 = router.tier("linear"), b77["router8"].tier("encoder")
    val_texts, val_targets = [ex.text for ex in data.validation], [ex.labels for ex in data.validation]
    rows = [["cascade linear → encoder (INT8)", *_ens_cells(b77["linear → encoder (INT8)"], None)]]
    for voting in ("majority", "weighted", "cost_aware"):
        tier = EnsembleTier.from_members([lin, enc8], data, {"voting": voting})
        gate, curve = fit_gate(tier.predict_proba(val_texts), val_targets, tier.labels_, Objective(max_escalation=0.2))
        r = Router([tier], {tier.name: gate}, router.settings, curves={tier.name: curve})
        tier._scored = tier._consulted = 0
        report, _ = evaluate(r, data.test)
        consulted = tier.info().get("members_consulted_mean")
        rows.append([f"ensemble, {voting} (weights {tier.info()['weights']})", *_ens_cells(report, consulted)])
        log(f"  ensemble {voting}: acc {report.accuracy:.4f} consulted {consulted}")
    return table(["BANKING77 test", "accuracy", "macro-F1", "answered by", "accuracy on accepted", "mean ms", "p95 ms",
                  "members consulted / msg"], rows)


def _ens_cells(report, consulted) -> list[str]:  # noqa: ANN001
    return [f"{report.accuracy:.2%}", f"{report.macro_f1:.2%}", ", ".join(f"{t} {s:.1%}" for t, s in report.tier_share.items()),
            f"{report.accepted_accuracy:.2%}", f"{report.latency_ms.mean:.2f}", f"{report.latency_ms.p95:.2f}",
            "—" if consulted is None else f"{consulted:.2f}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--datasets", default="banking77,clinc150,snips")
    ap.add_argument("--llm-sample", type=int, default=300, help="test messages for the LLM row (0: skip)")
    ap.add_argument("--models", type=Path, default=ROOT / "runs" / "bench-models")
    ap.add_argument("--reuse", action="store_true", help="reuse trained models under --models")
    ap.add_argument("--epochs", type=int, help="encoder fine-tuning epochs (default: the tier's)")
    ap.add_argument("--no-heads", dest="heads", action="store_false", help="skip the frozen logreg / kNN heads")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    root = data_root()
    args.models.mkdir(parents=True, exist_ok=True)
    all_rows, facts = [], {}
    for name in args.datasets.split(","):
        rows, facts[name] = bench_dataset(name, root, args.models, args)
        all_rows += [[name, *r] for r in rows]
    train_notes = "; ".join(f"{n}: linear {f['linear_s']:.0f} s, encoder {f['encoder_s']:.0f} s" for n, f in facts.items())
    body = f"""## Encoder tier and the cascade: linear → encoder → local LLM

{stamp('python bench/cascade.py')} Each tier's gate was fitted on validation for ≤ 20 % escalation;
what the last tier escalates goes to human review (its best guess counts in accuracy). Encoder: all-MiniLM-L6-v2
fine-tuned 4 epochs (tier defaults), served from the ONNX INT8 export unless the row says torch. Latency: per
message routed one at a time, one thread; msgs/s: `route_batch` over the test split, one thread. CLINC150 column
"in-scope / OOS recall": accuracy on in-scope messages / share of `oos` messages labelled `oos`. LLM rows: a
seeded sample; local Qwen2.5-Coder-1.5B-Instruct Q4_K_M, 2 threads. Training time (2 cores): {train_notes}.

{table(["dataset", "configuration", "accuracy", "macro-F1", "in-scope / OOS recall", "answered by", "mean ms", "p95 ms", "msgs/s"], all_rows)}
"""
    write_section(BENCHMARKS, "cascade", body)
    if "banking77" in facts:
        write_section(BENCHMARKS, "encoder", f"""## Encoder variants on BANKING77: heads, torch vs ONNX, fp32 vs INT8

{stamp('python bench/cascade.py')} Test accuracy of the tier alone (argmax of `predict_proba` in batches of 64, no gate;
INT8 results shift slightly with padding — see the cascade table for one message at a time). Size: weights on disk.
INT8: ONNX Runtime dynamic quantization, per-channel. Latency: `tier.score` one message at a time, one thread,
first 500 test messages.

{encoder_variants(facts['banking77'], args.models, args)}
""")
        write_section(BENCHMARKS, "ensemble", f"""## Ensemble voting vs the cascade (BANKING77)

{stamp('python bench/cascade.py')} The same trained linear tier and INT8 encoder, combined as an `ensemble`
tier (weights and temperature fitted on validation; its gate fitted for ≤ 20 % escalation) or chained as the
cascade. Cost-aware voting asks the cheaper member first and stops when the rest cannot overturn the lead.
Latency per message, one thread.

{ensembles(facts['banking77'])}
""")
    json.dump({n: {k: v.model_dump() if hasattr(v, "model_dump") else v for k, v in f.items() if k not in ("router", "router8", "data")}
               for n, f in facts.items()}, open(args.models / "cascade-results.json", "w"), default=str, indent=1)
    log(f"wrote {BENCHMARKS}")


if __name__ == "__main__":
    main()
