"""Batch routing at scale: `frontdesk batch` (local engine and Ray) and the tier-2 (encoder) file size.

Writes the ``scale`` section of BENCHMARKS.md, one sub-section per part:

* ``--part batch``: file-to-file throughput of the local engine (linear; linear → encoder INT8) against
  routing one message at a time, CPU per message (all processes), JSON/CSV/Parquet, 1,000,000 messages
  with the resident memory sampled along the way.
* ``--part ray``: the same job on a local Ray runtime (2 CPUs) against the local engine.
* ``--part tier2``: the exported INT8 encoder before/after vocabulary pruning: size, accuracy on
  BANKING77 and CLINC150 (in-scope accuracy and out-of-scope recall), messages whose tokens changed.

Models are trained once into ``--cache`` (default runs/bench-batch) and reused. The encoder tier's head
is ``--encoder-head`` (logreg by default: the frozen backbone, minutes to train on 2 cores; its inference
cost is the fine-tuned encoder's — same backbone, same export). This machine is shared: every row says
the load average around it, and the CPU time per message (all processes) projects what idle cores give.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCHMARKS, ROOT, dataset_dir, stamp, table, write_section  # noqa: E402

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SECTION_HEAD = """## Batch routing at scale (`frontdesk batch`, Ray) and the tier-2 file size

`frontdesk batch --model M --in FILE --out FILE` routes a file with the vectorised cascade: the linear tier
scores a chunk as one sparse matrix product, the gate judges it as arrays (`GatePolicy.judge_many`), only the
escalated rows go on to the encoder (one batch, sorted by length), and rows are written as they are, without
a `Decision` object per message. Output rows equal what `Router.route` decides (tests/test_batch_cascade.py)."""


def cpu_seconds() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


class RssSampler:
    """Samples the resident memory of this process and its children (worker processes) every 0.25 s."""

    def __init__(self) -> None:
        import psutil

        self.proc, self.samples, self.done = psutil.Process(), [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(0.25):
            try:
                kids = self.proc.children(recursive=True)
                rss = self.proc.memory_info().rss + sum(k.memory_info().rss for k in kids if k.is_running())
            except psutil.Error:
                continue
            self.samples.append((self.done, rss / 2**20))

    def progress(self, done: int, _total: int | None) -> None:
        self.done = done

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def at(self, share: float, total: int) -> float:
        """The largest sample taken while up to ``share`` of ``total`` rows were done (after the first chunk)."""
        got = [rss for done, rss in self.samples if 0 < done <= share * total]
        return max(got) if got else float("nan")


def write_part(part: str, body: str) -> None:
    """Write one part inside the ``scale`` section (creating the section with all parts the first time)."""
    text = BENCHMARKS.read_text(encoding="utf-8")
    if "<!-- scale:start -->" not in text:
        parts = "\n\n".join(f"<!-- scale-{p}:start -->\n_(not run yet: `python bench/batch.py --part {p}`)_\n<!-- scale-{p}:end -->"
                            for p in ("batch", "ray", "tier2"))
        write_section(BENCHMARKS, "scale", SECTION_HEAD + "\n\n" + parts)
    write_section(BENCHMARKS, f"scale-{part}", body)


# -- models and inputs -----------------------------------------------------------------------------
def model(cache: Path, dataset: str, tiers: str, head: str) -> Path:
    """A trained model (linear, or linear+encoder exported to INT8), cached."""
    from frontdesk import Dataset, Router
    from frontdesk.tiers.encoder import export_model

    name = f"{dataset}-{tiers.replace(',', '-')}" + (f"-{head}" if "encoder" in tiers else "")
    path = cache / name
    if not (path / "frontdesk.json").is_file():
        print(f"training {name} …", flush=True)
        params = {"encoder": {"head": head, "threads": 1}} if "encoder" in tiers else None
        Router.train(Dataset.load(dataset_dir(dataset)), tiers.split(","), tier_params=params).save(path)
    if "encoder" not in tiers:
        return path
    int8 = cache / f"{name}-int8"
    if not int8.exists():
        export_model(path, int8)
    return int8


def messages(dataset: str) -> list[str]:
    from frontdesk import Dataset

    return [ex.text for ex in Dataset.load(dataset_dir(dataset)).test]


def input_file(cache: Path, dataset: str, n: int, fmt: str) -> Path:
    """``n`` messages (the test split, cycled) as .jsonl / .csv / .parquet, with an id column."""
    path = cache / f"{dataset}-{n}.{fmt}"
    if path.exists():
        return path
    texts = messages(dataset)
    rows = ((f"m{i}", texts[i % len(texts)]) for i in range(n))
    tmp = path.with_suffix(path.suffix + ".tmp")
    if fmt == "jsonl":
        with tmp.open("w", encoding="utf-8") as f:
            for rid, text in rows:
                f.write(json.dumps({"id": rid, "text": text}, ensure_ascii=False) + "\n")
    elif fmt == "csv":
        import csv

        with tmp.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["id", "text"])
            w.writerows(rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        ids, body = zip(*rows)
        pq.write_table(pa.table({"id": list(ids), "text": list(body)}), tmp, row_group_size=100_000)
    tmp.rename(path)
    return path


def run(model_dir: Path, src: Path, out: Path, **kw: object) -> dict:
    """One batch job: summary + CPU seconds of all processes + peak RSS sampled + load average before/after."""
    from frontdesk.batch import BatchOptions, run_batch

    before_load, c0 = load(), cpu_seconds()
    with RssSampler() as rss:
        summary = run_batch(BatchOptions(model=model_dir, input=src, output=out, overwrite=True, **kw), progress=rss.progress)
    cpu = cpu_seconds() - c0
    out_size = sum(p.stat().st_size for p in ([out] if out.is_file() else out.iterdir()))
    return {"summary": summary, "cpu_us": cpu / max(1, summary.rows) * 1e6, "rss": rss, "load": f"{before_load} → {load()}",
            "out_mb": out_size / 1e6}


# -- parts ---------------------------------------------------------------------------------------------
def part_batch(cache: Path, args: argparse.Namespace, command: str) -> None:
    from frontdesk import Router
    from frontdesk.batch import jsonfast

    lin = model(cache, "banking77", "linear", args.encoder_head)
    enc = model(cache, "banking77", "linear,encoder", args.encoder_head)
    work = cache / "out"
    work.mkdir(exist_ok=True)
    rows: list[list[str]] = []

    def add(what: str, r: dict, note: str = "") -> None:
        s = r["summary"]
        steady = (s.rows - min(s.rows, 4096)) / max(1e-9, s.seconds - s.startup_seconds)
        rows.append([what, f"{s.rows:,}", f"{s.workers}", f"{s.rate:,.0f}", f"{steady:,.0f}", f"{s.startup_seconds:.1f}",
                     f"{r['cpu_us']:.0f}", f"{2e6 / r['cpu_us']:,.0f}",
                     f"{max(x for _, x in r['rss'].samples) if r['rss'].samples else float('nan'):,.0f}", r["load"], note])
        print(rows[-1], flush=True)

    # the per-message paths, for reference (in-process, one worker)
    texts = messages("banking77")
    sample = [texts[i % len(texts)] for i in range(args.reference_n)]
    router = Router.load(lin)
    for name, fn in (("Router.route, one message at a time", lambda: [router.route(t) for t in sample]),
                     ("Router.route_batch (Decision objects)", lambda: router.route_batch(sample))):
        l0, c0, t0 = load(), cpu_seconds(), time.perf_counter()
        fn()
        dt, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        rows.append([name + " — linear, in-process, no file I/O", f"{len(sample):,}", "1", f"{len(sample) / dt:,.0f}", "—", "—",
                     f"{cpu / len(sample) * 1e6:.0f}", f"{2e6 / (cpu / len(sample) * 1e6):,.0f}", "—", f"{l0} → {load()}", "reference"])
        print(rows[-1], flush=True)

    big = input_file(cache, "banking77", args.n, "jsonl")
    for workers in (1, 2):
        add(f"batch: linear, JSONL → JSONL ({workers} worker{'s' if workers > 1 else ''})",
            run(lin, big, work / "lin.jsonl", workers=workers))
    if jsonfast._orjson is not None:  # the standard library's json instead of orjson, in-process
        saved = jsonfast._orjson
        jsonfast._orjson = None
        try:
            add("batch: linear, JSONL → JSONL, stdlib json instead of orjson (1 worker)", run(lin, big, work / "lin-json.jsonl", workers=1))
        finally:
            jsonfast._orjson = saved
    for fmt in ("csv", "parquet"):
        src = input_file(cache, "banking77", args.n, fmt)
        add(f"batch: linear, {fmt} → {fmt} (2 workers)", run(lin, src, work / f"lin.{fmt}", workers=2, id_column="id"))
    add("batch: linear, with --trace (2 workers)", run(lin, big, work / "lin-trace.jsonl", workers=2, trace=True))
    enc_in = input_file(cache, "banking77", args.encoder_n, "jsonl")
    r = run(enc, enc_in, work / "enc.jsonl", workers=2)
    share = r["summary"].tiers.get("encoder", 0) / max(1, r["summary"].rows)
    add(f"batch: linear → encoder INT8 ({args.encoder_head} head), JSONL → JSONL (2 workers)", r, f"{share:.1%} scored by the encoder")

    million = input_file(cache, "banking77", args.million, "jsonl")
    m = run(lin, million, work / "million.jsonl", workers=2)
    add(f"batch: linear, {args.million:,} messages (2 workers)", m)
    rss = m["rss"]
    flat = " / ".join(f"{rss.at(q, args.million):,.0f}" for q in (0.1, 0.25, 0.5, 0.75, 1.0))

    body = f"""### `frontdesk batch`, local engine (BANKING77 models)

{stamp(command)}
Input: the BANKING77 test split cycled to N messages, with an id column; output: one row per message. The bench ran
at niceness {os.nice(0)} (below 0: ahead of other jobs on this machine).
*msgs/s file to file* includes start-up (worker spawn and model load: *start-up s*, until the first chunk is written;
*after start-up* is the rate from then on) on this machine with whatever else ran (the load average before → after
is in the last column: above ~1, other jobs shared the 2 cores and wall-clock rates understate what the code does). *CPU µs/msg* is the CPU time of all processes (main + workers) per message; *2 idle cores* projects
2 × 10⁶ / (CPU µs/msg), assuming the cores are the only limit. Peak RSS: main process + workers, sampled every 0.25 s.

{table(["run", "messages", "workers", "msgs/s file to file", "msgs/s after start-up", "start-up s", "CPU µs/msg",
        "msgs/s on 2 idle cores (projected)", "peak RSS MiB", "load avg", "note"], rows)}

Memory over the {args.million:,}-message run (RSS MiB, main + workers, largest sample up to 10 / 25 / 50 / 75 / 100 % of the
rows): {flat}; input {million.stat().st_size / 1e6:,.0f} MB, output {m['out_mb']:,.0f} MB. Chunks of 4,096 rows, at most
2 × workers + 1 chunks in flight: memory does not grow with the file.
"""
    write_part("batch", body)


def part_ray(cache: Path, args: argparse.Namespace, command: str) -> None:
    import ray

    lin = model(cache, "banking77", "linear", args.encoder_head)
    src = input_file(cache, "banking77", args.ray_n, "jsonl")
    work = cache / "out"
    work.mkdir(exist_ok=True)
    rows = []
    local = run(lin, src, work / "ray-local.jsonl", workers=2)
    rows.append(["local engine (2 worker processes)", f"{local['summary'].rate:,.0f}", f"{local['summary'].seconds:.1f}", "—", local["load"]])
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    boot = time.perf_counter() - t0
    try:
        on_ray = run(lin, src, work / "ray.jsonl", workers=2, engine="ray")
    finally:
        ray.shutdown()
    same = (work / "ray.jsonl").read_bytes() == (work / "ray-local.jsonl").read_bytes()
    rows.append(["Ray Data, local runtime (ray.init(num_cpus=2)), 2 actors", f"{on_ray['summary'].rate:,.0f}",
                 f"{on_ray['summary'].seconds:.1f}", f"{boot:.1f}", on_ray["load"]])
    body = f"""### `frontdesk batch --engine ray` on this machine

{stamp(command)}
{args.ray_n:,} BANKING77 messages, linear model, JSONL → JSONL. Output identical to the local engine's: **{same}**.
Ray adds its runtime (raylet, object store, actor start-up, one task per 4,096-row chunk) and on 2 shared cores
competes with the work for the same CPUs; the point of the Ray path is the same job on many machines
(`--address ray://HEAD:10001`), where each node adds its cores.

{table(["engine", "msgs/s (wall, loaded box)", "job s", "ray.init s", "load avg"], rows)}
"""
    write_part("ray", body)


def part_tier2(cache: Path, args: argparse.Namespace, command: str) -> None:
    import numpy as np

    from frontdesk import Dataset, Router
    from frontdesk.tiers.encoder import KEEP_FREQUENT, export_model

    rows = []
    for dataset in ("banking77", "clinc150"):
        data = Dataset.load(dataset_dir(dataset))
        full = model(cache, dataset, "linear,encoder", args.encoder_head)
        train_texts = [ex.text for ex in data.train + data.validation]
        variants = [("INT8 export (full vocabulary)", full)]
        for keep_chars, frequent, tag in ((False, 0, "unk"), (True, 0, "chars"), (True, KEEP_FREQUENT, f"f{KEEP_FREQUENT}")):
            dst = cache / f"{full.name}-pruned-{tag}"
            if not dst.exists():
                export_model(full, dst, vocab_texts=train_texts, keep_characters=keep_chars, keep_frequent=frequent)
            variants.append((f"training tokens, {'characters' if keep_chars else '[UNK]'} fallback"
                             + (f" + {frequent:,} most frequent (the default)" if frequent else ""), dst))
        test = data.test
        gold = [ex.labels[0] for ex in test]
        oos = np.array([g == "oos" for g in gold])
        tok_full = None
        for name, path in variants:
            tier = Router.load(path).tier("encoder")
            tier.set_threads(2)
            probs = tier.predict_proba([ex.text for ex in test])
            pred = [tier.labels_[i] for i in probs.argmax(1)]
            ok = np.array([p == g for p, g in zip(pred, gold)])
            onnx_file = next((path / "tiers/encoder/onnx").glob("model*.onnx"))
            tok = tier._onnx.tokenizer
            if tok_full is None:
                tok_full, changed = tok, np.zeros(len(test), dtype=bool)
            else:
                changed = np.array([tok.encode(ex.text).tokens != tok_full.encode(ex.text).tokens for ex in test])
            vocab = json.loads((path / "tiers/encoder/encoder.json").read_text())["info"].get("exported", {}).get("vocabulary", {})
            in_scope = f"{ok[~oos].mean():.2%}" if oos.any() else "—"
            rows.append([dataset, name, f"{vocab.get('kept', 30522):,}", f"{onnx_file.stat().st_size / 1e6:.1f}", f"{ok.mean():.2%}",
                         in_scope, f"{ok[oos].mean():.2%}" if oos.any() else "—",
                         f"{changed[~oos].mean():.1%}" + (f" / {changed[oos].mean():.1%}" if oos.any() else "")])
            print(rows[-1], flush=True)
    body = f"""### Tier-2 size: vocabulary pruning of the INT8 encoder

{stamp(command)}
Encoder: all-MiniLM-L6-v2, {args.encoder_head} head, ONNX INT8 (dynamic, per-channel). What is quantized: every
MatMul weight and the word-embedding table (uint8, 30,522 × 384 = 11.7 MB of the 23.0 MB file; the position
embeddings, LayerNorms and biases stay fp32). Pruning (`frontdesk export --prune-vocab DATA`) keeps the tokens the
training split (train + validation) produces plus ids 0–103 ([PAD], [UNK], [CLS], [SEP], [MASK] keep their ids);
*characters fallback* also keeps every single character and its `##` form, so a word never seen in training splits
into smaller known pieces instead of `[UNK]`; the default also keeps the {KEEP_FREQUENT:,} most frequent tokens (BERT
vocabularies list words by corpus frequency from id 1996: "the", "of", "and", …), which out-of-scope messages need.
Rows are cut from the already-quantized table: a message whose tokens were all kept gets exactly the old vector.
Accuracy: the encoder tier alone (argmax) on the test split. *Tokens changed*: test messages whose tokenization
differs from the full vocabulary's (in-scope / out-of-scope).

{table(["dataset", "encoder", "vocabulary", "file MB", "accuracy", "in-scope accuracy", "OOS recall", "tokens changed"], rows)}
"""
    write_part("tier2", body)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=["batch", "ray", "tier2", "all"], default="all")
    p.add_argument("--cache", type=Path, default=ROOT / "runs" / "bench-batch")
    p.add_argument("--encoder-head", choices=["logreg", "finetune"], default="logreg")
    p.add_argument("--n", type=int, default=200_000, help="messages for the throughput rows")
    p.add_argument("--encoder-n", type=int, default=100_000, help="messages for the linear → encoder row")
    p.add_argument("--million", type=int, default=1_000_000, help="messages for the memory row")
    p.add_argument("--reference-n", type=int, default=5_000, help="messages for the per-message reference rows")
    p.add_argument("--ray-n", type=int, default=100_000)
    args = p.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    command = "python bench/batch.py " + " ".join(sys.argv[1:])
    parts = ["batch", "ray", "tier2"] if args.part == "all" else [args.part]
    for part in parts:
        {"batch": part_batch, "ray": part_ray, "tier2": part_tier2}[part](args.cache, args, command)
    print(f"wrote the scale section of {BENCHMARKS}")


if __name__ == "__main__":
    main()
