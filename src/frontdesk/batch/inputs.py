"""Batch inputs: JSONL, plain text, CSV/TSV and Parquet, read as a stream of chunks or as byte-range spans.

A *row* is one message: a non-blank line of JSONL or text, a CSV record after the header, a Parquet row.
Rows are numbered from 0 in file order; a row without an id column gets ``<file tag>:<row>`` where the
tag fingerprints the file (size, first and last MiB), so ids are stable across runs and resumes.

Reading is split in two so that every engine parses alike: the reader cuts the file into chunks of
raw records (:class:`Payload`: lines, CSV fields, Parquet values — cheap, in the process that reads)
and :func:`decode` turns a payload into texts, ids and per-row problems (in the worker that routes).
The Ray engine cuts the file into :class:`Span` byte ranges (or Parquet row groups) instead, which
its workers read themselves; :func:`read_span` yields the very payloads :func:`iter_payloads` would.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from frontdesk.batch import jsonfast
from frontdesk.errors import ConfigError, DataError

InputFormat = Literal["jsonl", "txt", "csv", "tsv", "parquet"]
_BY_SUFFIX: dict[str, InputFormat] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".txt": "txt", ".text": "txt",
                                      ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}
_BLOCK = 1 << 22


def input_format(path: str | Path, given: str | None = None) -> InputFormat:
    """The input's format: ``given``, else from the file name (``.jsonl``, ``.txt``, ``.csv``, ``.tsv``, ``.parquet``)."""
    if given:
        if given not in ("jsonl", "txt", "csv", "tsv", "parquet"):
            raise ConfigError(f"unknown input format {given!r}: use jsonl, txt, csv, tsv or parquet", field="--in-format")
        return given  # type: ignore[return-value]
    suffixes = Path(str(path)).suffixes
    for suffix in reversed(suffixes):
        if suffix.lower() in _BY_SUFFIX:
            return _BY_SUFFIX[suffix.lower()]
    raise ConfigError(f"cannot tell the format of {path} from its name: pass --in-format jsonl|txt|csv|tsv|parquet", field="--in")


def fingerprint(path: str | Path) -> str:
    """A short, stable tag for a file: SHA-256 of its size, first MiB and last MiB (10 hex digits)."""
    with _open_binary(path) as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(0)
        h = hashlib.sha256(str(size).encode())
        h.update(f.read(1 << 20))
        if size > 1 << 20:
            f.seek(max(1 << 20, size - (1 << 20)))
            h.update(f.read(1 << 20))
    return h.hexdigest()[:10]


def row_id(tag: str, row: int) -> str:
    """The id of row ``row`` of the file tagged ``tag`` when the input names no id column."""
    return f"{tag}:{row}"


@dataclass(frozen=True)
class InputSpec:
    """What to read and how (picklable: it travels to worker processes and Ray actors)."""

    path: str
    fmt: InputFormat
    text_column: str = "text"
    id_column: str | None = None
    tag: str = ""

    @classmethod
    def open(cls, path: str | Path, fmt: str | None = None, text_column: str = "text", id_column: str | None = None) -> InputSpec:
        """Check the input exists and fingerprint it."""
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"no input file at {p}" + (" (a directory: pass one file)" if p.is_dir() else ""), field="--in")
        spec = cls(str(p), input_format(p, fmt), text_column, id_column, fingerprint(p))
        if spec.fmt in ("csv", "tsv"):
            spec.csv_header()  # a missing column is an error before any work starts
        if spec.fmt == "parquet":
            spec.parquet_columns()
        return spec

    # -- CSV and Parquet columns -------------------------------------------------------------
    def csv_header(self) -> tuple[list[str], int, int | None, int]:
        """(header fields, text column index, id column index, bytes up to the first data record)."""
        with _open_binary(self.path) as f:
            lines = _LineCounter(f)
            reader = csv.reader(lines.text(), delimiter=self._delimiter())
            header = next(reader, None)
            end = lines.consumed
        if not header:
            raise DataError("the CSV file is empty: it needs a header row naming the text column", path=self.path)
        header[0] = header[0].removeprefix("\ufeff")
        return header, self._column(header, self.text_column, "--text-column"), (
            self._column(header, self.id_column, "--id-column") if self.id_column else None), end

    def _column(self, header: list[str], name: str, option: str) -> int:
        if name not in header:
            raise ConfigError(f"the input has no column {name!r}; columns: {', '.join(header[:30])}", field=option)
        return header.index(name)

    def _delimiter(self) -> str:
        return "\t" if self.fmt == "tsv" else ","

    def parquet_columns(self) -> list[str]:
        """The Parquet columns to read (text, and id when named); an error when one is missing."""
        names = _parquet_schema_names(self.path)
        for name, option in ((self.text_column, "--text-column"), (self.id_column, "--id-column")):
            if name is not None and name not in names:
                raise ConfigError(f"the input has no column {name!r}; columns: {', '.join(names[:30])}", field=option)
        return [self.text_column] + ([self.id_column] if self.id_column else [])


@dataclass
class Payload:
    """Raw records of one chunk: ``start`` is the first row's number; ``records`` depend on the format
    (JSONL/text: the line's bytes; CSV: (text, id, problem); Parquet: (text, id))."""

    start: int
    records: list[Any]


def iter_payloads(spec: InputSpec, chunk_rows: int, start_row: int = 0) -> Iterator[Payload]:
    """The input as chunks of raw records, in order, beginning at row ``start_row``.

    Chunks are aligned to multiples of ``chunk_rows`` (a resumed run's first chunk is shorter), so a row
    is always scored in the same company: INT8 encoder scores depend slightly on the batch they are in.
    """
    if spec.fmt == "parquet":
        for payload in _parquet_payloads(spec, chunk_rows, start_row):
            yield from aligned(payload, chunk_rows)
        return
    records = _csv_records(spec) if spec.fmt in ("csv", "tsv") else _line_records(spec.path)
    row, chunk = 0, []
    for record in records:
        if row >= start_row:
            chunk.append(record)
            if (row + 1) % chunk_rows == 0:
                yield Payload(row + 1 - len(chunk), chunk)
                chunk = []
        row += 1
    if chunk:
        yield Payload(row - len(chunk), chunk)
    if row < start_row:
        raise DataError(f"the input has {row} rows but the output already has {start_row}: is --out from another input?",
                        path=spec.path)


def aligned(payload: Payload, chunk_rows: int) -> list[Payload]:
    """A payload cut at multiples of ``chunk_rows`` (the chunks every engine routes)."""
    out, start, records = [], payload.start, payload.records
    while records:
        take = chunk_rows - start % chunk_rows
        out.append(Payload(start, records[:take]))
        start, records = start + take, records[take:]
    return out


def decode(spec: InputSpec, payload: Payload) -> tuple[list[str | None], list[str], list[str | None]]:
    """(texts, ids, problems) of a payload's rows; a row with a problem has text None and says why."""
    n = len(payload.records)
    texts: list[str | None] = [None] * n
    problems: list[str | None] = [None] * n
    ids = [row_id(spec.tag, payload.start + i) for i in range(n)]
    if spec.fmt == "jsonl":
        col, idc = spec.text_column, spec.id_column
        for i, line in enumerate(payload.records):
            try:
                obj = jsonfast.loads(line)
            except jsonfast.JSONDecodeError as exc:
                problems[i] = f"not valid JSON ({exc})"
                continue
            if isinstance(obj, dict):
                value = obj.get(col)
                if idc is not None and obj.get(idc) is not None:
                    ids[i] = str(obj[idc])
            else:
                value = obj
            if isinstance(value, str):
                texts[i] = value
            else:
                problems[i] = (f"no {col!r} field with a string" if isinstance(obj, dict)
                               else f"a JSON {type(obj).__name__}: each line must be an object with a {col!r} field, or a string")
    elif spec.fmt == "txt":
        for i, line in enumerate(payload.records):
            try:
                texts[i] = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                problems[i] = f"not valid UTF-8 (byte 0x{line[exc.start]:02x} at column {exc.start + 1}): send UTF-8 text"
    else:  # csv / tsv already split into (text, id, problem); parquet (text, id)
        for i, rec in enumerate(payload.records):
            text, rid = rec[0], rec[1]
            if rid is not None:
                ids[i] = str(rid)
            if len(rec) > 2 and rec[2] is not None:
                problems[i] = rec[2]
            elif isinstance(text, str):
                texts[i] = text
            else:
                problems[i] = f"no text in column {spec.text_column!r}" if text is None else f"column {spec.text_column!r} is not text"
    return texts, ids, problems


def estimate_rows(spec: InputSpec) -> int | None:
    """About how many rows the input has (newlines; Parquet metadata), for the progress bar's ETA."""
    if spec.fmt == "parquet":
        return _parquet_rows(spec.path)
    count, last = 0, b"\n"
    with _open_binary(spec.path) as f:
        while block := f.read(_BLOCK):
            count += block.count(b"\n")
            last = block[-1:]
    count += last != b"\n"
    return max(0, count - (spec.fmt in ("csv", "tsv")))


# -- byte-range spans (the Ray engine) -------------------------------------------------------
@dataclass(frozen=True)
class Span:
    """A slice of the input one worker reads: ``rows`` rows from row ``start``, at bytes [offset, offset + length)
    (Parquet: row group ``offset``, of which the first ``length`` rows are skipped)."""

    seq: int
    start: int
    rows: int
    offset: int
    length: int


def scan_spans(spec: InputSpec, chunk_rows: int, start_row: int = 0) -> list[Span]:
    """Cut the input into spans of about ``chunk_rows`` rows (one sequential pass over the bytes; Parquet: metadata)."""
    if spec.fmt == "parquet":
        return _parquet_spans(spec, start_row)
    spans: list[Span] = []
    row, count, span_start, span_row = 0, 0, None, 0
    with _open_binary(spec.path) as f:
        lines = _LineCounter(f)
        if spec.fmt in ("csv", "tsv"):
            header_end = spec.csv_header()[3]
            f.seek(header_end)
            lines.consumed = header_end
            boundaries: Iterable[int] = _csv_boundaries(lines, spec._delimiter())
        else:
            boundaries = _line_boundaries(lines)
        pos = lines.consumed
        for end in boundaries:  # each: the byte after one row
            if row >= start_row:
                if span_start is None:
                    span_start, span_row, count = pos, row, 0
                count += 1
                if (row + 1) % chunk_rows == 0:
                    spans.append(Span(len(spans), span_row, count, span_start, end - span_start))
                    span_start = None
            row += 1
            pos = end
        if span_start is not None and count:
            spans.append(Span(len(spans), span_row, count, span_start, pos - span_start))
    if row < start_row:
        raise DataError(f"the input has {row} rows but the output already has {start_row}: is --out from another input?",
                        path=spec.path)
    return spans


def read_span(spec: InputSpec, span: Span, chunk_rows: int) -> list[Payload]:
    """The payloads of one span (as :func:`iter_payloads` gives them), read by whoever holds the span."""
    if spec.fmt == "parquet":
        import pyarrow.parquet as pq

        cols = spec.parquet_columns()
        table = pq.ParquetFile(spec.path).read_row_group(span.offset, columns=cols).slice(span.length)
        return aligned(Payload(span.start, _parquet_records(table, cols, spec)), chunk_rows)
    with _open_binary(spec.path) as f:
        f.seek(span.offset)
        data = f.read(span.length)
    import io

    if spec.fmt in ("csv", "tsv"):
        records = list(_csv_records_from(_LineCounter(io.BytesIO(data)), spec, *spec.csv_header()[1:3]))
    else:
        records = list(_line_records_from(io.BytesIO(data)))
    if len(records) != span.rows:
        raise DataError(f"expected {span.rows} rows at byte {span.offset}, read {len(records)}: did the input change during the run?",
                        path=spec.path)
    return [Payload(span.start, records)]


# -- formats ---------------------------------------------------------------------------------
def _open_binary(path: str | Path) -> BinaryIO:
    return open(path, "rb", buffering=1 << 20)  # noqa: SIM115 - callers close it


def _line_records(path: str) -> Iterator[bytes]:
    with _open_binary(path) as f:
        yield from _line_records_from(f)


def _line_records_from(f: BinaryIO) -> Iterator[bytes]:
    """Non-blank lines without their line ending (``\\n`` or ``\\r\\n``)."""
    for line in f:
        if line.strip():
            yield line.rstrip(b"\r\n") if line.endswith(b"\n") else line


def _line_boundaries(lines: _LineCounter) -> Iterator[int]:
    """For each non-blank line: the byte offset just after it."""
    for line in lines:
        if line.strip():
            yield lines.consumed


class _LineCounter:
    """Iterates a binary file's lines, counting the bytes handed out (for byte offsets of records)."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.consumed = f, 0

    def __iter__(self) -> _LineCounter:
        return self

    def __next__(self) -> bytes:
        line = self.f.readline()
        if not line:
            raise StopIteration
        self.consumed += len(line)
        return line

    def text(self) -> Iterator[str]:
        """The lines decoded as UTF-8 (a BOM at the start dropped; bad bytes kept as surrogates, reported per row)."""
        decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        for line in self:
            yield decoder.decode(line)


def _csv_records(spec: InputSpec) -> Iterator[tuple[str | None, str | None, str | None]]:
    _, text_i, id_i, header_end = spec.csv_header()
    with _open_binary(spec.path) as f:
        f.seek(header_end)
        yield from _csv_records_from(_LineCounter(f), spec, text_i, id_i)


def _csv_records_from(lines: _LineCounter, spec: InputSpec, text_i: int, id_i: int | None) -> Iterator[tuple[str | None, str | None, str | None]]:
    need = max(text_i, id_i if id_i is not None else -1) + 1
    try:
        for fields in csv.reader(lines.text(), delimiter=spec._delimiter()):
            if not fields or fields == [""]:
                continue  # blank line
            rid = fields[id_i] if id_i is not None and id_i < len(fields) else None
            if len(fields) < need:
                yield None, rid, f"the row has {len(fields)} fields; the text column is field {text_i + 1}"
                continue
            yield fields[text_i], rid, None
    except csv.Error as exc:
        raise DataError(f"cannot parse the CSV input after byte {lines.consumed} ({exc}): fix the file or pass --in-format",
                        path=spec.path) from exc


def _csv_boundaries(lines: _LineCounter, delimiter: str) -> Iterator[int]:
    for fields in csv.reader(lines.text(), delimiter=delimiter):
        if fields and fields != [""]:
            yield lines.consumed


def _parquet_file(path: str) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ConfigError("Parquet needs pyarrow: pip install 'frontdesk[batch]'", field="--in") from exc
    return pq.ParquetFile(path)


def _parquet_schema_names(path: str) -> list[str]:
    return list(_parquet_file(path).schema_arrow.names)


def _parquet_rows(path: str) -> int:
    return int(_parquet_file(path).metadata.num_rows)


def _parquet_records(table: Any, cols: list[str], spec: InputSpec) -> list[tuple[Any, Any]]:
    texts = table.column(cols[0]).to_pylist()
    ids = table.column(cols[1]).to_pylist() if spec.id_column else [None] * len(texts)
    return list(zip(texts, ids))


def _parquet_payloads(spec: InputSpec, chunk_rows: int, start_row: int) -> Iterator[Payload]:
    pf, cols = _parquet_file(spec.path), spec.parquet_columns()
    total = pf.metadata.num_rows
    if total < start_row:
        raise DataError(f"the input has {total} rows but the output already has {start_row}: is --out from another input?",
                        path=spec.path)
    row = 0
    groups = []
    for g in range(pf.num_row_groups):  # skip whole row groups before start_row
        n = pf.metadata.row_group(g).num_rows
        if row + n > start_row:
            groups.append(g)
        else:
            row += n
    if not groups:
        return
    pending: list[tuple[Any, Any]] = []
    first = row
    for batch in pf.iter_batches(batch_size=chunk_rows, columns=cols, row_groups=groups):
        records = _parquet_records(batch, cols, spec)
        if row < start_row:
            skip = min(len(records), start_row - row)
            records, row = records[skip:], row + skip
            first = row
        pending.extend(records)
        row += len(records)
        while len(pending) >= chunk_rows:
            yield Payload(first, pending[:chunk_rows])
            pending, first = pending[chunk_rows:], first + chunk_rows
    if pending:
        yield Payload(first, pending)


def _parquet_spans(spec: InputSpec, start_row: int) -> list[Span]:
    """One span per row group (``offset``: the group; ``length``: rows of it to skip when resuming inside it)."""
    pf = _parquet_file(spec.path)
    spans, row = [], 0
    for g in range(pf.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if row + n > start_row and n:
            skip = max(0, start_row - row)
            spans.append(Span(len(spans), row + skip, n - skip, g, skip))
        row += n
    if row < start_row:
        raise DataError(f"the input has {row} rows but the output already has {start_row}: is --out from another input?",
                        path=spec.path)
    return spans
