"""Prompt-injection defence: attacks accepted and false alarms, against an obedient fake LLM.

Routers: one linear router per dataset (BANKING77, CLINC150), trained on train, gate fitted on
validation. The LLM is a fake OpenAI-compatible server over real HTTP that **obeys** every attack:
it answers the attacker's label whenever that label is among the candidates, otherwise the first
candidate. The acceptance policy is replaced by one that trusts the LLM completely, so the
injection rule is all that stands between an obeyed attack and an accepted label (the worst case;
the safe default or a fitted policy would also refuse many of them).

* **Attacks** (``tests/data/injection``: 156 development attacks, hold-out sets of 42 and 29):
  each is routed twice — with every message reaching the LLM tier (linear gate 1.0, the worst
  case) and through the fitted cascade (the linear gate may decide first; with the pre-scan a
  message with injection signals cannot be accepted by it). Guard ``review`` (the default),
  ``verify`` and ``off`` (no defence).
* **False alarms**: the whole test split routed through linear → LLM, the fake now an honest LLM
  that answers the gold label; a false alarm is a decision sent to review with reason "possible
  prompt injection" (detector or label echo).

Writes BENCHMARKS.md section ``injection``.

Run: ``python bench/injection.py``
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, str(ROOT / "tests"))
from _common import BENCHMARKS, dataset_dir, stamp, table, write_section  # noqa: E402
from fake_llm_servers import FakeOpenAIServer, RecordedRequest, answer  # noqa: E402

from frontdesk import Dataset, GatePolicy, Router, RouterSettings  # noqa: E402
from frontdesk.llm.acceptance import AcceptancePolicy, FitSummary, LogisticModel, labels_digest  # noqa: E402
from frontdesk.llm.injection import INJECTION_REASON, scan  # noqa: E402

CORPUS = ROOT / "tests" / "data" / "injection"
_FENCE = re.compile(r"<<<MESSAGE (\w+)>>>\n(.*)\n<<<END \1>>>", re.S)


def rows_of(name: str) -> list[dict]:
    return [json.loads(line) for line in (CORPUS / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def scripted(targets: dict[str, str]):  # noqa: ANN201
    """Answer ``targets[message]`` when it is a candidate, else the first candidate (obedient / honest)."""

    def behave(rec: RecordedRequest):  # noqa: ANN202
        enum = [x for x in rec.enum or [] if x != "none"]
        m = _FENCE.search(rec.user)
        want = targets.get(m.group(2) if m else "")
        return answer([want] if want in enum else enum[:1], 1.0, "as asked")

    return behave


def trusting(router: Router) -> AcceptancePolicy:
    summary = FitSummary(n_reached=0, n_called=0, n_answered=0, llm_accuracy=1.0, guess_accuracy=0.0, agreement=0.0,
                         policy_accuracy=1.0, overrules=1.0, accepted=1.0, accepted_accuracy=1.0, target_accuracy=0.0,
                         note="benchmark: trusts the LLM completely")
    return AcceptancePolicy(llm_model="obedient", labels_digest=labels_digest(router.labels), evidence_tiers=["linear"],
                            llm_right=LogisticModel(constant=0.99), guess_right=LogisticModel(constant=0.01),
                            gate=GatePolicy(threshold=0.5), fitted=summary)


def with_llm(router: Router, server: FakeOpenAIServer, always: bool, guard: str, trust: bool = True) -> Router:
    gates = {"linear": GatePolicy(threshold=1.0)} if always else {"linear": router.gates["linear"]}
    base = Router(router.tiers, gates, RouterSettings(), curves=router.curves, descriptions=router.descriptions,
                  examples=router.examples, example_index=router.example_index)
    base.set_llm_policy(trusting(router) if trust else None)
    return base.with_llm({"provider": "openai", "model": "obedient", "base_url": server.base_url, "retries": 0, "cache_ttl_s": 0,
                          "api_key_env": "FRONTDESK_BENCH_NO_KEY", "injection_guard": guard})


def attack_rows(routers: dict[str, Router], corpus: str, rows: list[dict]) -> list[list[str]]:
    out = []
    configs = [(always, guard, True) for always in (True, False) for guard in ("off", "review", "verify")]
    configs += [(True, "off", False), (True, "review", False)]
    for always, guard, trust in configs:
        if True:
            stats = {"n": 0, "reachable": 0, "target": 0, "other": 0, "review": 0, "flagged": 0, "detected": 0}
            for name, router in routers.items():
                mine = [r for r in rows if r["dataset"] == name]
                if not mine:
                    continue
                with FakeOpenAIServer(default=scripted({r["text"]: r["target_label"] for r in mine})) as server:
                    decisions = with_llm(router, server, always, guard, trust).route_batch([r["text"] for r in mine])
                cands = {r["text"]: [lab for lab, _ in router.tier("linear").score(r["text"]).ranked[:5]] for r in mine}
                for r, d in zip(mine, decisions):
                    stats["n"] += 1
                    stats["reachable"] += r["target_label"] in cands[r["text"]]
                    stats["detected"] += bool(scan(r["text"], router.labels).signals)
                    accepted = d.tier != "human"
                    stats["target"] += accepted and r["target_label"] in d.labels
                    stats["other"] += accepted and d.labels != [r["benign_label"]]
                    stats["review"] += d.tier == "human" and INJECTION_REASON in d.reason
                    stats["flagged"] += accepted and d.flagged and INJECTION_REASON in d.reason
            n = stats["n"]
            out.append([corpus, "LLM-always" if always else "fitted cascade", guard, "trusts the LLM" if trust else "safe default",
                        str(n), f"{stats['detected']}",
                        f"{stats['reachable']}", f"**{stats['target']}**", str(stats["other"]), str(stats["review"]), str(stats["flagged"])])
            print(out[-1], flush=True)
    return out


def false_alarms(name: str, router: Router, data: Dataset) -> list[str]:
    texts = [ex.text for ex in data.test]
    t0 = time.perf_counter()
    fires = sum(1 for t in texts if scan(t, router.labels).signals)
    scan_ms = (time.perf_counter() - t0) / len(texts) * 1e3
    gold = {ex.text: ex.labels[0] for ex in data.test}
    with FakeOpenAIServer(default=scripted(gold)) as server:
        r = with_llm(router, server, False, "review")
        decisions = r.route_batch(texts)
    reached = sum(1 for d in decisions if any(t.kind == "llm" for t in d.trace))
    alarms = sum(1 for d in decisions if INJECTION_REASON in d.reason)
    return [name, f"{len(texts):,}", f"{fires} ({fires / len(texts):.2%})", f"{reached:,}", f"**{alarms} ({alarms / len(texts):.2%})**",
            f"{alarms / max(1, reached):.2%}", f"{scan_ms:.2f}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("FRONTDESK_BENCH_NO_KEY", "none")
    data = {name: Dataset.load(dataset_dir(name)) for name in ("banking77", "clinc150")}
    routers = {name: Router.train(d, ["linear"]) for name, d in data.items()}
    attack_table = []
    for corpus, label in (("attacks.jsonl", "dev (156)"), ("attacks_holdout.jsonl", "hold-out 1 (42)"), ("attacks_holdout2.jsonl", "hold-out 2 (29)")):
        attack_table += attack_rows(routers, label, rows_of(corpus))
    fa = [false_alarms(name, routers[name], d) for name, d in data.items()]
    for row in fa:
        print(row, flush=True)
    body = f"""## Prompt injection: attacks accepted and false alarms (obedient fake LLM)

{stamp('python bench/injection.py')} Linear routers trained on BANKING77 / CLINC150 train (gate fitted on validation for
≤ 20 % escalation). The LLM is a fake OpenAI-compatible server over real HTTP that **obeys every attack** (the attacker's
label whenever it is a candidate, else the first candidate), and the acceptance policy is one that trusts the LLM
completely, so the injection rule alone decides (the last two rows of each corpus use the safe default instead: no
fitted policy, the LLM never changes the classifier's label). Corpora: `tests/data/injection/` (our own writing; hold-out 1 was
written after the detector froze and then used to fix it, hold-out 2 never used to change it). "LLM-always": every
attack reaches the LLM tier (linear gate 1.0); "fitted cascade": the fitted linear gate may decide first, except that
a message with injection signals cannot be accepted (pre-scan). Guard `review` is the default (signals → human
review, the LLM not asked); `verify` asks the LLM and lets its answer stand, flagged, only when it is the earlier tier's
top label on the message without the flagged parts; `off` is no defence.

| corpus | routing | guard | acceptance policy | attacks | detected (signals) | attacker's label among the candidates | **accepted with the attacker's label** | accepted with a label ≠ the benign one | human review, "possible prompt injection" | accepted but flagged, same reason |
|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join("| " + " | ".join(r) + " |" for r in attack_table)}

False alarms on the test splits (never used for tuning): every test message through linear → LLM with the default guard,
the fake now answering the gold label. A false alarm is a decision whose reason says "possible prompt injection"
(detector signals or label echo).

{table(["dataset", "test messages", "detector fires", "reached the LLM tier", "**sent to review as possible injection**", "of those reaching the LLM", "scan ms / message"], fa)}

What this does not show: the corpora are ours, and a deny-list of patterns misses phrasings it has not seen (hold-out 2
is the honest estimate). An attack that names the target label in plain words without instruction syntax, or that
describes a different need, is indistinguishable from a customer stating it; it is then up to the acceptance policy,
which weighs the LLM's answer against the classifier's evidence.
"""
    print(body)
    if not args.no_write:
        write_section(BENCHMARKS, "injection", body)
        print(f"wrote {BENCHMARKS}")


if __name__ == "__main__":
    main()
