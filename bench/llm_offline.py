"""Offline LLM tier with a fitted acceptance policy: linear → encoder → local LLM vs linear → encoder.

For BANKING77 and CLINC150 one ``Router.train(data, ["linear", "encoder"])`` is trained with the
encoder's **logreg head** (frozen all-MiniLM-L6-v2 embeddings + logistic regression, ~1 min; the
fine-tuned head takes 15–25 min per dataset on these cores) and cached under ``--cache``. The LLM
is Qwen2.5-Coder-1.5B-Instruct Q4_K_M on llama.cpp (``xllamacpp``) behind an OpenAI-compatible
endpoint on 127.0.0.1, driven through the ``openai`` provider.

1. **Fit** (``frontdesk.llm.fit.fit_llm``): the LLM answers a seeded sample of at most
   ``--calibration`` validation messages that linear → encoder does not accept; the acceptance
   policy is fitted on those answers.
2. **Evaluate** on a seeded sample of the test split: a seeded permutation of the test split, cut
   where ``--escalations`` messages have reached the LLM (the sample size is reported). Both
   cascades route the same sample; human-review decisions count with their best guess.

Every LLM answer is recorded in ``--cache`` (``<dataset>_offline_answers.jsonl``): a re-run replays
them (``--replay`` never calls the LLM and needs no xllamacpp). Writes BENCHMARKS.md section
``llm_offline``.

Run: ``nice -n 10 python bench/llm_offline.py [--calibration 150] [--escalations 150] [--threads 1]``
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
from contextlib import nullcontext  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _common import BENCHMARKS, dataset_dir, stamp, table, write_section  # noqa: E402

from frontdesk import Dataset, Router, RouterSettings  # noqa: E402
from frontdesk.evaluation.evaluate import evaluate  # noqa: E402
from frontdesk.llm.fit import fit_llm, reached_llm  # noqa: E402

MODEL = "qwen2.5-coder-1.5b"


def cached_router(name: str, data: Dataset, cache: Path) -> Router:
    path = cache / f"{name}_linear_encoder_logreg"
    if (path / "frontdesk.json").is_file():
        return Router.load(path)
    t0 = time.perf_counter()
    router = Router.train(data, ["linear", "encoder"], tier_params={"encoder": {"head": "logreg", "threads": 1, "train_threads": 1}})
    router.save(path)
    print(f"{name}: trained linear + encoder(logreg) in {time.perf_counter() - t0:.0f} s", flush=True)
    return router


def eval_sample(router: Router, data: Dataset, escalations: int, seed: int) -> tuple[list, int]:
    """The shortest prefix of a seeded permutation of test in which ``escalations`` messages reach the LLM."""
    order = list(range(len(data.test)))
    random.Random(seed).shuffle(order)
    reached = set(reached_llm(router, [data.test[i].text for i in order]))
    cut, n = len(order), 0
    for pos in range(len(order)):
        n += pos in reached
        if n == escalations:
            cut = pos + 1
            break
    return [data.test[i] for i in order[:cut]], min(n, escalations)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="banking77,clinc150")
    ap.add_argument("--calibration", type=int, default=150, help="validation messages that reach the LLM, to fit on")
    ap.add_argument("--escalations", type=int, default=150, help="test messages that reach the LLM, in the evaluation sample")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp threads")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("FRONTDESK_BENCH_CACHE", "runs/bench-llm-offline")))
    ap.add_argument("--replay", action="store_true", help="only recorded answers (no LLM)")
    ap.add_argument("--no-write", action="store_true", help="print, do not touch BENCHMARKS.md")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)

    from _llama_server import LlamaServer

    server = nullcontext("http://127.0.0.1:9/v1") if args.replay else LlamaServer(threads=args.threads)
    rows, notes = [], []
    with server as url:
        for name in args.datasets.split(","):
            data = Dataset.load(dataset_dir(name))
            router = cached_router(name, data, args.cache)
            answers = args.cache / f"{name}_offline_answers.jsonl"
            params = {"provider": "openai", "model": MODEL, "base_url": url, "api_key_env": "FRONTDESK_BENCH_NO_KEY",
                      "timeout_s": 900, "retries": 0, "cache_ttl_s": 0, "rationale_chars": 0, "max_tokens": 64}
            os.environ.setdefault("FRONTDESK_BENCH_NO_KEY", "none")
            if args.replay:
                params["replay"] = str(answers)
            t0 = time.perf_counter()
            fitted = fit_llm(router, data, params, answers=None if args.replay else answers,
                             calibration_size=args.calibration, seed=args.seed,
                             progress=lambda done, total: print(f"{name}: fit {done}/{total} ({time.perf_counter() - t0:.0f} s)", flush=True))
            llm_router = fitted.router
            if not args.replay:
                llm_router.llm_tier.use_recording(answers, "through")  # type: ignore[union-attr]
            sample, reached = eval_sample(router, data, args.escalations, args.seed)
            print(f"{name}: policy — {fitted.policy.describe()}", flush=True)
            print(f"{name}: evaluation sample {len(sample)} test messages, {reached} reach the LLM", flush=True)
            base_report, _ = evaluate(router.without_llm(), sample)
            t1 = time.perf_counter()
            llm_report, decisions = evaluate(llm_router, sample, progress=lambda done: print(f"{name}: eval {done}/{len(sample)} "
                                                                                              f"({time.perf_counter() - t1:.0f} s)", flush=True))
            variants = [("", RouterSettings())]
            if name == "clinc150":
                variants.append((" (low confidence → 'oos')", RouterSettings(fallback="unknown", unknown_label="oos")))
            for label, settings in variants:
                b, l = base_report, llm_report
                if settings.fallback != "human":
                    br, lr = router.without_llm(), llm_router
                    br.settings, lr.settings = settings, settings
                    b, _ = evaluate(br, sample)
                    l, _ = evaluate(lr, sample)
                    lr.settings = RouterSettings()
                for cascade, rep in (("linear → encoder", b), ("linear → encoder → LLM (fitted policy)", l)):
                    rows.append([f"{name}{label}", cascade, str(rep.n), f"{rep.accuracy:.2%}",
                                 "—" if rep.in_scope_accuracy is None else f"{rep.in_scope_accuracy:.2%}",
                                 "—" if rep.oos_recall is None else f"{rep.oos_recall:.2%}",
                                 ", ".join(f"{t} {s:.1%}" for t, s in rep.tier_share.items()),
                                 f"{rep.accepted_accuracy:.2%}", f"{rep.llm_call_rate:.1%}"])
                rows.append([f"{name}{label}", "**gain**", "", f"{(l.accuracy - b.accuracy) * 100:+.2f} pts",
                             "—" if l.in_scope_accuracy is None else f"{(l.in_scope_accuracy - b.in_scope_accuracy) * 100:+.2f} pts",
                             "—" if l.oos_recall is None else f"{(l.oos_recall - b.oos_recall) * 100:+.2f} pts", "", "", ""])
            f = fitted.policy.fitted
            notes.append(f"* **{name}**: calibration — the LLM answered {f.n_called} of the {f.n_reached} validation messages that "
                         f"reach it ({f.n_answered} with a label, {f.n_none} 'none', {f.n_failed} failed or held); evaluation sample — "
                         f"{len(sample)} test messages (seeded permutation, seed {args.seed}), {reached} of them reach the LLM. "
                         f"Policy: {fitted.policy.describe()}.")
            print(json.dumps(rows[-3:], ensure_ascii=False), flush=True)

    body = f"""## LLM tier with a fitted acceptance policy: offline model (Qwen2.5-Coder-1.5B Q4_K_M, llama.cpp)

{stamp('nice -n 10 python bench/llm_offline.py --calibration ' + str(args.calibration) + ' --escalations ' + str(args.escalations))}
Encoder tier: **logreg head** on frozen all-MiniLM-L6-v2 embeddings (not the fine-tuned head: 15–25 min per dataset here).
Gates fitted on validation for ≤ 20 % escalation; the LLM sees the encoder's top-5 labels with the 2 training examples
of each nearest to the message, through the `openai` provider against llama.cpp's server on 127.0.0.1 ({args.threads} thread(s));
no rationale (`rationale_chars: 0`: ~20 fewer output tokens per call, which matters at ~2 tokens/s on this shared CPU).
The acceptance policy is fitted on the LLM's answers to validation messages (sizes below); its gate targets the accuracy
the linear tier reaches on the messages it accepts. Human-review decisions count with their best guess. All answers are
recorded (`--replay` re-runs without the LLM).

{table(["dataset", "cascade", "messages", "accuracy", "in-scope accuracy", "OOS recall", "answered by", "accuracy on accepted", "LLM call rate"], rows)}

{chr(10).join(notes)}
"""
    print(body)
    if not args.no_write:
        write_section(BENCHMARKS, "llm_offline", body)
        print(f"wrote {BENCHMARKS}")


if __name__ == "__main__":
    main()
