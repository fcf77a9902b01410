"""Batch outputs: one row per input row, in input order, as JSONL, CSV/TSV or Parquet — resumable.

Columns: ``id``, ``labels``, ``confidence``, ``tier``, ``escalated``, ``flagged``, ``reason`` and, with
``--trace``, ``trace`` (each tier's verdict, scores and reason). CSV writes ``labels`` joined by ``|``
and ``trace`` as JSON; a row is always one physical line (line breaks inside values become spaces).

Resuming counts the complete rows already written: JSONL and CSV are cut after the last full line (a
line cut short by a crash is dropped and written again); Parquet output is a directory of part files,
each renamed into place when complete, so an unfinished part is dropped. Workers encode their rows
(:func:`encode`); the writer only appends bytes (or Arrow tables) in chunk order.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from pathlib import Path
from typing import Any, Literal

from frontdesk.batch import jsonfast
from frontdesk.batch.cascade import Rows
from frontdesk.errors import ConfigError, DataError

OutputFormat = Literal["jsonl", "csv", "tsv", "parquet"]
COLUMNS = ("id", "labels", "confidence", "tier", "escalated", "flagged", "reason")
_BY_SUFFIX: dict[str, OutputFormat] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv",
                                       ".parquet": "parquet", ".pq": "parquet"}
PART_ROWS = 250_000
ROW_GROUP_ROWS = 65_536


def output_format(path: str | Path, given: str | None = None) -> OutputFormat:
    """The output's format: ``given``, else from the name (``.jsonl``, ``.csv``, ``.tsv``, ``.parquet``)."""
    if given:
        if given not in ("jsonl", "csv", "tsv", "parquet"):
            raise ConfigError(f"unknown output format {given!r}: use jsonl, csv, tsv or parquet", field="--out-format")
        return given  # type: ignore[return-value]
    fmt = _BY_SUFFIX.get(Path(path).suffix.lower())
    if fmt is None:
        raise ConfigError(f"cannot tell the output format from {Path(path).name!r}: name it .jsonl, .csv, .tsv or .parquet, "
                          "or pass --out-format", field="--out")
    return fmt


def columns(trace: bool) -> tuple[str, ...]:
    """The output's columns, in order."""
    return COLUMNS + (("trace",) if trace else ())


def encode(rows: Rows, fmt: OutputFormat) -> bytes:
    """A chunk of rows as the bytes the writer appends (Parquet: an Arrow IPC stream)."""
    trace = rows.trace
    if fmt == "jsonl":
        dumps = jsonfast.dumps
        if trace is None:
            parts = [dumps({"id": i, "labels": lab, "confidence": c, "tier": t, "escalated": e, "flagged": f, "reason": r})
                     for i, lab, c, t, e, f, r in zip(rows.ids, rows.labels, rows.confidence, rows.tier, rows.escalated,
                                                      rows.flagged, rows.reason)]
        else:
            parts = [dumps({"id": i, "labels": lab, "confidence": c, "tier": t, "escalated": e, "flagged": f, "reason": r, "trace": tr})
                     for i, lab, c, t, e, f, r, tr in zip(rows.ids, rows.labels, rows.confidence, rows.tier, rows.escalated,
                                                          rows.flagged, rows.reason, trace)]
        parts.append(b"")
        return b"\n".join(parts)
    if fmt in ("csv", "tsv"):
        buf = io.StringIO()
        writer = csv.writer(buf, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
        for k in range(len(rows)):
            row = [_line(rows.ids[k]), _line("|".join(rows.labels[k])), repr(rows.confidence[k]), rows.tier[k],
                   "true" if rows.escalated[k] else "false", "true" if rows.flagged[k] else "false", _line(rows.reason[k])]
            if trace is not None:
                row.append(jsonfast.dumps(trace[k]).decode("utf-8"))
            writer.writerow(row)
        return buf.getvalue().encode("utf-8", "surrogateescape")
    return _arrow_ipc(rows)


def _line(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ") if "\n" in value or "\r" in value else value


def _arrow_schema(trace: bool) -> Any:
    import pyarrow as pa

    fields = [("id", pa.string()), ("labels", pa.list_(pa.string())), ("confidence", pa.float64()), ("tier", pa.string()),
              ("escalated", pa.bool_()), ("flagged", pa.bool_()), ("reason", pa.string())]
    if trace:
        fields.append(("trace", pa.string()))
    return pa.schema(fields)


def _arrow_ipc(rows: Rows) -> bytes:
    import pyarrow as pa

    data: dict[str, Any] = {"id": rows.ids, "labels": rows.labels, "confidence": rows.confidence, "tier": rows.tier,
                            "escalated": rows.escalated, "flagged": rows.flagged, "reason": rows.reason}
    if rows.trace is not None:
        data["trace"] = [jsonfast.dumps(t).decode("utf-8") for t in rows.trace]
    table = pa.table(data, schema=_arrow_schema(rows.trace is not None))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


class Writer:
    """Appends encoded chunks to the output in order; on open, finds how many rows a cut-short run left."""

    def __init__(self, path: str | Path, fmt: OutputFormat, *, trace: bool, resume: bool, overwrite: bool,
                 part_rows: int = PART_ROWS) -> None:
        self.path, self.fmt, self.trace, self.part_rows = Path(path), fmt, trace, part_rows
        self.rows_before = 0
        self.last_id: str | None = None
        exists = self.path.exists()
        if exists and not resume and not overwrite:
            raise ConfigError(f"{self.path} already exists: pass --resume to continue it, or --overwrite to start again", field="--out")
        if exists and overwrite and not resume:
            shutil.rmtree(self.path) if self.path.is_dir() else self.path.unlink()
            exists = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "parquet":
            self._open_parquet(exists)
        else:
            self._open_text(exists)

    # -- JSONL / CSV ---------------------------------------------------------------------------
    def _open_text(self, exists: bool) -> None:
        header = None
        if self.fmt in ("csv", "tsv"):
            header = ("\t" if self.fmt == "tsv" else ",").join(columns(self.trace)).encode() + b"\n"
        if exists:
            if self.path.is_dir():
                raise ConfigError(f"{self.path} is a directory: pass a file for {self.fmt} output", field="--out")
            self._cut_to_last_line()
            with open(self.path, "rb") as f:
                head = f.readline() if header is not None else b""
                if header is not None and head and head != header:
                    raise DataError(f"the existing output has columns {head.decode(errors='replace').strip()!r}, this run writes "
                                    f"{header.decode().strip()!r}: resume with the same --trace setting, or pass --overwrite",
                                    path=self.path)
                lines, last = 0, b""
                for line in f:
                    lines, last = lines + 1, line
            self.rows_before = lines
            if lines:
                self.last_id = self._id_of(last)
        self._file = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        if header is not None and self._file.tell() == 0:
            self._file.write(header)

    def _cut_to_last_line(self) -> None:
        """Drop a last line that a crash left without its newline."""
        with open(self.path, "r+b") as f:
            size = f.seek(0, os.SEEK_END)
            pos = size
            while pos > 0:
                step = min(1 << 16, pos)
                f.seek(pos - step)
                block = f.read(step)
                nl = block.rfind(b"\n")
                if nl >= 0:
                    pos = pos - step + nl + 1
                    break
                pos -= step
            if pos != size:
                f.truncate(pos)

    def _id_of(self, line: bytes) -> str:
        try:
            if self.fmt == "jsonl":
                return str(jsonfast.loads(line)["id"])
            return next(csv.reader([line.decode("utf-8", "surrogateescape")], delimiter="\t" if self.fmt == "tsv" else ","))[0]
        except (ValueError, KeyError, IndexError, StopIteration) as exc:
            raise DataError(f"the last row of the existing output is not a batch row ({exc}): pass --overwrite to start again",
                            path=self.path) from exc

    # -- Parquet ---------------------------------------------------------------------------------
    def _open_parquet(self, exists: bool) -> None:
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ConfigError("Parquet output needs pyarrow: pip install 'frontdesk[batch]'", field="--out") from exc
        self._schema = _arrow_schema(self.trace)
        self._parts = 0
        if exists:
            if not self.path.is_dir():
                raise ConfigError(f"{self.path} is a file: Parquet output is a directory of part files", field="--out")
            for tmp in self.path.glob("*.tmp"):
                tmp.unlink()
            parts = sorted(self.path.glob("part-*.parquet"))
            for part in parts:
                meta = pq.ParquetFile(part)
                if not meta.schema_arrow.equals(self._schema):
                    raise DataError(f"{part.name} has other columns than this run writes: resume with the same --trace setting, "
                                    "or pass --overwrite", path=self.path)
                self.rows_before += meta.metadata.num_rows
            if parts:
                self._parts = int(parts[-1].stem.split("-")[1]) + 1
                last = pq.ParquetFile(parts[-1])
                ids = last.read_row_group(last.num_row_groups - 1, columns=["id"]).column("id")
                self.last_id = ids[len(ids) - 1].as_py()
        else:
            self.path.mkdir(parents=True)
        self._writer: Any = None
        self._part_rows_written = 0
        self._pending: list[Any] = []
        self._pending_rows = 0

    def _parquet_add(self, payload: bytes) -> None:
        import pyarrow as pa

        table = pa.ipc.open_stream(payload).read_all()
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= ROW_GROUP_ROWS or self._part_rows_written + self._pending_rows >= self.part_rows:
            self._parquet_flush()

    def _parquet_flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._pending:
            return
        table = pa.concat_tables(self._pending)
        self._pending, self._pending_rows = [], 0
        while table.num_rows:
            if self._writer is None:
                self._tmp = self.path / f"part-{self._parts:05d}.parquet.tmp"
                self._writer = pq.ParquetWriter(self._tmp, self._schema)
            take = min(table.num_rows, self.part_rows - self._part_rows_written)
            self._writer.write_table(table.slice(0, take), row_group_size=ROW_GROUP_ROWS)
            self._part_rows_written += take
            table = table.slice(take)
            if self._part_rows_written >= self.part_rows:
                self._close_part()

    def _close_part(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        os.replace(self._tmp, self.path / f"part-{self._parts:05d}.parquet")
        self._writer, self._parts, self._part_rows_written = None, self._parts + 1, 0

    # -- both --------------------------------------------------------------------------------------
    def write(self, payload: bytes) -> None:
        """Append one encoded chunk (from :func:`encode`)."""
        if self.fmt == "parquet":
            self._parquet_add(payload)
        else:
            self._file.write(payload)

    def flush(self) -> None:
        """Make everything written so far durable enough to resume from (a complete part for Parquet)."""
        if self.fmt != "parquet":
            self._file.flush()

    def close(self) -> None:
        """Finish the output (the last Parquet part is renamed into place)."""
        if self.fmt == "parquet":
            self._parquet_flush()
            self._close_part()
        else:
            self._file.close()
