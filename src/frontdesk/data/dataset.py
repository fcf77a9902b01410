"""Labelled datasets: a directory of train/validation/test JSONL files, or one JSONL/CSV file.

A row is ``{"text": "...", "labels": ["a", "b"]}`` (``"label": "a"`` is accepted too; an optional
``"weight"`` ≥ 0 is a sample weight, e.g. a teacher's soft label from distillation). A directory
may hold ``labels.txt`` (one label per line, fixes the label order) and ``labels.yaml`` (label →
description, read by the LLM tier). A single file is split deterministically (seeded, stratified
by first label) into 80/10/10 train/validation/test.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from frontdesk.errors import DataError

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled text; ``weight`` is its sample weight in training (1.0 = an ordinary row).

    Weights other than 1 come from distillation (a teacher's soft labels: one row per likely
    label, weighted by the teacher's probability); tiers that cannot use weights ignore them.
    """

    text: str
    labels: tuple[str, ...]
    weight: float = 1.0


@dataclass
class Dataset:
    """Train/validation/test examples plus the label set and optional label descriptions."""

    train: list[Example]
    validation: list[Example] = field(default_factory=list)
    test: list[Example] = field(default_factory=list)
    labels: tuple[str, ...] = ()
    descriptions: dict[str, str] = field(default_factory=dict)
    name: str = "dataset"

    def __post_init__(self) -> None:
        seen = {label for split in (self.train, self.validation, self.test) for ex in split for label in ex.labels}
        if not self.labels:
            self.labels = tuple(sorted(seen))
        else:
            missing = sorted(seen - set(self.labels))
            if missing:
                raise DataError(
                    f"labels {missing[:5]} appear in the data but not in the label list "
                    f"({len(self.labels)} labels): add them to labels.txt"
                )

    @property
    def multi_label(self) -> bool:
        """True when any example carries more than one label."""
        return any(len(ex.labels) > 1 for split in (self.train, self.validation, self.test) for ex in split)

    def label_examples(self, n: int) -> dict[str, list[str]]:
        """The first ``n`` distinct training texts of each label, shortest first (at least 12 characters;
        deterministic): what tiers that need examples are shown when there is no example index."""
        out: dict[str, list[str]] = {}
        for ex in sorted(self.train, key=lambda e: (len(e.text), e.text)):
            for label in ex.labels:
                bucket = out.setdefault(label, [])
                if len(bucket) < n and len(ex.text) >= 12:
                    bucket.append(ex.text)
        return out

    def split(self, name: str) -> list[Example]:
        """The examples of split ``name`` (train, validation or test)."""
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}: use one of {', '.join(SPLITS)}")
        return getattr(self, name)

    @classmethod
    def load(cls, path: str | Path, *, seed: int = 13) -> Dataset:
        """Load a dataset directory (train/validation/test.jsonl) or a single JSONL/CSV file."""
        p = Path(path)
        if p.is_dir():
            return _load_dir(p)
        if p.is_file():
            examples = read_examples(p)
            train, validation, test = split_examples(examples, seed=seed)
            return cls(train, validation, test, name=p.stem)
        raise DataError(f"no dataset at {p}: pass a directory with train.jsonl or a .jsonl/.csv file")

    @classmethod
    def from_examples(
        cls, train: Iterable[tuple[str, Sequence[str] | str]], validation: Iterable[tuple[str, Sequence[str] | str]] = (),
        **kwargs: object,
    ) -> Dataset:
        """Build a dataset from (text, labels) pairs; handy in notebooks and tests."""
        return cls([_example(t, y) for t, y in train], [_example(t, y) for t, y in validation], **kwargs)  # type: ignore[arg-type]


def _example(text: str, labels: Sequence[str] | str) -> Example:
    return Example(text, (labels,) if isinstance(labels, str) else tuple(labels))


def _load_dir(d: Path) -> Dataset:
    if not (d / "train.jsonl").is_file():
        raise DataError(f"no train.jsonl in {d}: a dataset directory needs train.jsonl (validation.jsonl, test.jsonl optional)")
    splits = {name: read_examples(d / f"{name}.jsonl") if (d / f"{name}.jsonl").is_file() else [] for name in SPLITS}
    labels: tuple[str, ...] = ()
    if (d / "labels.txt").is_file():
        labels = tuple(line.strip() for line in _read_text(d / "labels.txt").splitlines() if line.strip())
    descriptions = _read_descriptions(d / "labels.yaml")
    return Dataset(splits["train"], splits["validation"], splits["test"], labels=labels, descriptions=descriptions, name=d.name)


def _read_descriptions(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(_read_text(path))
    except yaml.YAMLError as exc:
        raise DataError(f"invalid YAML: {exc}", path=path) from exc
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise DataError("labels.yaml must map each label name to a one-line description string", path=path)
    return dict(data)


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise DataError(f"invalid UTF-8 at byte {exc.start}: re-encode the file as UTF-8", path=path, line=line) from exc


def read_examples(path: str | Path) -> list[Example]:
    """Read one JSONL or CSV file of labelled examples; errors name the file and line."""
    p = Path(path)
    if p.suffix.lower() == ".csv":
        return list(_iter_csv(p))
    return list(_iter_jsonl(p))


def _iter_jsonl(path: Path) -> Iterator[Example]:
    raw = path.read_bytes()
    for lineno, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"invalid UTF-8 at column {exc.start + 1}: re-encode the file as UTF-8", path=path, line=lineno) from exc
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON ({exc.msg} at column {exc.colno})", path=path, line=lineno) from exc
        if not isinstance(row, dict):
            raise DataError('each line must be a JSON object like {"text": ..., "labels": [...]}', path=path, line=lineno)
        yield _row_to_example(row, path, lineno)


def _iter_csv(path: Path) -> Iterator[Example]:
    reader = csv.DictReader(io.StringIO(_read_text(path)))
    if not reader.fieldnames or "text" not in reader.fieldnames:
        raise DataError("CSV needs a header with a 'text' column and a 'label' or 'labels' column", path=path, line=1)
    for lineno, row in enumerate(reader, start=2):
        raw = row.get("labels") if row.get("labels") is not None else row.get("label")
        labels = [s.strip() for s in (raw or "").replace("|", ";").split(";") if s.strip()]
        yield _row_to_example({"text": row.get("text"), "labels": labels}, path, lineno)


def _row_to_example(row: dict, path: Path, lineno: int) -> Example:
    text = row.get("text")
    if not isinstance(text, str) or not text.strip():
        raise DataError("missing or empty 'text'", path=path, line=lineno)
    labels = row.get("labels", row.get("label"))
    if isinstance(labels, str):
        labels = [labels]
    if not isinstance(labels, list) or not labels:
        raise DataError("missing or empty 'labels' (a non-empty list of label names)", path=path, line=lineno)
    if not all(isinstance(label, str) and label.strip() for label in labels):
        raise DataError(f"labels must be non-empty strings, got {labels!r}", path=path, line=lineno)
    weight = row.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight < float("inf"):
        raise DataError(f"'weight' must be a number ≥ 0, got {weight!r}", path=path, line=lineno)
    return Example(text.strip(), tuple(dict.fromkeys(label.strip() for label in labels)), float(weight))


def split_examples(
    examples: Sequence[Example], *, seed: int = 13, fractions: tuple[float, float] = (0.1, 0.1)
) -> tuple[list[Example], list[Example], list[Example]]:
    """Split deterministically into train/validation/test, stratified by first label where possible."""
    from sklearn.model_selection import train_test_split

    if len(examples) < 10:
        raise DataError(f"only {len(examples)} examples: a single-file dataset needs at least 10 to split")
    val_frac, test_frac = fractions
    firsts = [ex.labels[0] for ex in examples]
    counts = Counter(firsts)

    def strat(items: Sequence[Example]) -> list[str] | None:
        c = Counter(ex.labels[0] for ex in items)
        return [ex.labels[0] for ex in items] if min(c.values()) >= 2 else None

    rest, test = train_test_split(list(examples), test_size=test_frac, random_state=seed, stratify=firsts if min(counts.values()) >= 3 else None)
    train, validation = train_test_split(rest, test_size=val_frac / (1 - test_frac), random_state=seed, stratify=strat(rest))
    return list(train), list(validation), list(test)


def write_jsonl(path: str | Path, examples: Iterable[Example]) -> None:
    """Write examples as JSONL (the format ``read_examples`` reads); ``weight`` only when it is not 1."""
    with Path(path).open("w", encoding="utf-8") as fh:
        for ex in examples:
            row: dict[str, object] = {"text": ex.text, "labels": list(ex.labels)}
            if ex.weight != 1.0:
                row["weight"] = ex.weight
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
