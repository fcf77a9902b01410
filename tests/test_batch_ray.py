"""``--engine ray``: the batch job on a real local Ray runtime (2 CPUs) writes what the local engine writes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from frontdesk import Dataset
from frontdesk.batch import BatchOptions, run_batch

ray = pytest.importorskip("ray")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture(scope="module")
def ray_runtime():  # noqa: ANN201
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        yield
    finally:
        ray.shutdown()


def inputs(support: Dataset, root: Path) -> dict[str, tuple[Path, dict]]:
    """The same 1,000 messages as JSONL (with bad rows and blank lines), CSV (quoted newlines, ids) and Parquet (row groups)."""
    base = [ex.text for ex in support.test + support.validation + support.train]
    body = [base[i % len(base)] + ("\nsecond line" if i % 13 == 0 else "") for i in range(1000)]
    jsonl = root / "in.jsonl"
    lines = [json.dumps({"text": t}) for t in body]
    lines[5], lines[600] = "{broken", json.dumps({"text": ""})
    jsonl.write_text("\n".join(lines[:300]) + "\n\n\n" + "\n".join(lines[300:]) + "\n", encoding="utf-8")
    tab = root / "in.csv"
    with tab.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["ticket", "text"])
        w.writerows([f"T{i}", t] for i, t in enumerate(body))
    par = root / "in.parquet"
    pq.write_table(pa.table({"text": body}), par, row_group_size=333)
    return {"jsonl": (jsonl, {}), "csv": (tab, {"id_column": "ticket"}), "parquet": (par, {})}


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_ray_engine_writes_the_local_engines_file(ray_runtime, saved_model: Path, support: Dataset, tmp_path: Path, fmt: str) -> None:  # noqa: ANN001
    src, extra = inputs(support, tmp_path)[fmt]
    local, on_ray = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    a = run_batch(BatchOptions(model=saved_model, input=src, output=local, chunk_rows=128, workers=1, **extra))
    b = run_batch(BatchOptions(model=saved_model, input=src, output=on_ray, chunk_rows=128, workers=2, engine="ray", **extra))
    assert b.engine == "ray" and b.workers == 2 and b.rows == a.rows == 1000 and b.tiers == a.tiers
    assert on_ray.read_bytes() == local.read_bytes()
    assert b.errors == (2 if fmt == "jsonl" else 0)


def test_ray_engine_resumes_and_writes_parquet(ray_runtime, saved_model: Path, support: Dataset, tmp_path: Path) -> None:  # noqa: ANN001
    src, _ = inputs(support, tmp_path)["jsonl"]
    ref = tmp_path / "ref.jsonl"
    run_batch(BatchOptions(model=saved_model, input=src, output=ref, chunk_rows=100))
    out = tmp_path / "cut.jsonl"
    full = ref.read_bytes()
    out.write_bytes(full[: len(full) // 2])
    summary = run_batch(BatchOptions(model=saved_model, input=src, output=out, chunk_rows=100, engine="ray", workers=2, resume=True))
    assert summary.resumed_from == full[: len(full) // 2].count(b"\n") and out.read_bytes() == full
    par = tmp_path / "out.parquet"
    summary = run_batch(BatchOptions(model=saved_model, input=src, output=par, chunk_rows=100, engine="ray", part_rows=400))
    assert summary.workers == 2  # default: one actor per CPU of the cluster (the runtime has 2)
    assert pq.read_table(par).to_pylist() == [json.loads(line) for line in full.splitlines()]
