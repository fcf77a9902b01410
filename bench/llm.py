"""LLM-tier benchmark on BANKING77: linear only vs linear → local LLM (→ human).

The local LLM (Qwen2.5-Coder-1.5B-Instruct Q4_K_M on llama.cpp, 2 threads) takes seconds per call,
so the cascades run on a seeded random sample of the test split (default 300 messages); the LLM only
sees what the linear tier escalates. Run A ("→ local LLM → human") records every LLM answer; run B
("→ local LLM", the LLM's answer always stands) replays the recording, so both see identical LLM
output. Cost uses a price table of $0 for the local model, so the cost column also shows what the same
tokens would cost at gpt-4o-mini list prices. Writes BENCHMARKS.md section ``llm``.

Run: ``python bench/llm.py [--sample 300] [--seed 13]``
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _common import BENCHMARKS, dataset_dir, stamp, table, write_section  # noqa: E402

from frontdesk import Dataset, GatePolicy, Router  # noqa: E402
from frontdesk.evaluation.evaluate import evaluate  # noqa: E402
from frontdesk.tiers.llm import DEFAULT_PRICES  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sample", type=int, default=300)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    data = Dataset.load(dataset_dir("banking77"))
    router = Router.train(data, ["linear"])
    sample = random.Random(args.seed).sample(data.test, args.sample)
    rec = Path(tempfile.mkdtemp()) / "llm-answers.jsonl"
    pin, pout = DEFAULT_PRICES["gpt-4o-mini"]
    rows = []

    def row(name: str, report, wall: float) -> None:  # noqa: ANN001
        lat = report.latency_ms_by_tier
        llm_lat = lat.get("llm")
        tokens = report.llm_tokens or {}
        would = (tokens.get("input", 0) * pin + tokens.get("output", 0) * pout) / 1e6 / report.n * 1000
        rows.append([
            name, str(report.n), f"{report.accuracy:.2%}", f"{report.macro_f1:.2%}",
            ", ".join(f"{t} {s:.1%}" for t, s in report.tier_share.items()),
            f"{report.accepted_accuracy:.2%}", f"{report.llm_call_rate:.1%}",
            f"{tokens.get('input', 0):,} / {tokens.get('output', 0):,}", f"${report.cost_per_1k:.3f} (${would:.3f})",
            f"{lat['linear'].p50:.3f}", f"{llm_lat.p50 / 1e3:.2f} / {llm_lat.p95 / 1e3:.2f}" if llm_lat else "—",
            f"{wall:.0f}",
        ])
        print(rows[-1], flush=True)

    t0 = time.perf_counter()
    full, _ = evaluate(router, data.test)
    row("linear → human (full test split)", full, time.perf_counter() - t0)
    t0 = time.perf_counter()
    base, _ = evaluate(router, sample)
    row(f"linear → human (sample of {args.sample})", base, time.perf_counter() - t0)
    params = {"provider": "local", "n_threads": args.threads, "timeout_s": 120, "record": str(rec)}
    with_llm = router.with_llm(params)
    t0 = time.perf_counter()
    human, _ = evaluate(with_llm, sample)
    row("linear → local LLM → human", human, time.perf_counter() - t0)
    replay = router.with_llm({"provider": "local", "replay": str(rec)})
    replay.set_gate("llm", GatePolicy(threshold=0.0))
    t0 = time.perf_counter()
    llm_only, _ = evaluate(replay, sample)
    row("linear → local LLM (LLM answer always stands)", llm_only, time.perf_counter() - t0)

    body = f"""## LLM tier: BANKING77, linear → local LLM (Qwen2.5-Coder-1.5B-Instruct Q4_K_M, llama.cpp)

{stamp('python bench/llm.py')} Linear thresholds fitted for ≤ 20 % escalation on validation. The LLM rows use a
seeded random sample of {args.sample} test messages (seed {args.seed}); the LLM chooses among the linear tier's top-5
labels (descriptions: none in the dataset, so label names; 2 training examples each), JSON-schema constrained,
{args.threads} llama.cpp threads. "→ human": LLM answers with confidence < 0.5 go to human review (counted with the
best guess); "always stands": LLM gate threshold 0, same recorded LLM answers. Cost per 1,000 messages: $0 for the
local model; in brackets what the same tokens would cost at gpt-4o-mini list prices (${pin}/${pout} per 1M tokens).

{table(["cascade", "messages", "accuracy", "macro-F1", "answered by", "accuracy on accepted", "LLM call rate", "LLM tokens in / out", "cost / 1k msgs", "linear p50 ms", "LLM p50 / p95 s", "wall s"], rows)}
"""
    write_section(BENCHMARKS, "llm", body)
    print(f"wrote {BENCHMARKS}")


if __name__ == "__main__":
    main()
