"""The `local` engine: stream the dataset chunk by chunk through the scoring core on one machine.

The main thread reads chunks (Arrow data, cheap to pass on) and writes results in input order while
`workers` score them. Which kind of worker depends on where the time goes:

- threads, for Parquet scored as it is (no feature hook, no FEATURES_FIELD, columns of the signature's
  types): clean columns go to the model without becoming Python rows (`columnar`), so the work is Arrow
  and the model's native code, which release the GIL. Threads share the one loaded model and start
  instantly.
- processes (spawned, model loaded once each) for everything else: decoding JSON or CSV, validating
  rows and running a Python hook hold the GIL, and threads would serialize on it.

Memory holds 2 * workers + 1 chunks (plus one Parquet row group being decoded), never the dataset:
inputs are read in batches, S3 objects go through a temporary file one at a time, and outputs are
written as produced.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from lambda_fn.config import Env
from lambda_fn.model_store import s3_client
from servingkit.batch.core import REJECTED_SCHEMA, ChunkResult, ChunkScorer, JobConfig
from servingkit.batch.errors import BatchJobError
from servingkit.batch.io import (
    PartWriter,
    RawChunk,
    ensure_empty,
    put_text,
    read_chunks,
    resolve_inputs,
    scratch_dir,
)
from servingkit.batch.io import (
    local_copy as _local_copy,
)

SAMPLE_ROWS = 256
PARALLELISM = ("auto", "threads", "processes")


@dataclass(slots=True)
class Summary:
    """What a run did; printed, and written as `<output>/_summary.json` next to the results."""

    engine: str
    inputs: int
    rows_in: int
    scored: int
    rejected: int
    seconds: float  # scoring time: reading, scoring and writing, after the model is loaded
    load_seconds: float
    cpu_seconds: float  # CPU spent scoring: this process and its worker processes (the driver only for Spark)
    peak_memory_mb: float  # local: main process + worker processes; spark: the driver's Python process only
    output: str
    rejected_output: str
    model: dict[str, str]
    prediction_type: str
    parallelism: str = ""  # local engine: "threads", "processes" or "in-process"
    reasons: dict[str, int] = field(default_factory=dict)
    parts: list[str] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows_in / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rows_per_second"] = round(self.rows_per_second, 1)
        out["seconds"] = round(self.seconds, 3)
        out["load_seconds"] = round(self.load_seconds, 3)
        out["cpu_seconds"] = round(self.cpu_seconds, 3)
        out["peak_memory_mb"] = round(self.peak_memory_mb, 1)
        return out

    def text(self) -> str:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.reasons.items())) or "none"
        return (
            f"engine={self.engine} inputs={self.inputs} rows_in={self.rows_in} scored={self.scored} "
            f"rejected={self.rejected} ({reasons})\n"
            f"{self.rows_per_second:,.0f} rows/s ({self.seconds:.2f} s scoring after a {self.load_seconds:.2f} s model "
            f"load), peak memory {self.peak_memory_mb:.0f} MB{f', {self.parallelism}' if self.parallelism else ''}\n"
            f"model {self.model['name']} v{self.model['version']} sha256 {self.model['sha256'][:12]}\n"
            f"scored rows -> {self.output}\nrejected rows -> {self.rejected_output}"
        )


def peak_rss_mb(children: int = 0) -> float:
    """Peak resident memory of this process plus `children` finished worker processes (each counted at the
    largest child's peak: an upper bound). ru_maxrss is KiB on Linux, bytes on macOS."""
    unit = 1 << 20 if sys.platform == "darwin" else 1024
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if children else 0
    return float(own + children * child) / unit


def run_local(
    inputs: Sequence[str],
    output: str,
    config: JobConfig,
    *,
    input_format: str | None = None,
    output_format: str = "parquet",
    chunk_size: int = 50_000,
    rows_per_file: int = 1_000_000,
    overwrite: bool = False,
    progress: bool = True,
    workers: int = 2,
    parallelism: str = "auto",
    s3: Any | None = None,
) -> Summary:
    """Score every input file into `<output>/scored` and `<output>/rejected`; returns the summary.

    `parallelism`: "threads", "processes", or "auto" (threads when the first chunk takes the Arrow
    path, processes otherwise); with processes, `workers=1` scores in this process.
    """
    from tqdm import tqdm

    if parallelism not in PARALLELISM:
        raise BatchJobError(f"parallelism {parallelism!r}: one of {list(PARALLELISM)}")
    started = time.perf_counter()
    if s3 is None and any(u.startswith("s3://") for u in (*inputs, output, config.model_env.get(Env.MODEL_URI, ""))):
        s3 = s3_client()  # one client (and connection pool) for listing, model, downloads and uploads
    files = resolve_inputs(inputs, input_format, s3)
    scorer = ChunkScorer.from_config(config, s3)
    ensure_empty(output, overwrite, s3)
    load_seconds = time.perf_counter() - started
    started, cpu_started = time.perf_counter(), time.process_time()
    out = output.rstrip("/")
    # Inputs share one format (resolve_inputs checks); local Parquet footers give the total for the progress bar.
    known = bool(files) and files[0].format == "parquet" and not any(f.uri.startswith("s3://") for f in files)
    total = _parquet_rows([f.uri for f in files]) if known else None
    mode = ""  # decided on the first chunk
    reasons: dict[str, int] = {}
    rows_in = 0
    worker_cpu = 0.0
    with scratch_dir() as tmp:
        work = Path(tmp)
        scored_w: PartWriter | None = None
        rejected_w = PartWriter(f"{out}/rejected", output_format, REJECTED_SCHEMA, rows_per_file, s3, work)
        bar = tqdm(total=total, unit="rows", unit_scale=True, disable=not progress, file=sys.stderr)
        pending: deque[Future[ChunkResult]] = deque()
        pool: Executor | None = None

        def drain(keep: int) -> None:
            nonlocal rows_in, worker_cpu
            while len(pending) > keep:
                try:
                    result = pending.popleft().result()
                except BrokenProcessPool:
                    raise BatchJobError(
                        "a worker process died (out of memory?); lower --chunk-size or --workers"
                    ) from None
                assert scored_w is not None
                scored_w.write(result.scored)
                rejected_w.write(result.rejected)
                for reason, count in result.reasons.items():
                    reasons[reason] = reasons.get(reason, 0) + count
                rows_in += result.rows
                worker_cpu += result.cpu_seconds
                bar.update(result.rows)

        try:
            for f in files:
                with _local_copy(f.uri, work, s3) as path:
                    for raw in _read(path, f.uri, f.format, chunk_size, scorer.keep_text):
                        if scored_w is None:
                            head = raw.head(SAMPLE_ROWS * 4).decode()
                            sample = sample_of(head.rows, head.errors)
                            scorer.check_rows(sample)
                            if config.prediction_type == "auto":
                                scorer.infer_prediction_type(sample)
                            scored_w = PartWriter(
                                f"{out}/scored", output_format, scorer.scored_schema, rows_per_file, s3, work
                            )
                            mode = _mode(parallelism, workers, scorer, raw, total, chunk_size)
                            if mode == "threads":
                                pool = ThreadPoolExecutor(workers, thread_name_prefix="score")
                            elif mode == "processes":
                                pool = _start_workers(scorer, config, workers)
                                # Worker start-up (interpreter, imports, model load) counts as loading, not scoring.
                                load_seconds += time.perf_counter() - started
                                started, cpu_started = time.perf_counter(), time.process_time()
                        if mode == "threads":
                            assert pool is not None
                            pending.append(pool.submit(_score_raw, scorer, raw, f.uri))
                        elif mode == "processes":
                            assert pool is not None
                            pending.append(pool.submit(_score_in_worker, raw, f.uri))
                        else:
                            done: Future[ChunkResult] = Future()
                            done.set_result(_score_raw(scorer, raw, f.uri))
                            pending.append(done)
                        drain(2 * workers)  # results are written in input order; memory holds 2 * workers + 1 chunks
                    drain(0)  # before the S3 copy of this file is deleted
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
            if scored_w is not None:
                scored_w.close()
            rejected_w.close()
    summary = Summary(
        engine="local",
        inputs=len(files),
        rows_in=rows_in,
        scored=scored_w.rows if scored_w else 0,
        rejected=rejected_w.rows,
        seconds=time.perf_counter() - started,
        load_seconds=load_seconds,
        cpu_seconds=time.process_time() - cpu_started + worker_cpu,
        peak_memory_mb=peak_rss_mb(workers if mode == "processes" else 0),
        output=f"{out}/scored",
        rejected_output=f"{out}/rejected",
        model=scorer.model.identity,
        prediction_type=scorer.prediction_type,
        parallelism=f"{mode} ({workers})" if mode in ("threads", "processes") else mode,
        reasons=reasons,
        parts=(scored_w.parts if scored_w else []) + rejected_w.parts,
    )
    if summary.scored + summary.rejected != rows_in:  # the invariant every run must keep: nothing lost
        raise RuntimeError(f"row accounting broken: {rows_in} in, {summary.scored} scored, {summary.rejected} rejected")
    put_text(f"{out}/_summary.json", json.dumps(summary.to_dict(), indent=2), s3)
    return summary


def _mode(
    parallelism: str, workers: int, scorer: ChunkScorer, first: RawChunk, total: int | None, chunk_size: int
) -> str:
    """threads, processes or in-process. Auto: threads when the first chunk takes the Arrow path (the work
    is then native code that releases the GIL), processes when rows must become Python objects."""
    if parallelism == "auto":
        arrow = first.fmt == "parquet" and scorer.takes_arrow_path(first.data)
        parallelism = "threads" if arrow else "processes"
    if parallelism == "processes" and total is not None and total <= chunk_size:
        workers = 1  # one chunk: starting worker processes would cost more than it saves
    return parallelism if parallelism == "threads" or workers > 1 else "in-process"


_WORKER: ChunkScorer | None = None


def _init_worker(pinned: str) -> None:
    """Worker process: native code single-threaded (the processes are the parallelism; nested thread
    pools would oversubscribe the cores), and the model loaded once, pinned to the driver's sha256."""
    import os

    # Before scikit-learn loads OpenMP (which reads it once), and again once the libraries are loaded.
    os.environ["OMP_NUM_THREADS"] = "1"
    from threadpoolctl import threadpool_limits

    global _WORKER
    _WORKER = ChunkScorer.from_pinned(pinned)
    threadpool_limits(1)


def _ready() -> int:
    import os

    assert _WORKER is not None
    return os.getpid()


def _start_workers(scorer: ChunkScorer, config: JobConfig, workers: int) -> ProcessPoolExecutor:
    """Processes, not threads: decoding and validation are Python and would serialize on the GIL."""
    pinned = scorer.pinned(config)
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(pinned,))
    seen: set[int] = set()
    for _ in range(workers * 20):
        seen.update(f.result() for f in [pool.submit(_ready) for _ in range(workers)])
        if len(seen) >= workers:
            break
    return pool


def _score_raw(scorer: ChunkScorer, raw: RawChunk, source_file: str) -> ChunkResult:
    if raw.fmt == "parquet":
        return scorer.score_arrow(raw.data, source_file=source_file, first_row=raw.first_row)
    chunk = raw.decode()
    return scorer.score(
        chunk.rows,
        source_file=source_file,
        first_row=chunk.first_row,
        source_rows=chunk.positions,
        pre_errors=chunk.errors,
    )


def _score_in_worker(raw: RawChunk, source_file: str) -> ChunkResult:
    assert _WORKER is not None, "worker not initialised"
    cpu = time.process_time()
    result = _score_raw(_WORKER, raw, source_file)
    result.cpu_seconds = time.process_time() - cpu
    return result


def _read(path: Path, uri: str, fmt: str, chunk_size: int, keep_text: list[str]) -> Iterator[RawChunk]:
    """read_chunks, with an unreadable file reported by name instead of a library traceback."""
    import pyarrow as pa

    chunks = read_chunks(path, fmt, chunk_size, keep_text)
    while True:
        try:
            raw = next(chunks)
        except StopIteration:
            return
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
            raise BatchJobError(f"cannot read {uri} as {fmt}: {type(exc).__name__}: {exc}") from None
        yield raw


def sample_of(rows: list[Any], errors: dict[int, Any]) -> list[Any]:
    """Up to SAMPLE_ROWS decodable rows of a chunk's head: what configuration checks and type inference see."""
    return [r for i, r in enumerate(rows[: SAMPLE_ROWS * 4]) if i not in errors][:SAMPLE_ROWS]


def _parquet_rows(uris: list[str]) -> int | None:
    """Rows of local Parquet inputs from their footers, for the progress bar (None if one is unreadable:
    the reader then names it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return sum(int(pq.ParquetFile(u).metadata.num_rows) for u in uris)
    except (pa.ArrowException, OSError):
        return None
