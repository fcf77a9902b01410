from __future__ import annotations

import json
from pathlib import Path

import pytest

from frontdesk import DataError, Dataset
from frontdesk.data.dataset import read_examples


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _rows(n: int = 30) -> list[dict]:
    labels = ["a", "b", "c"]
    return [{"text": f"message number {i} about {labels[i % 3]}", "labels": [labels[i % 3]]} for i in range(n)]


def test_directory_with_labels_and_descriptions(tmp_path: Path, support: Dataset) -> None:
    assert len(support.train) > 300 and support.validation and support.test
    assert "refund_request" in support.labels
    assert support.descriptions["refund_request"]
    assert not support.multi_label


def test_single_file_is_split_deterministically(tmp_path: Path) -> None:
    f = _write(tmp_path / "all.jsonl", _rows(60))
    a, b = Dataset.load(f), Dataset.load(f)
    assert [e.text for e in a.test] == [e.text for e in b.test]
    assert (len(a.train), len(a.validation), len(a.test)) == (48, 6, 6)
    assert set(a.labels) == {"a", "b", "c"}
    assert {e.text for e in a.train}.isdisjoint({e.text for e in a.test})


def test_csv_with_label_column_and_multi_labels(tmp_path: Path) -> None:
    f = tmp_path / "d.csv"
    f.write_text("text,labels\nhello there,greet\nrefund and cancel,refund;cancel\n", encoding="utf-8")
    ex = read_examples(f)
    assert ex[0].labels == ("greet",) and ex[1].labels == ("refund", "cancel")


@pytest.mark.parametrize(
    ("content", "line", "needle"),
    [
        (b'{"text": "ok", "labels": ["a"]}\n{"text": "broken"\n', 2, "invalid JSON"),
        (b'{"text": "ok", "labels": ["a"]}\n{"labels": ["a"]}\n', 2, "missing or empty 'text'"),
        (b'{"text": "  ", "labels": ["a"]}\n', 1, "missing or empty 'text'"),
        (b'{"text": "ok", "labels": []}\n', 1, "missing or empty 'labels'"),
        (b'{"text": "ok", "labels": [3]}\n', 1, "labels must be non-empty strings"),
        (b'{"text": "ok", "labels": ["a"]}\n{"text": "caf\xe9", "labels": ["a"]}\n', 2, "invalid UTF-8"),
        (b'["text", "labels"]\n', 1, "JSON object"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, content: bytes, line: int, needle: str) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_bytes(content)
    with pytest.raises(DataError) as err:
        read_examples(f)
    assert err.value.line == line and err.value.path == f
    assert needle in str(err.value) and f"bad.jsonl:{line}:" in str(err.value)


def test_label_missing_from_labels_txt(tmp_path: Path) -> None:
    _write(tmp_path / "train.jsonl", _rows(9))
    (tmp_path / "labels.txt").write_text("a\nb\n")
    with pytest.raises(DataError, match=r"\['c'\].*labels.txt"):
        Dataset.load(tmp_path)


def test_missing_dataset_and_missing_train(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no dataset"):
        Dataset.load(tmp_path / "nope")
    with pytest.raises(DataError, match="no train.jsonl"):
        Dataset.load(tmp_path)


def test_unknown_split_name(support: Dataset) -> None:
    with pytest.raises(DataError, match="unknown split 'dev'"):
        support.split("dev")
