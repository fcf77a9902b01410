"""The Ray engine: the same batch job as a Ray Data pipeline, for traffic that outgrows one machine.

The driver cuts the input into spans of ``chunk_rows`` rows (one pass over the bytes; Parquet: its row
groups) and ships the model to the cluster once through the object store. Ray Data maps the spans
over a pool of actors (``map_batches`` with an actor class, an ``ActorPoolStrategy`` of ``workers``): each actor
loads the model once, reads its spans from the input itself (a path every node can read: the local
disk for a local runtime, a shared filesystem on a cluster), routes them with the batch cascade and
returns the encoded output chunks. The driver writes them in input order (``preserve_order``), so
the output is the file the local engine writes, row for row.
"""

from __future__ import annotations

import io
import logging
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from frontdesk.batch import jsonfast
from frontdesk.batch.engine import BatchOptions, ChunkResult, ChunkRouter
from frontdesk.batch.inputs import InputSpec, Span, read_span, scan_spans
from frontdesk.batch.outputs import OutputFormat
from frontdesk.errors import ConfigError


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ConfigError("--engine ray needs Ray Data: pip install 'frontdesk[ray]'", field="--engine") from exc
    return ray


def pack_model(model: str | Path) -> bytes:
    """The model directory as one tar archive (shipped to the actors through the object store)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", dereference=True) as tar:  # a symlinked model ships its files
        tar.add(str(Path(model).resolve()), arcname="model")
    return buf.getvalue()


class RayChunkRouter:
    """The actor: unpacks the model once, then turns each span into encoded output chunks."""

    def __init__(self, model: list[Any], spec: InputSpec, out_fmt: OutputFormat, trace: bool, llm: dict | None, chunk_rows: int) -> None:
        import ray

        blob = model[0] if isinstance(model[0], bytes) else ray.get(model[0])
        self._dir = tempfile.TemporaryDirectory(prefix="frontdesk-model-")
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            tar.extractall(self._dir.name, filter="data")
        self.router = ChunkRouter(Path(self._dir.name) / "model", spec, out_fmt, trace=trace, llm=llm, threads=1)
        self.spec, self.chunk_rows = spec, chunk_rows

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results: list[ChunkResult] = []
        for k in range(len(batch["seq"])):
            span = Span(*(int(batch[name][k]) for name in ("seq", "start", "rows", "offset", "length")))
            results.extend(self.router(p) for p in read_span(self.spec, span, self.chunk_rows))
        return {
            "start": np.array([r.start for r in results], dtype=np.int64),
            "rows": np.array([r.rows for r in results], dtype=np.int64),
            "payload": np.array([r.payload for r in results], dtype=object),
            "tiers": np.array([jsonfast.dumps(r.tiers).decode() for r in results], dtype=object),
            "cost": np.array([r.cost_usd for r in results], dtype=np.float64),
        }


def connect(address: str | None) -> tuple[bool, int]:
    """Join the Ray cluster at ``address`` (None: start a local runtime) unless already connected:
    (whether this call started the connection, the cluster's CPUs)."""
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
        started = True
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # no per-dataset INFO lines between the progress updates
    return started, max(1, int(ray.cluster_resources().get("CPU", 1)))


def run_ray(options: BatchOptions, spec: InputSpec, out_fmt: OutputFormat, start: int, workers: int, *,
            shutdown: bool) -> Iterator[ChunkResult]:
    """Route the spans from row ``start`` on Ray with ``workers`` actors; yields the encoded chunks in input order.
    ``shutdown``: disconnect at the end (the connection was made for this job)."""
    ray = _import_ray()
    try:
        spans = scan_spans(spec, options.chunk_rows, start)
        if not spans:
            return
        model_ref = ray.put(pack_model(options.model))
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # the output is written in input order
        ctx.enable_progress_bars = False  # frontdesk draws its own
        items = [{"seq": s.seq, "start": s.start, "rows": s.rows, "offset": s.offset, "length": s.length} for s in spans]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        pool = ray.data.ActorPoolStrategy(size=workers)  # the model is loaded once per actor
        ds = ds.map_batches(RayChunkRouter, batch_size=1, batch_format="numpy", compute=pool, num_cpus=1,
                            fn_constructor_kwargs={"model": [model_ref], "spec": spec, "out_fmt": out_fmt, "trace": options.trace,
                                                   "llm": options.llm, "chunk_rows": options.chunk_rows})
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for k in range(len(batch["start"])):
                yield ChunkResult(int(batch["start"][k]), int(batch["rows"][k]), bytes(batch["payload"][k]),
                                  jsonfast.loads(batch["tiers"][k]), float(batch["cost"][k]))
    finally:
        if shutdown:
            ray.shutdown()
