"""The batch job: input file → batch cascade → output file, on this machine's cores or on a Ray cluster.

The local engine reads the input as a stream of chunks; with ``workers > 1`` each worker process loads
the model once and routes whole chunks (decode → :class:`BatchCascade` → encode), and the main process
writes the encoded chunks back in input order. At most a few chunks per worker are in flight, so memory
stays flat for any file size. ``engine="ray"`` runs the same chunks as a Ray Data job (see ``ray_engine``).
"""

from __future__ import annotations

import os
import resource
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from frontdesk.batch.cascade import ERROR_TIER, BatchCascade
from frontdesk.batch.inputs import InputSpec, Payload, decode, estimate_rows, iter_payloads
from frontdesk.batch.outputs import PART_ROWS, OutputFormat, Writer, encode, output_format
from frontdesk.errors import DataError, FrontdeskError

BatchProgress = Callable[[int, "int | None"], None]
"""``progress(rows_done, rows_total_or_None)``, called after each chunk is written (rows include resumed ones)."""


class BatchOptions(BaseModel):
    """One batch job: what to read, which model, where to write, and how."""

    model_config = ConfigDict(extra="forbid")

    model: Path = Field(description="model directory (frontdesk train / export)")
    input: Path = Field(description="input file: .jsonl, .txt, .csv, .tsv or .parquet")
    output: Path = Field(description="output: .jsonl, .csv, .tsv file, or a .parquet directory of part files")
    in_format: str | None = Field(None, description="input format when the name does not say (jsonl, txt, csv, tsv, parquet)")
    out_format: str | None = Field(None, description="output format when the name does not say (jsonl, csv, tsv, parquet)")
    text_column: str = Field("text", description="JSONL field / CSV or Parquet column with the message text")
    id_column: str | None = Field(None, description="column with each row's id (default: <file tag>:<row number>)")
    chunk_rows: int = Field(4096, ge=1, description="rows routed together (one vectorised cascade pass)")
    workers: int | None = Field(None, ge=1, description="processes (local; default: the usable cores) or actors (ray; default: the cluster's CPUs)")
    trace: bool = Field(False, description="add each row's full trace (every tier's verdict, top scores and reason)")
    resume: bool = Field(False, description="continue an output that a previous run left unfinished")
    overwrite: bool = Field(False, description="replace an existing output")
    llm: dict[str, Any] | None = Field(None, description="LLM tier settings (--llm); None: no LLM, escalations go to human review")
    engine: Literal["local", "ray"] = "local"
    address: str | None = Field(None, description="Ray cluster address (ray://host:10001, auto); None: a local Ray runtime")
    part_rows: int = Field(PART_ROWS, ge=1, description="Parquet output: rows per part file")


class BatchSummary(BaseModel):
    """What a batch job did."""

    output: str
    engine: str
    workers: int
    rows: int = Field(description="rows routed by this run")
    resumed_from: int = Field(description="rows the output already had (--resume)")
    errors: int = Field(description="rows whose input could not be routed (tier 'error')")
    tiers: dict[str, int] = Field(description="rows per final tier")
    cost_usd: float
    seconds: float
    rate: float = Field(description="rows routed per second by this run, file to file")
    startup_seconds: float = Field(0.0, description="seconds until the first chunk was written (workers started, model loaded)")
    peak_rss_mb: float = Field(description="peak resident memory of the main process")
    peak_worker_rss_mb: float = Field(0.0, description="peak resident memory of the largest worker process (local engine)")


@dataclass
class ChunkResult:
    """One routed chunk, encoded for the writer."""

    start: int
    rows: int
    payload: bytes
    tiers: dict[str, int] = field(default_factory=dict)
    cost_usd: float = 0.0


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class ChunkRouter:
    """Routes payloads to encoded output chunks: what each worker (process or Ray actor) holds."""

    def __init__(self, model: str | Path, spec: InputSpec, out_fmt: OutputFormat, *, trace: bool,
                 llm: Mapping[str, Any] | None, threads: int | None) -> None:
        self.spec, self.out_fmt = spec, out_fmt
        self.cascade = BatchCascade.load(model, llm=llm, trace=trace, threads=threads)

    def __call__(self, payload: Payload) -> ChunkResult:
        texts, ids, problems = decode(self.spec, payload)
        rows = self.cascade.route(texts, ids, problems)
        return ChunkResult(payload.start, len(rows), encode(rows, self.out_fmt), rows.counts(), rows.cost_usd)


_WORKER: ChunkRouter | None = None
_WORKER_ERROR: str | None = None


def _init_worker(model: str, spec: InputSpec, out_fmt: OutputFormat, trace: bool, llm: Mapping[str, Any] | None) -> None:
    global _WORKER, _WORKER_ERROR
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        _WORKER = ChunkRouter(model, spec, out_fmt, trace=trace, llm=llm, threads=1)
    except FrontdeskError as exc:  # reported with the first chunk: the pool cannot carry it otherwise
        _WORKER_ERROR = str(exc)


def _work(payload: Payload) -> ChunkResult:
    if _WORKER is None:
        raise FrontdeskError(_WORKER_ERROR or "the batch worker did not start")
    return _WORKER(payload)


def _expected_id(spec: InputSpec, row: int) -> str:
    payload = next(iter_payloads(spec, 1, row))
    return decode(spec, payload)[1][0]


def run_batch(options: BatchOptions, progress: BatchProgress | None = None) -> BatchSummary:
    """Route every row of ``options.input`` into ``options.output``; see :class:`BatchOptions`."""
    t0 = time.perf_counter()
    spec = InputSpec.open(options.input, options.in_format, options.text_column, options.id_column)
    out_fmt = output_format(options.output, options.out_format)
    if not (Path(options.model) / "frontdesk.json").is_file():
        from frontdesk.errors import ModelError

        raise ModelError("no frontdesk.json here: not a frontdesk model directory (train one with `frontdesk train`)",
                         path=options.model)
    writer = Writer(options.output, out_fmt, trace=options.trace, resume=options.resume, overwrite=options.overwrite,
                    part_rows=options.part_rows)
    start = writer.rows_before
    try:
        if start and writer.last_id is not None:
            expected = _expected_id(spec, start - 1)
            if expected != writer.last_id:
                raise DataError(f"the output's last row has id {writer.last_id!r} but input row {start - 1} has id {expected!r}: "
                                "the output was written for another input (or --id-column); pass --overwrite to start again",
                                path=options.output)
        total = estimate_rows(spec)
        workers = options.workers or default_workers()
        if options.engine == "ray":
            from frontdesk.batch.ray_engine import connect, run_ray

            started, cluster_cpus = connect(options.address)
            workers = options.workers or cluster_cpus  # default: one actor per CPU of the cluster
            results = run_ray(options, spec, out_fmt, start, workers, shutdown=started)
        else:
            results = _run_local(options, spec, out_fmt, start, workers)
        done, errors, cost = start, 0, 0.0
        tiers: dict[str, int] = {}
        first: float | None = None
        for res in results:
            if res.start != done:
                raise DataError(f"internal ordering error: chunk at row {res.start}, expected row {done}", path=options.output)
            writer.write(res.payload)
            first = time.perf_counter() - t0 if first is None else first
            done += res.rows
            cost += res.cost_usd
            for k, v in res.tiers.items():
                tiers[k] = tiers.get(k, 0) + v
            errors += res.tiers.get(ERROR_TIER, 0)
            writer.flush()
            if progress is not None:
                progress(done, max(total, done) if total is not None else None)
    finally:
        writer.close()
    seconds = time.perf_counter() - t0
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return BatchSummary(output=str(options.output), engine=options.engine, workers=workers, rows=done - start, resumed_from=start,
                        errors=errors, tiers=tiers, cost_usd=round(cost, 6), seconds=round(seconds, 3),
                        rate=round((done - start) / seconds, 1) if seconds > 0 else 0.0, startup_seconds=round(first or 0.0, 3),
                        peak_rss_mb=round(me, 1),
                        peak_worker_rss_mb=round(kids, 1) if workers > 1 and options.engine == "local" else 0.0)


def _run_local(options: BatchOptions, spec: InputSpec, out_fmt: OutputFormat, start: int, workers: int):  # noqa: ANN202 - generator
    payloads = iter_payloads(spec, options.chunk_rows, start)
    if workers == 1:
        router = ChunkRouter(options.model, spec, out_fmt, trace=options.trace, llm=options.llm, threads=None)
        for payload in payloads:
            yield router(payload)
        return
    ctx = get_context("spawn")  # no fork: the parent may hold threads (progress bar, ONNX Runtime)
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(str(options.model), spec, out_fmt, options.trace, options.llm)) as pool:
        inflight: deque[Future[ChunkResult]] = deque()
        try:
            for payload in payloads:
                inflight.append(pool.submit(_work, payload))
                if len(inflight) >= 2 * workers + 1:
                    yield inflight.popleft().result()
            while inflight:
                yield inflight.popleft().result()
        finally:
            for fut in inflight:
                fut.cancel()
