"""Certified gate benchmark (``--guarantee``): does accuracy on accepted messages stay ≥ the target, and what does it cost?

The linear tier is trained once per dataset on train (``Router.train`` with a guarantee, so the
dataset's own split is also checked end to end with ``evaluate``); its probabilities on validation +
test are cached. Then, for each configuration (target, probability):

* **re-splits** (the issue's criterion): the pooled validation + test rows are split at random into a
  calibration half and a test half, N times; on the calibration half ``fit_gate`` fits (a) the plain
  ``Objective(target_accuracy=…)`` gate, (b) the certified gate (``guarantee=P``, population semantics)
  and (c) the window gate (``guarantee=P, guarantee_window=W``); on the test half we measure accepted
  accuracy and escalation. A *miss* is a test half whose accepted accuracy is below the target.
* **population check** (the event the guarantee bounds): the pool is the population, calibration sets
  are bootstrap samples of the same size, and a miss is a gate whose accepted accuracy on the whole
  pool is below the target.

An uncertified fit (nothing passes the test) escalates everything: counted as 100 % escalation, never
as a miss. CLINC150 is shown twice: in-scope only (rows whose gold label is ``oos`` dropped; an
in-scope message predicted ``oos`` is an error) and with ``oos`` as one more label.

Writes BENCHMARKS.md section ``guarantee``. Run:
``python bench/guarantee.py [--splits 500] [--window 1000] [--cache DIR]`` (≈ 10 min on 2 busy cores).
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _common import BENCHMARKS, dataset_dir, stamp, table, write_section  # noqa: E402

from frontdesk import Dataset, Objective, Router, accuracy_interval, fit_gate  # noqa: E402
from frontdesk.evaluation.evaluate import evaluate  # noqa: E402

TRAIN_TARGET = {"banking77": 0.97, "clinc150": 0.95}  # the guarantee of the model trained on each dataset's own split


@dataclass(frozen=True)
class View:
    """One evaluation population: which rows count."""

    name: str
    dataset: str
    in_scope_only: bool


VIEWS = {
    "banking77": View("banking77", "banking77", False),
    "clinc150-inscope": View("clinc150 (in-scope only)", "clinc150", True),
    "clinc150-all": View("clinc150 (oos is a label)", "clinc150", False),
}
CONFIGS = {  # view → [(target, probability)]
    "banking77": [(0.95, 0.95), (0.97, 0.95), (0.97, 0.99)],
    "clinc150-inscope": [(0.97, 0.95), (0.98, 0.95)],
    "clinc150-all": [(0.95, 0.95), (0.97, 0.95)],
}
MODES = ("plain", "certified", "window")


@dataclass
class Pool:
    """Validation + test rows of one view: probabilities, gold labels and per-row gate inputs."""

    probs: np.ndarray
    gold: list[list[str]]
    labels: list[str]
    conf: np.ndarray
    margin: np.ndarray
    correct: np.ndarray


def model_and_probs(dataset: str, cache: Path) -> tuple[Router, dict[str, np.ndarray], Dataset]:
    """The dataset's model (trained once with a guarantee, cached) and its validation/test probabilities."""
    data = Dataset.load(dataset_dir(dataset))
    model_dir, probs_file = cache / f"{dataset}-model", cache / f"{dataset}-probs.npz"
    if model_dir.is_dir():
        router = Router.load(model_dir)
    else:
        t0 = time.perf_counter()
        objective = Objective(target_accuracy=TRAIN_TARGET[dataset], guarantee=0.95, on_uncertified="plain")
        router = Router.train(data, ["linear"], objective=objective)
        router.save(model_dir)
        print(f"{dataset}: trained in {time.perf_counter() - t0:.0f} s", flush=True)
    if not probs_file.exists():
        tier = router.tier("linear")
        np.savez_compressed(probs_file, **{s: tier.predict_proba([ex.text for ex in data.split(s)]).astype(np.float64)
                                           for s in ("validation", "test")})
    return router, dict(np.load(probs_file)), data


def pool_of(view: View, router: Router, probs: dict[str, np.ndarray], data: Dataset) -> Pool:
    rows = [ex for s in ("validation", "test") for ex in data.split(s)]
    p = np.concatenate([probs["validation"], probs["test"]])
    keep = np.array([not (view.in_scope_only and "oos" in ex.labels) for ex in rows])
    p, rows = p[keep], [ex for ex, k in zip(rows, keep) if k]
    labels = list(router.tier("linear").labels_)
    top2 = -np.partition(-p, 1, axis=1)[:, :2]
    pred = p.argmax(axis=1)
    correct = np.array([labels[j] in ex.labels for j, ex in zip(pred, rows)])
    return Pool(p, [list(ex.labels) for ex in rows], labels, top2[:, 0], top2[:, 0] - top2[:, 1], correct)


def fit(pool: Pool, idx: np.ndarray, target: float, probability: float, window: int) -> dict[str, tuple[float, float] | None]:
    """Gates fitted on rows ``idx`` with the product's ``fit_gate``: mode → (threshold, margin), None when uncertified."""
    probs, gold = pool.probs[idx], [pool.gold[i] for i in idx]
    out: dict[str, tuple[float, float] | None] = {}
    for mode, extra in (("certified", {}), ("window", {"guarantee_window": window})):
        obj = Objective(target_accuracy=target, guarantee=probability, on_uncertified="plain", **extra)
        policy, curve = fit_gate(probs, gold, pool.labels, obj)
        out[mode] = (policy.threshold, policy.min_margin) if curve.guarantee.certified else None
        if mode == "certified":  # the plain fit to the same target, computed alongside (curve.plain)
            out["plain"] = (curve.plain.threshold, curve.plain.min_margin)
    return out


def on(pool: Pool, idx: np.ndarray, gate: tuple[float, float] | None) -> tuple[float, float | None]:
    """(escalation, accepted accuracy or None) of ``gate`` on rows ``idx``."""
    if gate is None:
        return 1.0, None
    accepted = (pool.conf[idx] >= gate[0]) & (pool.margin[idx] >= gate[1])
    return 1.0 - float(accepted.mean()), float(pool.correct[idx][accepted].mean()) if accepted.any() else None


def run(pool: Pool, target: float, probability: float, splits: int, window: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    n = len(pool.conf)
    half = n // 2
    everything = np.arange(n)
    res = {m: {"esc": [], "acc": []} for m in MODES}
    pop = {m: {"esc": [], "acc": []} for m in MODES}
    for _ in range(splits):
        perm = rng.permutation(n)
        gates = fit(pool, perm[:half], target, probability, window)
        for m in MODES:
            esc, acc = on(pool, perm[half:], gates[m])
            res[m]["esc"].append(esc), res[m]["acc"].append(acc)
        gates = fit(pool, rng.integers(0, n, half), target, probability, window)
        for m in MODES:
            esc, acc = on(pool, everything, gates[m])
            pop[m]["esc"].append(esc), pop[m]["acc"].append(acc)

    def misses(values: list[float | None]) -> int:
        return sum(a is not None and a < target for a in values)

    out = {"n_cal": half, "n_test": n - half, "target": target, "probability": probability, "splits": splits,
           "window": window}
    for m in MODES:
        out[m] = {"test_misses": misses(res[m]["acc"]), "population_misses": misses(pop[m]["acc"]),
                  "escalation": float(np.mean(res[m]["esc"])),
                  "uncertified": sum(a is None and e == 1.0 for a, e in zip(res[m]["acc"], res[m]["esc"]))}
    return out


def share(k: int, n: int) -> str:
    low, high = accuracy_interval(k, n)
    return f"{k}/{n} ({k / n:.1%}) [{low:.1%}, {high:.1%}]"


def span(values: list[float], *, pp: bool = False) -> str:
    """'a–b' of shares (as % or as signed percentage points)."""
    lo, hi = min(values), max(values)
    if pp:
        return f"{lo * 100:+.1f} to {hi * 100:+.1f} pp" if hi - lo > 5e-4 else f"{lo * 100:+.1f} pp"
    return f"{lo:.1%}–{hi:.1%}" if hi - lo > 5e-4 else f"{lo:.1%}"


def prices(results: list[dict], mode: str) -> list[float]:
    """Extra escalation of ``mode`` over the plain fit, per row (rows where the mode certified in most splits)."""
    ok = [r for r in results if r[mode]["uncertified"] <= 0.5 * r["splits"]] or results
    return [r[mode]["escalation"] - r["plain"]["escalation"] for r in ok]


def original_split(name: str, router: Router, data: Dataset) -> list[str]:
    """The model trained on the dataset's own split with a guarantee, evaluated on its test split."""
    report, _ = evaluate(router, data.test)
    g = report.guarantee
    assert g is not None
    acc = "—" if g.accepted_accuracy is None else f"{g.accepted_accuracy:.2%} [{g.interval[0]:.2%}, {g.interval[1]:.2%}]"
    cert = (f"{g.threshold:.3f} / {g.certified_lower_bound:.4f} / {g.validation_escalation_rate:.1%}" if g.certified
            else f"not certified ({g.note[:60]}…)")
    return [name, str(router.meta["sizes"]["validation"]), f"{g.target_accuracy:.2f} / {g.probability:.2f}", cert, acc,
            f"{g.escalation_rate:.1%}", "—" if g.plain_escalation_rate is None else f"{g.plain_escalation_rate:.1%}",
            "—" if g.price is None else f"{g.price * 100:+.1f} pp", "yes" if g.meets_target else "**no**"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--splits", type=int, default=500, help="random re-splits (and bootstrap draws) per configuration")
    ap.add_argument("--window", type=int, default=1000, help="the window of --guarantee-window")
    ap.add_argument("--views", default=",".join(VIEWS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("FRONTDESK_BENCH_CACHE", "/tmp/frontdesk-bench-guarantee")),
                    help="trained models and probabilities are kept here")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args()
    if args.splits < 1:
        sys.exit("--splits must be ≥ 1")
    args.cache.mkdir(parents=True, exist_ok=True)
    views = [v.strip() for v in args.views.split(",") if v.strip()]
    unknown = sorted(set(views) - set(VIEWS))
    if unknown:
        sys.exit(f"unknown view(s) {unknown}: use {', '.join(VIEWS)}")
    loaded = {ds: model_and_probs(ds, args.cache) for ds in dict.fromkeys(VIEWS[v].dataset for v in views)}

    results, rows, pop_rows = [], [], []
    for key in views:
        view = VIEWS[key]
        router, probs, data = loaded[view.dataset]
        pool = pool_of(view, router, probs, data)
        for target, probability in CONFIGS[key]:
            t0 = time.perf_counter()
            r = run(pool, target, probability, args.splits, args.window, args.seed)
            r["view"] = view.name
            results.append(r)
            p, c, w, n = r["plain"], r["certified"], r["window"], r["splits"]
            rows.append([view.name, f"{r['n_cal']}/{r['n_test']}", f"{target:.2f}", f"{probability:.2f}",
                         share(p["test_misses"], n), share(c["test_misses"], n), share(w["test_misses"], n),
                         f"{p['escalation']:.1%}", f"{c['escalation']:.1%}", f"{w['escalation']:.1%}",
                         f"{(c['escalation'] - p['escalation']) * 100:+.1f} pp", f"{(w['escalation'] - p['escalation']) * 100:+.1f} pp",
                         f"{c['uncertified']} / {w['uncertified']}"])
            pop_rows.append([view.name, f"{target:.2f}", f"{probability:.2f}", share(p["population_misses"], n),
                             share(c["population_misses"], n), share(w["population_misses"], n)])
            print(" | ".join(rows[-1]), f"({time.perf_counter() - t0:.0f} s)", flush=True)
    originals = [original_split(ds, router, data) for ds, (router, _, data) in loaded.items()]

    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    window = args.window
    at95 = [r for r in results if r["probability"] == 0.95] or results

    def within_risk(r: dict) -> bool:  # the miss share's 95 % interval reaches down to the stated risk
        return accuracy_interval(r["certified"]["population_misses"], r["splits"])[0] <= 1 - r["probability"] + 1e-12

    def meets(r: dict, mode: str) -> bool:
        return r[mode]["test_misses"] <= 0.05 * r["splits"]

    pop_share = [r["certified"]["population_misses"] / r["splits"] for r in at95]
    test_share = [r["certified"]["test_misses"] / r["splits"] for r in at95]
    cert_ok = [r for r in results if meets(r, "certified")]
    verdict = "\n".join([
        f"- **Population mode** (`--guarantee P`, the issue's definition: the accuracy *rate* of the accepted traffic "
        f"≥ target with probability ≥ P): misses within the stated risk in {sum(map(within_risk, results))} of "
        f"{len(results)} rows (at P = 0.95: {span(pop_share)} of bootstrap draws miss).",
        f"- **The re-split criterion** (≤ 5 % of test halves below the target) is met by **window mode** "
        f"(`--guarantee-window {window}`) in {sum(meets(r, 'window') for r in results)} of {len(results)} rows, and by "
        f"population mode in {len(cert_ok)} of {len(results)}"
        + (" (" + ", ".join(f"{r['view']} {r['target']:.2f} at P = {r['probability']:.2f}" for r in cert_ok) + ")" if cert_ok else "")
        + f": a finite test half scatters around the rate (≈ ±0.4 pp for 2,000 accepted messages at 0.97), and the "
        f"certified rate sits just above the target, so {span(test_share)} of test halves dip below it at P = 0.95.",
        f"- **The price** (extra escalation over the plain fit to the same target): population mode "
        f"{span(prices(results, 'certified'), pp=True)}, window mode {span(prices(results, 'window'), pp=True)}.",
    ])
    body = "\n".join([
        "## Certified gate (`--guarantee`): accuracy on accepted ≥ target with a stated probability",
        "",
        stamp(f"python bench/guarantee.py --splits {args.splits} --window {window}") +
        f" Linear tier (TF-IDF + logistic regression, temperature-scaled on validation) trained once on each train split; "
        f"{args.splits} random re-splits of validation + test per row; gates fitted by `fit_gate` on the calibration half "
        "(plain: `Objective(target_accuracy=τ)`; certified: `guarantee=P`; window: `guarantee=P, guarantee_window="
        f"{window}`), measured on the other half. An uncertified fit escalates everything (100 % escalation, never a miss). "
        "Misses with a 95 % Clopper–Pearson interval.",
        "",
        verdict,
        "",
        "### Re-splits: share of test halves whose accepted accuracy is below the target, and the price",
        "",
        table(["dataset", "n cal/test", "target", "prob.", "misses plain", "misses certified", f"misses window {window}",
               "escalation plain", "escalation certified", "escalation window", "price certified", "price window",
               "uncertified (cert. / window)"], rows),
        "",
        "### Population check: bootstrap calibration sets, the pool as the population (the event `--guarantee` bounds)",
        "",
        table(["dataset", "target", "prob.", "misses plain", "misses certified", f"misses window {window}"], pop_rows),
        "",
        "### Each dataset's own split: `frontdesk train --guarantee 0.95` on train/validation, `evaluate` on test",
        "",
        table(["dataset", "n val", "target / prob.", "certified threshold / val. bound / val. escalation",
               "test accepted accuracy [95% CI]", "test escalation", "plain fit escalation", "price", "≥ target on test"], originals),
        "",
        "CLINC150's own validation split holds 3.2 % `oos`, its test split 18.2 %: the two are not exchangeable, which the "
        "guarantee assumes; the service-side interval (`frontdesk_accepted_accuracy`) is what catches such a shift.",
    ])
    print("\n" + body)
    if not args.no_write:
        write_section(BENCHMARKS, "guarantee", body)
        print(f"\nwritten to {BENCHMARKS}")


if __name__ == "__main__":
    main()
