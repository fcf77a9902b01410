"""LLM-tier acceptance on BANKING77: can a weak LLM make the cascade worse? Fake LLMs over real HTTP.

Two fake OpenAI-compatible servers (``tests/fake_llm_servers.py``, real wire protocol on 127.0.0.1)
know the gold labels and always state confidence 0.9:

* **80 %-gold**: answers the gold label on 80 % of messages (which ones: a hash of the text) when it
  is among the candidates, a wrong candidate otherwise;
* **always wrong**: always a wrong candidate.

For each, the acceptance policy is fitted with ``frontdesk.llm.fit.fit_llm`` on the LLM's answers
to the validation messages that the linear tier does not accept (up to ``--calibration``), then
the cascade routes a seeded sample of the test split (default 600). Rows: linear alone; linear →
LLM with the fitted policy; with the safe default (no policy); and what the same LLM answers would
have given had they simply stood (the behaviour before acceptance policies: every answer at
confidence ≥ 0.5 accepted) — computed from the same run's traces. Human-review decisions count
with their best guess. Writes BENCHMARKS.md section ``llm``.

Run: ``python bench/llm.py [--sample 600] [--seed 13] [--calibration 300]``
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _common import BENCHMARKS, dataset_dir, stamp, table, write_section  # noqa: E402
from fake_llm_servers import FakeOpenAIServer, RecordedRequest, answer  # noqa: E402

from frontdesk import Dataset, Router  # noqa: E402
from frontdesk.evaluation.evaluate import evaluate  # noqa: E402
from frontdesk.llm.fit import fit_llm  # noqa: E402

_FENCE = re.compile(r"<<<MESSAGE (\w+)>>>\n(.*)\n<<<END \1>>>", re.S)


def gold_llm(gold: dict[str, str], right: float):  # noqa: ANN201
    """The fake's behaviour: gold on ``right`` of the messages when it is a candidate, else a wrong candidate; confidence 0.9."""

    def behave(rec: RecordedRequest):  # noqa: ANN202
        enum = [x for x in rec.enum or [] if x != "none"]
        m = _FENCE.search(rec.user)
        text = m.group(2) if m else ""
        g, h = gold.get(text), int(hashlib.sha256(text.encode()).hexdigest(), 16)
        if g in enum and (h % 1000) < right * 1000:
            return answer([g], 0.9, "gold")
        wrong = [x for x in enum if x != g] or enum
        return answer([wrong[h % len(wrong)]], 0.9, "wrong")

    return behave


def answers_stood(decisions: list, gold: list[set[str]]) -> float:
    """Accuracy had every LLM answer stood (the LLM's raw answer is the first entry of its trace's ``top``)."""
    right = 0
    for d, g in zip(decisions, gold):
        entry = next((t for t in d.trace if t.kind == "llm" and t.top), None)
        labels = {entry.top[0].label} if entry is not None else set(d.labels)
        right += labels == g
    return right / len(decisions)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", type=int, default=600)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--calibration", type=int, default=300)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    data = Dataset.load(dataset_dir("banking77"))
    router = Router.train(data, ["linear"])
    sample = random.Random(args.seed).sample(data.test, args.sample)
    gold_of = {ex.text: ex.labels[0] for ex in data.validation + data.test}
    gold = [set(ex.labels) for ex in sample]
    base, _ = evaluate(router, sample)
    base_full, _ = evaluate(router, data.test)
    full_rows = [["linear alone", f"{base_full.accuracy:.2%}", "—"]]
    rows = [["linear alone", "—", f"{base.accuracy:.2%}", "—", ", ".join(f"{t} {s:.1%}" for t, s in base.tier_share.items()),
             f"{base.accepted_accuracy:.2%}", "—"]]
    checks, notes = [], []
    for name, right, bar in (("80 %-gold", 0.8, "≥ +1.00 pts"), ("always wrong", 0.0, "within ±0.50 pts")):
        with FakeOpenAIServer(default=gold_llm(gold_of, right)) as server:
            params = {"provider": "openai", "model": f"fake-{int(right * 100)}", "base_url": server.base_url, "retries": 0,
                      "api_key_env": "FRONTDESK_BENCH_NO_KEY", "cache_ttl_s": 0}
            os.environ.setdefault("FRONTDESK_BENCH_NO_KEY", "none")
            fitted = fit_llm(router, data, params, calibration_size=args.calibration, seed=args.seed)
            rep, decisions = evaluate(fitted.router, sample)
            safe, _ = evaluate(router.with_llm(params), sample)
            full, _ = evaluate(fitted.router, data.test)
        full_rows.append([f"linear → LLM {name}, fitted policy", f"{full.accuracy:.2%}", f"{(full.accuracy - base_full.accuracy) * 100:+.2f}"])
        gain = (rep.accuracy - base.accuracy) * 100
        ok = gain >= 1.0 if right else abs(gain) <= 0.5
        stood = answers_stood(decisions, gold)
        shares = ", ".join(f"{t} {s:.1%}" for t, s in rep.tier_share.items())
        outcomes = ", ".join(f"{k} {v:.1%}" for k, v in rep.llm.outcomes.items())
        rows.append([f"linear → LLM {name}, fitted policy", f"{rep.llm_call_rate:.1%}", f"{rep.accuracy:.2%}", f"{gain:+.2f}",
                     shares, f"{rep.accepted_accuracy:.2%}", outcomes])
        rows.append([f"linear → LLM {name}, safe default (no policy)", f"{safe.llm_call_rate:.1%}", f"{safe.accuracy:.2%}",
                     f"{(safe.accuracy - base.accuracy) * 100:+.2f}", ", ".join(f"{t} {s:.1%}" for t, s in safe.tier_share.items()),
                     f"{safe.accepted_accuracy:.2%}", ", ".join(f"{k} {v:.1%}" for k, v in safe.llm.outcomes.items())])
        rows.append([f"linear → LLM {name}, every answer stands (no policy, before)", f"{rep.llm_call_rate:.1%}", f"{stood:.2%}",
                     f"{(stood - base.accuracy) * 100:+.2f}", "—", "—", "—"])
        checks.append(f"{name}: {gain:+.2f} pts, bar {bar} → **{'met' if ok else 'NOT met'}**")
        notes.append(f"* **{name}** policy — {fitted.policy.describe()}.")
        print(rows[-3:], flush=True)

    body = f"""## LLM tier: fitted acceptance policy vs fake LLMs (BANKING77)

{stamp(f'python bench/llm.py --sample {args.sample} --seed {args.seed} --calibration {args.calibration}')}
Linear tier trained on train, gate fitted on validation for ≤ 20 % escalation; a seeded sample of {args.sample} test messages
(seed {args.seed}). The fakes are OpenAI-compatible servers over real HTTP that know the gold labels and always state
confidence 0.9. The acceptance policy is fitted on each fake's answers to up to {args.calibration} validation messages the linear
tier does not accept. "every answer stands" replays the same answers as if accepted (the behaviour this policy replaces).
Human-review decisions count with their best guess. LLM outcomes: llm = the LLM's label overruled the classifier's guess,
agree, guess = the guess kept, injection = held for review.

{table(["cascade", "LLM calls", "accuracy", "vs linear (pts)", "answered by", "accuracy on accepted", "LLM outcomes (share of messages)"], rows)}

Bars (issue #11 §3): {'; '.join(checks)}.

The same fitted policies on the whole test split ({len(data.test):,} messages), to show the sample is not a lucky draw:

{table(["cascade", "accuracy", "vs linear (pts)"], full_rows)}

{chr(10).join(notes)}
"""
    print(body)
    if not args.no_write:
        write_section(BENCHMARKS, "llm", body)
        print(f"wrote {BENCHMARKS}")


if __name__ == "__main__":
    main()
