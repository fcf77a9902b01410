"""``frontdesk batch`` end to end on real files: formats, order, ids, bad rows, worker processes, resume.

The decisions themselves are checked against ``Router.route`` in test_batch_cascade.py; here: one
output row per input row in input order, the same file from 1 or 2 worker processes, and a run that
is cut short (a torn last line, a killed process) resumed to exactly the file an uninterrupted run writes.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import frontdesk_cli

from frontdesk import ConfigError, DataError, Dataset, Router
from frontdesk.batch import BatchOptions, run_batch
from frontdesk.batch.inputs import fingerprint

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def texts(support: Dataset, n: int) -> list[str]:
    base = [ex.text for ex in support.test + support.validation + support.train]
    return [base[i % len(base)] for i in range(n)]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def batch(model: Path, src: Path, out: Path, **kw: object):  # noqa: ANN201 - BatchSummary
    return run_batch(BatchOptions(model=model, input=src, output=out, **kw))


@pytest.fixture(scope="module")
def jsonl_input(support: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """700 rows with a blank line, bad JSON, a row without text, a plain JSON string and ids on some rows."""
    path = tmp_path_factory.mktemp("in") / "tickets.jsonl"
    lines = [json.dumps({"text": t, "n": i}) for i, t in enumerate(texts(support, 700))]
    lines[10] = "{not json"
    lines[20] = json.dumps({"body": "no text field"})
    lines[30] = json.dumps("a plain string is a message too: where is my parcel?")
    lines[40] = json.dumps({"text": "   "})
    lines.insert(50, "")  # blank lines are not rows
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_rows_in_order_with_ids_and_error_rows(saved_model: Path, jsonl_input: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    summary = batch(saved_model, jsonl_input, out, workers=1, chunk_rows=64)
    rows = read_jsonl(out)
    tag = fingerprint(jsonl_input)
    assert len(rows) == summary.rows == 700 and [r["id"] for r in rows] == [f"{tag}:{i}" for i in range(700)]
    assert all(list(r) == ["id", "labels", "confidence", "tier", "escalated", "flagged", "reason"] for r in rows)
    errors = {i: r["reason"] for i, r in enumerate(rows) if r["tier"] == "error"}
    assert set(errors) == {10, 20, 40} and summary.errors == 3
    assert errors[10].startswith("not valid JSON") and "'text'" in errors[20] and "empty" in errors[40]
    assert rows[30]["tier"] != "error"
    router = Router.load(saved_model)
    src = [line for line in jsonl_input.read_text().splitlines() if line.strip()]
    for i in range(0, 700, 37):  # spot checks; the full comparison is test_batch_cascade's
        if i not in errors:
            obj = json.loads(src[i])
            text = obj if isinstance(obj, str) else obj["text"]
            d = router.route(text)
            assert (rows[i]["labels"], rows[i]["tier"], rows[i]["reason"]) == (d.labels, d.tier, d.reason)
    assert sum(summary.tiers.values()) == 700 and summary.tiers["error"] == 3


def test_two_worker_processes_write_the_same_file(saved_model: Path, jsonl_input: Path, tmp_path: Path) -> None:
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    batch(saved_model, jsonl_input, one, workers=1, chunk_rows=50, trace=True)
    summary = batch(saved_model, jsonl_input, two, workers=2, chunk_rows=50, trace=True)
    assert summary.workers == 2 and summary.peak_worker_rss_mb > 0
    def timeless(path: Path) -> list[dict]:  # a trace's latency_ms is measured, not decided
        rows = read_jsonl(path)
        for r in rows:
            for t in r["trace"]:
                t.pop("latency_ms")
        return rows

    assert timeless(one) == timeless(two)
    first = read_jsonl(two)[0]
    assert first["trace"][0]["tier"] == "linear" and first["trace"][0]["top"]


def test_csv_with_text_and_id_columns_quoted_newlines_and_short_rows(saved_model: Path, support: Dataset, tmp_path: Path) -> None:
    src = tmp_path / "tickets.csv"
    body = texts(support, 120)
    with src.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["ticket", "body", "channel"])
        for i, t in enumerate(body):
            w.writerow([f"T-{i:04d}", t + ("\nsecond line, with a comma" if i % 7 == 0 else ""), "mail"])
        f.write("T-short\n")  # a row without the body column
    out = tmp_path / "out.csv"
    summary = batch(saved_model, src, out, text_column="body", id_column="ticket", chunk_rows=32)
    with out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(out.read_text(encoding="utf-8").splitlines()) == len(rows) + 1  # one physical line per row
    assert [r["id"] for r in rows] == [f"T-{i:04d}" for i in range(120)] + ["T-short"]
    assert rows[-1]["tier"] == "error" and "fields" in rows[-1]["reason"] and summary.errors == 1
    router = Router.load(saved_model)
    d = router.route(body[7] + "\nsecond line, with a comma")
    assert rows[7]["labels"] == "|".join(d.labels) and float(rows[7]["confidence"]) == pytest.approx(d.confidence)
    assert rows[7]["escalated"] in ("true", "false")
    with pytest.raises(ConfigError, match="no column 'text'.*ticket, body, channel"):
        batch(saved_model, src, tmp_path / "x.csv")


def test_parquet_in_and_out_match_the_jsonl_run(saved_model: Path, support: Dataset, tmp_path: Path) -> None:
    src = tmp_path / "tickets.parquet"
    body = texts(support, 500)
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(500)], "text": body}), src, row_group_size=128)
    out = tmp_path / "out.parquet"
    summary = batch(saved_model, src, out, id_column="id", chunk_rows=100, part_rows=150, workers=2)
    assert sorted(p.name for p in out.iterdir()) == [f"part-{i:05d}.parquet" for i in range(4)]
    table = pq.read_table(out)
    assert table.num_rows == summary.rows == 500 and table.column("id").to_pylist() == [f"r{i}" for i in range(500)]
    ref_in = tmp_path / "same.jsonl"
    ref_in.write_text("".join(json.dumps({"text": t, "id": f"r{i}"}) + "\n" for i, t in enumerate(body)))
    batch(saved_model, ref_in, tmp_path / "ref.jsonl", id_column="id", chunk_rows=100)
    ref = read_jsonl(tmp_path / "ref.jsonl")
    assert table.to_pylist() == ref


def test_text_lines(saved_model: Path, support: Dataset, tmp_path: Path) -> None:
    src = tmp_path / "lines.txt"
    body = texts(support, 90)
    src.write_bytes(("\n".join(body[:45]) + "\n\n" + "\r\n".join(body[45:])).encode() + b"\n\xff\xfe broken\n")
    out = tmp_path / "out.jsonl"
    summary = batch(saved_model, src, out)
    rows = read_jsonl(out)
    assert len(rows) == 91 and rows[-1]["tier"] == "error" and "UTF-8" in rows[-1]["reason"] and summary.errors == 1
    router = Router.load(saved_model)
    assert rows[60]["labels"] == router.route(body[60]).labels  # a \r\n line, read without its \r


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_resume_after_a_torn_last_line_writes_exactly_the_uninterrupted_file(saved_model: Path, jsonl_input: Path, tmp_path: Path,
                                                                             fmt: str) -> None:
    ref = tmp_path / f"ref.{fmt}"
    batch(saved_model, jsonl_input, ref, chunk_rows=64)
    full = ref.read_bytes()
    for cut in (len(full) // 3, len(full) // 3 * 2 + 7, len(full) - 3):
        out = tmp_path / f"cut-{cut}.{fmt}"
        out.write_bytes(full[:cut])  # a crash mid-write: the last line is torn
        done_before = full[:cut].count(b"\n") - (fmt == "csv")
        summary = batch(saved_model, jsonl_input, out, chunk_rows=64, resume=True)
        assert summary.resumed_from == done_before and summary.rows == 700 - done_before
        assert out.read_bytes() == full  # no duplicates, no gaps, same bytes
    again = batch(saved_model, jsonl_input, ref, chunk_rows=64, resume=True)  # complete: nothing to do
    assert again.rows == 0 and again.resumed_from == 700 and ref.read_bytes() == full


def test_resume_parquet_drops_the_unfinished_part(saved_model: Path, jsonl_input: Path, tmp_path: Path) -> None:
    ref, out = tmp_path / "ref.parquet", tmp_path / "out.parquet"
    batch(saved_model, jsonl_input, ref, chunk_rows=64, part_rows=200)
    batch(saved_model, jsonl_input, out, chunk_rows=64, part_rows=200)
    (out / "part-00003.parquet").unlink()
    os.replace(out / "part-00002.parquet", out / "part-00002.parquet.tmp")  # a part a crash left unfinished
    summary = batch(saved_model, jsonl_input, out, chunk_rows=64, part_rows=200, resume=True)
    assert summary.resumed_from == 400 and not list(out.glob("*.tmp"))
    assert pq.read_table(out).to_pylist() == pq.read_table(ref).to_pylist()


def test_resume_after_the_process_is_killed(saved_model: Path, support: Dataset, tmp_path: Path) -> None:
    src = tmp_path / "big.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts(support, 6000)))
    ref, out = tmp_path / "ref.jsonl", tmp_path / "out.jsonl"
    batch(saved_model, src, ref, chunk_rows=100)
    args = [sys.executable, "-m", "frontdesk", "batch", "--model", str(saved_model), "--in", str(src), "--out", str(out),
            "--chunk-rows", "100", "--workers", "1"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and (not out.exists() or out.stat().st_size < 20_000):
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    written = out.read_bytes().count(b"\n")
    if written >= 6000:
        pytest.skip("the run finished before it could be killed (a very fast machine)")
    code, stdout, stderr = frontdesk_cli(*args[3:], "--resume", "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["resumed_from"] == written
    assert out.read_bytes() == ref.read_bytes()


def test_refuses_to_clobber_or_resume_another_inputs_output(saved_model: Path, jsonl_input: Path, support: Dataset,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    batch(saved_model, jsonl_input, out)
    with pytest.raises(ConfigError, match="--resume.*--overwrite"):
        batch(saved_model, jsonl_input, out)
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts(support, 900)))
    out.write_bytes(out.read_bytes()[: len(out.read_bytes()) // 2])
    with pytest.raises(DataError, match="another input"):
        batch(saved_model, other, out, resume=True)
    assert batch(saved_model, other, out, overwrite=True).rows == 900


def test_cli_summary_and_exit_code(saved_model: Path, jsonl_input: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    code, stdout, stderr = frontdesk_cli("batch", "--model", str(saved_model), "--in", str(jsonl_input), "--out", str(out), "--json")
    assert code == 1 and "3 rows could not be routed" in stderr  # the three bad rows
    summary = json.loads(stdout)
    assert summary["rows"] == 700 and summary["errors"] == 3 and summary["rate"] > 0 and summary["peak_rss_mb"] > 0
    code, _, stderr = frontdesk_cli("batch", "--model", str(saved_model), "--in", str(jsonl_input), "--out", str(tmp_path / "x.xlsx"))
    assert code == 2 and "--out-format" in stderr


def test_resume_a_parquet_input_inside_a_row_group(saved_model: Path, support: Dataset, tmp_path: Path) -> None:
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": texts(support, 600)}), src, row_group_size=97)  # row groups and chunks do not line up
    ref, out = tmp_path / "ref.jsonl", tmp_path / "out.jsonl"
    batch(saved_model, src, ref, chunk_rows=64)
    full = ref.read_bytes()
    out.write_bytes(full[: len(full) // 2 + 3])
    summary = batch(saved_model, src, out, chunk_rows=64, resume=True)
    assert 0 < summary.resumed_from < 600 and summary.resumed_from % 97 and out.read_bytes() == full


def test_the_stdlib_json_fallback_writes_the_same_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("orjson")
    from frontdesk.batch import jsonfast
    from frontdesk.batch.cascade import Rows
    from frontdesk.batch.outputs import encode

    rows = Rows(["f:0", "f:1"], [["refund"], ["ü-label", "two"]], [0.1, 1 / 3], ["linear", "human"], [False, True], [False, True],
                ["confidence 0.10 ≥ 0.05", 'quote " and\nnewline'], [[{"tier": "linear", "score": 1e-7, "margin": None}], []])
    fast = encode(rows, "jsonl")
    monkeypatch.setattr(jsonfast, "_orjson", None)
    slow = encode(rows, "jsonl")
    assert [json.loads(line) for line in slow.splitlines()] == [json.loads(line) for line in fast.splitlines()]
    assert slow.count(b"\n") == 2 and "ü-label".encode() in slow  # one line per row, UTF-8 (not \u escapes)
