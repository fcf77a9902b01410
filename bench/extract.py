"""Extract stage benchmark: rule fields (precision/recall per field), PII masking, sentiment/urgency, cost.

    python bench/extract.py [--no-timing] [--write]

* Fields and masking on the extraction corpus (360 hand-written BANKING77-style messages with gold
  fields and PII spans; the rules were tuned on it) and on the held-out file (64 messages).
* Sentiment and urgency on the labelled samples (135 + 44 messages), against stock VADER.
* Cost: BANKING77 test messages routed by a linear router; per message, routing alone and the extract
  stage (scan + mask + fields + sentiment + urgency) are timed in the same run, interleaved, so the
  p50 ratio compares like with like. Also on the field-dense corpus.

The configuration is ``bench/data/extract/banking77.yaml`` read through frontdesk's own config classes.
Writes the ``extract`` section of BENCHMARKS.md with ``--write``; errors go to ``--errors DIR``.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from decimal import Decimal  # noqa: E402
from pathlib import Path  # noqa: E402

import yaml  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _common import BENCHMARKS, stamp, table, write_section  # noqa: E402

from frontdesk.intake.extract import ExtractConfig, Extractor  # noqa: E402
from frontdesk.intake.extract import dates as _dates  # noqa: E402
from frontdesk.intake.extract.spans import non_overlapping  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "extract"
FIELDS = ["amounts", "dates", "emails", "phones", "cards", "ibans", "order_ids", "ticket_ids", "tracking_ids"]
SENT = ["negative", "neutral", "positive"]
URG = ["low", "normal", "high", "critical"]


def load_extractor(path: Path = DATA / "banking77.yaml") -> Extractor:
    """The benchmark's Extractor, built from a frontdesk.yaml fragment through the real config classes."""
    from frontdesk.config import LabelConfig

    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    labels = {k: LabelConfig(**v) for k, v in (raw.get("labels") or {}).items()}
    return Extractor(ExtractConfig(**raw["extract"]), label_fields={k: v.fields for k, v in labels.items() if v.fields},
                     label_urgency={k: v.urgency for k, v in labels.items() if v.urgency})


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _norm(field: str, value: object) -> object:
    if field == "amounts":
        return Decimal(value["value"]), value["currency"]  # type: ignore[index]
    return value.lower() if field == "emails" else value  # type: ignore[union-attr]


def score_fields(rows: list[dict], ex: Extractor, errors: list[str] | None = None) -> dict:
    """Per-field precision/recall (fields are sets per message) and masking: gold PII spans left
    unmasked (leaks) and masked spans that are not gold PII (mask precision)."""
    tp, fp, fn = Counter(), Counter(), Counter()
    pii_gold, leaked = Counter(), Counter()
    masked = masked_ok = 0
    for r in rows:
        got = ex.extract(r["text"], r["label"], dt.datetime.fromisoformat(r["sent_at"]), locale=r["locale"], lang=r["lang"])
        for f in FIELDS:
            g = {_norm(f, v) for v in r["fields"].get(f, [])}
            p = {_norm(f, v) for v in got.fields.get(f, [])}
            tp[f] += len(g & p)
            fp[f] += len(p - g)
            fn[f] += len(g - p)
            if g != p and errors is not None:
                errors.append(f"[{f}] {r['label']} {r['locale']} {r['sent_at']}\n  {r['text']}\n"
                              f"  missed={sorted(map(str, g - p))} extra={sorted(map(str, p - g))}")
        kept = non_overlapping(got.pii)
        for gold in r["pii"]:
            pii_gold[gold["type"]] += 1
            if not any(s <= gold["start"] and gold["end"] <= e for s, e, _ in kept):
                leaked[gold["type"]] += 1
                if errors is not None:
                    errors.append(f"[LEAK {gold['type']}] {gold['surface']!r} in: {r['text']}")
        for s, e, kind in kept:
            masked += 1
            if any(s < g["end"] and g["start"] < e for g in r["pii"]):
                masked_ok += 1
            elif errors is not None:
                errors.append(f"[OVERMASK {kind}] {r['text'][s:e]!r} in: {r['text']}")
    out = {}
    for f in FIELDS:
        p = tp[f] / (tp[f] + fp[f]) if tp[f] + fp[f] else 1.0
        rc = tp[f] / (tp[f] + fn[f]) if tp[f] + fn[f] else 1.0
        out[f] = {"gold": tp[f] + fn[f], "tp": tp[f], "fp": fp[f], "fn": fn[f], "precision": p, "recall": rc}
    total = sum(pii_gold.values())
    out["_mask"] = {"gold": total, "leaked": sum(leaked.values()), "by_type": dict(leaked),
                    "masked": masked, "precision": masked_ok / masked if masked else 1.0}
    return out


def score_signals(rows: list[dict], ex: Extractor) -> dict:
    """Sentiment, very-negative and urgency against the gold labels; stock VADER as the baseline."""
    from sklearn.metrics import accuracy_score, f1_score
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    stock = SentimentIntensityAnalyzer()
    gold_s = [r["sentiment"] for r in rows]
    gold_v = [r["very_negative"] for r in rows]
    gold_u = [r["urgency"] for r in rows]
    stock_s = []
    for r in rows:
        c = stock.polarity_scores(r["text"])["compound"]
        stock_s.append("negative" if c <= -0.05 else "positive" if c >= 0.05 else "neutral")
    pred = [ex.signals(r["text"], r["label"]) for r in rows]
    pred_s = [s.label if s else "neutral" for s, _ in pred]
    pred_v = [bool(s and s.very_negative) for s, _ in pred]
    pred_u = [u for _, u in pred]
    prior_u = [ex.signals("", r["label"])[1] for r in rows]
    hit_v = sum(a and b for a, b in zip(gold_v, pred_v))
    return {
        "n": len(rows),
        "stock_acc": accuracy_score(gold_s, stock_s), "stock_f1": f1_score(gold_s, stock_s, average="macro"),
        "acc": accuracy_score(gold_s, pred_s), "f1": f1_score(gold_s, pred_s, average="macro"),
        "very_p": hit_v / max(1, sum(pred_v)), "very_r": hit_v / max(1, sum(gold_v)), "very_gold": sum(gold_v),
        "urg_acc": accuracy_score(gold_u, pred_u), "urg_prior_acc": accuracy_score(gold_u, prior_u),
        "urg_within1": sum(abs(URG.index(a) - URG.index(b)) <= 1 for a, b in zip(gold_u, pred_u)) / len(rows),
        "crit_r": sum(a == b == "critical" for a, b in zip(gold_u, pred_u)) / max(1, gold_u.count("critical")),
        "crit_gold": gold_u.count("critical"),
        "en_acc": accuracy_score([g for g, r in zip(gold_s, rows) if r["lang"] == "en"],
                                 [p for p, r in zip(pred_s, rows) if r["lang"] == "en"]),
    }


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def stage(ex: Extractor, text: str, label: str | None, sent: dt.datetime, locale: str, lang: str) -> None:
    """The extract stage as the pipeline runs it for one message."""
    from frontdesk.intake.extract import Masker

    scan = ex.scan(text, lang=lang, locale=locale)
    masker = Masker()
    ex.mask(scan, masker)
    fields = ex.fields(scan, label, sent)
    ex.masked_fields(fields, scan, masker)
    ex.signals(text, label)


def time_against_routing(router, ex: Extractor, items: list[tuple[str, dt.datetime, str, str]]) -> dict:
    """Per message, in one run and interleaved: routing alone, then the extract stage on its label."""
    route_ms, extract_ms, reached = [], [], 0
    for text, _sent, _loc, lang in items[:200]:  # warm both paths
        stage(ex, text, router.route(text).label, _sent, _loc, lang)
    _dates.clear_caches()  # first sight: no span resolved yet
    calls = [0]
    parser = _dates._parser

    def counting(*args: object, **kwargs: object) -> object:
        calls[0] += 1
        return parser(*args, **kwargs)

    _dates._parser = counting  # count the messages that reach dateparser
    try:
        for text, sent, loc, lang in items:
            before = calls[0]
            t0 = time.perf_counter()
            decision = router.route(text)
            t1 = time.perf_counter()
            stage(ex, text, decision.label, sent, loc, lang)
            t2 = time.perf_counter()
            route_ms.append((t1 - t0) * 1e3)
            extract_ms.append((t2 - t1) * 1e3)
            reached += calls[0] > before
    finally:
        _dates._parser = parser
    both = [a + b for a, b in zip(route_ms, extract_ms)]
    return {"n": len(items), "route_p50": _pct(route_ms, 0.5), "route_p99": _pct(route_ms, 0.99), "extract_p50": _pct(extract_ms, 0.5),
            "extract_p90": _pct(extract_ms, 0.9), "extract_p99": _pct(extract_ms, 0.99), "both_p50": _pct(both, 0.5),
            "ratio": _pct(extract_ms, 0.5) / _pct(route_ms, 0.5), "dateparser_share": reached / len(items),
            "extract_mean": statistics.mean(extract_ms)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-timing", action="store_true", help="skip the cost measurement (no router training)")
    ap.add_argument("--write", action="store_true", help="write the extract section of BENCHMARKS.md")
    ap.add_argument("--errors", type=Path, help="write every field mismatch, leak and over-mask to this folder")
    args = ap.parse_args()
    ex = load_extractor()
    t0 = time.perf_counter()
    ex.warm_up()
    warm_s = time.perf_counter() - t0
    res: dict = {"warm_up_s": warm_s}
    for name in ("extraction_corpus", "extraction_holdout"):
        errs: list[str] = []
        res[name] = score_fields(read_jsonl(DATA / f"{name}.jsonl"), ex, errs)
        if args.errors:
            args.errors.mkdir(parents=True, exist_ok=True)
            (args.errors / f"errors_{name}.txt").write_text("\n".join(errs) + "\n", encoding="utf-8")
    for name in ("sentiment_corpus", "sentiment_holdout"):
        res[name] = score_signals(read_jsonl(DATA / f"{name}.jsonl"), ex)
    if not args.no_timing:
        from _common import dataset_dir

        from frontdesk import Dataset, Objective, Router

        res["load"] = " / ".join(f"{x:.1f}" for x in os.getloadavg())
        data = Dataset.load(dataset_dir("banking77"))
        router = Router.train(data, ["linear"], objective=Objective(max_escalation=0.2))
        sent = dt.datetime(2026, 3, 6, 9, 14, tzinfo=dt.timezone.utc)
        res["time_banking77"] = time_against_routing(router, ex, [(e.text, sent, "en-GB", "en") for e in data.test])
        corpus = read_jsonl(DATA / "extraction_corpus.jsonl")
        res["time_corpus"] = time_against_routing(
            router, ex, [(r["text"], dt.datetime.fromisoformat(r["sent_at"]), r["locale"], r["lang"]) for r in corpus])
    print(json.dumps(res, indent=1, default=str))
    if args.write:
        command = "python bench/extract.py --write" + (" --no-timing" if args.no_timing else "")
        write_section(BENCHMARKS, "extract", render(res) + "\n\n" + stamp(command))


def _f(x: float) -> str:
    return f"{x:.2f}"


def _load_note(load: str | None) -> str:
    """How far to trust the tails: a quiet machine's p99 is the stage's, a busy one's is mostly scheduling noise."""
    try:
        one = float(str(load).split("/")[0])
    except ValueError:
        return "p50 values are the ones to compare."
    if one < 1.0:
        return "a quiet machine: p50 and p99 are the stage's own."
    return "a machine busy with other jobs: p50 values are usable, p99 values are mostly scheduling noise."


def render(res: dict) -> str:
    dev, hold = res["extraction_corpus"], res["extraction_holdout"]
    rows = [[f, f"{dev[f]['gold']}", f"{_f(dev[f]['precision'])} / {_f(dev[f]['recall'])}", f"{hold[f]['gold']}",
             f"{_f(hold[f]['precision'])} / {_f(hold[f]['recall'])}"] for f in FIELDS]
    dm, hm = dev["_mask"], hold["_mask"]
    rows.append(["**PII masking** (leaked gold spans; mask precision)", f"{dm['gold']}",
                 f"{dm['leaked']} leaked; {_f(dm['precision'])}", f"{hm['gold']}", f"{hm['leaked']} leaked; {_f(hm['precision'])}"])
    out = ["## Extract stage: rule fields, PII masking, sentiment and urgency", "",
           "Fields are sets per message; a value counts when it equals the gold one (amounts as a Decimal and "
           "ISO currency, dates as ISO days resolved against the message time, phones as E.164, cards masked). "
           "The extraction corpus (360 messages, 77 BANKING77 intents, en/de/fr/es/pt; tricky cases such as "
           "'3/4' on en-GB and en-US, '€1.234,50', two amounts, masked card numbers, numbers that are not amounts) "
           "is what the rules were tuned on; the held-out file (64 messages) was written after the research "
           "prototype froze and scored it once (dates recall 0.87). Four of its five date misses ('Weds', 'Thurs', "
           "'last Sat', 'a couple of days ago') were fixed afterwards, so its dates number is no longer a blind "
           "score; 'Valentine's day' (holidays) is still missed. Data: `bench/data/extract/`.", "",
           table(["field", "corpus gold", "corpus P / R", "held-out gold", "held-out P / R"], rows), ""]
    if "time_banking77" in res:
        tb, tc = res["time_banking77"], res["time_corpus"]
        trow = [[name, f"{t['n']}", f"{t['route_p50']:.3f}", f"{t['extract_p50']:.3f}", f"{t['ratio']:.2f}",
                 f"{t['extract_p90']:.3f}", f"{t['extract_p99']:.3f}", f"{t['route_p99']:.3f}", f"{t['dateparser_share']:.1%}"]
                for name, t in (("BANKING77 test (real messages)", tb), ("extraction corpus (field-dense)", tc))]
        out += ["Cost per message, in one run: routing alone (linear router, `Router.route`) and then the extract "
                "stage (scan + mask + label's fields + sentiment + urgency), interleaved per message. Budget: "
                "≤ 0.2 ms added at p50. 'dateparser' = messages where a date span needed dateparser (ISO, numeric, "
                "relative-day and weekday spans are resolved without it, from its locale data).", "",
                table(["messages", "n", "routing p50 ms", "extract p50 ms (added)", "ratio extract/routing",
                       "extract p90 ms", "extract p99 ms", "routing p99 ms", "dateparser"], trow), "",
                f"First-use cost (`Extractor.warm_up()`: imports and dateparser's first parse): {res['warm_up_s']:.2f} s. "
                f"Load average before the run (1 / 5 / 15 min): {res.get('load', '?')} — {_load_note(res.get('load'))}", ""]
    srow = []
    for name in ("sentiment_corpus", "sentiment_holdout"):
        s = res[name]
        srow.append([name.replace("sentiment_", "") + f" ({s['n']})", f"{_f(s['stock_acc'])} / {_f(s['stock_f1'])}",
                     f"{_f(s['acc'])} / {_f(s['f1'])}", f"{_f(s['en_acc'])}", f"{_f(s['very_p'])} / {_f(s['very_r'])} ({s['very_gold']})",
                     f"{_f(s['urg_prior_acc'])} / {_f(s['urg_acc'])}", f"{_f(s['urg_within1'])}",
                     f"{_f(s['crit_r'])} ({s['crit_gold']})"])
    out += ["Sentiment and urgency sanity check on hand-labelled messages (the rules were written on the corpus; "
            "the held-out sample was scored once by the research prototype). Sentiment = VADER + support lexicon + "
            "cues; urgency = label prior (`labels.<label>.urgency`) raised by cues.", "",
            table(["sample", "stock VADER acc / macro-F1", "sentiment acc / macro-F1", "sentiment acc (en only)",
                   "very negative P / R (gold)", "urgency acc: prior only / with cues", "urgency within one level",
                   "critical recall (gold)"], srow)]
    return "\n".join(out)


if __name__ == "__main__":
    main()
