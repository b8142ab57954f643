"""The `spark` engine: the same chunk scorer applied to every partition with `mapInPandas`.

The driver loads the model once to check the configuration, learn the prediction type and pin the
artifact's sha256; each Python worker then loads that exact artifact once (cached for the worker's
life) and scores its partitions in Arrow batches. Results of one pass are persisted and split into the
scored and rejected outputs, so the model runs once per row. The same code runs on a laptop
(`local[2]`) and on EMR Serverless, where Spark reads and writes s3:// itself.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from servingkit.batch.core import REJECTED_SCHEMA, ChunkScorer, JobConfig
from servingkit.batch.decode import Chunk
from servingkit.batch.errors import BatchJobError
from servingkit.batch.io import RawChunk, put_text, resolve_inputs
from servingkit.batch.local import SAMPLE_ROWS, Summary, peak_rss_mb, sample_of

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

_FILE = "__source_file"
_ROW = "__source_row"
_STATUS = "__status"
_R = "__rejected_"  # rejected-only columns in the one mapInPandas output (never clash with ID_FIELD)
_WORKER_SCORERS: dict[str, ChunkScorer] = {}


def session(master: str | None = None, *, chunk_size: int = 50_000, app_name: str = "servingkit-batch") -> SparkSession:
    """A Spark session for batch scoring; `master=None` keeps what spark-submit (or EMR) configured."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    if master and master.startswith("local"):
        # Local workers must run this interpreter (the one with pandas, pyarrow and the model libraries).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = builder.config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "4")
    return (
        builder.config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(chunk_size))
        .getOrCreate()
    )


def _worker_scorer(config_json: str) -> ChunkScorer:
    """One loaded model per Python worker (workers are reused across tasks), never one per partition."""
    scorer = _WORKER_SCORERS.get(config_json)
    if scorer is None:
        scorer = _WORKER_SCORERS[config_json] = ChunkScorer.from_pinned(config_json)
    return scorer


def _decode(pdf: pd.DataFrame, fmt: str, keep_text: Sequence[str]) -> Chunk:
    """Rows of a partition batch or of the sample, decoded as the local engine decodes a chunk."""
    import pyarrow as pa

    data = pdf["value"].tolist() if fmt == "jsonl" else pa.Table.from_pandas(pdf, preserve_index=False)
    return RawChunk(fmt, data, 0, keep_text=tuple(keep_text)).decode()


def _partition_fn(config_json: str, fmt: str) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    def score_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pyarrow as pa
        import pyarrow.compute as pc

        scorer = _worker_scorer(config_json)
        name, version, sha = scorer.model.name, scorer.model.version, scorer.model.sha256
        for pdf in batches:
            # Spark's file:// URIs as the local engine names files (plain paths); row numbers may be null.
            files = pc.replace_substring_regex(
                pa.array(pdf[_FILE], pa.string(), from_pandas=True), pattern="^file:(//)?", replacement=""
            )
            positions = pa.array(pdf[_ROW], pa.int64(), from_pandas=True)
            data = pdf.drop(columns=[_FILE, _ROW])
            if fmt == "parquet":  # clean columns skip Python rows, as in the local engine
                table = pa.Table.from_pandas(data, preserve_index=False)
                res = scorer.score_arrow(table, source_file=files, source_rows=positions)
            else:
                chunk = _decode(data, fmt, scorer.keep_text)
                res = scorer.score(chunk.rows, source_file=files, source_rows=positions, pre_errors=chunk.errors)
            ns, nr = res.scored.num_rows, res.rejected.num_rows
            scored = res.scored
            scored = scored.append_column(_STATUS, pa.array(["scored"] * ns, pa.string()))
            for col in REJECTED_SCHEMA.names[2:]:
                scored = scored.append_column(_R + col, pa.nulls(ns, pa.string()))
            rej = res.rejected
            cols: dict[str, Any] = {}
            if scorer.id_field:
                cols[scorer.id_field] = rej.column("id")
            cols["prediction"] = pa.nulls(nr, scored.schema.field("prediction").type)
            for col, value in (("model_name", name), ("model_version", version), ("model_sha256", sha)):
                cols[col] = pa.array([value] * nr, pa.string())
            cols["source_file"], cols["source_row"] = rej.column("source_file"), rej.column("source_row")
            cols[_STATUS] = pa.array(["rejected"] * nr, pa.string())
            for col in REJECTED_SCHEMA.names[2:]:
                cols[_R + col] = rej.column(col)
            rejected = pa.table(cols, schema=scored.schema)
            out = pa.concat_tables([scored, rejected]).to_pandas()
            # pandas 3 backs text with Arrow-backed "str" columns that PySpark 4.3 cannot serialize yet.
            text = [c for c, t in zip(out.columns, out.dtypes, strict=True) if t.kind not in "biufcmM"]
            yield out.astype(dict.fromkeys(text, object)) if text else out

    return score_partition


def _read(spark: SparkSession, paths: list[str], fmt: str) -> DataFrame:
    from pyspark.sql import functions as sf

    if fmt == "parquet":
        df = spark.read.parquet(*paths)
        return df.select("*", sf.col("_metadata.file_path").alias(_FILE), sf.col("_metadata.row_index").alias(_ROW))
    if fmt == "csv":
        # Every CSV cell stays text here; the shared reader decides numbers exactly as the local engine does.
        df = spark.read.option("header", True).option("inferSchema", False).csv(paths)
    else:
        # JSON lines are read as text and decoded by the same code as the local engine and the stream.
        df = spark.read.text(paths).where("trim(value) != ''")
    return df.select("*", sf.col("_metadata.file_path").alias(_FILE), sf.lit(None).cast("bigint").alias(_ROW))


def run_spark(
    inputs: Sequence[str],
    output: str,
    config: JobConfig,
    *,
    spark: SparkSession | None = None,
    input_format: str | None = None,
    output_format: str = "parquet",
    overwrite: bool = False,
) -> Summary:
    """Score `inputs` into `<output>/scored` and `<output>/rejected` with Spark; returns the summary."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as sf

    started = time.perf_counter()
    spark = spark or session()
    # Listed here (files, directories, globs, s3:// prefixes), as the local engine lists them: one format.
    files = resolve_inputs(inputs, input_format)
    paths, fmt = [f.uri for f in files], files[0].format
    scorer = ChunkScorer.from_config(config)
    df = _read(spark, paths, fmt)
    sample_pdf: Any = df.limit(SAMPLE_ROWS).toPandas()
    head = _decode(sample_pdf.drop(columns=[_FILE, _ROW]), fmt, scorer.keep_text)
    sample = sample_of(head.rows, head.errors)
    scorer.check_rows(sample)
    if config.prediction_type == "auto":
        scorer.infer_prediction_type(sample)
    kind = scorer.prediction_type
    worker = scorer.pinned(config)  # every executor loads the artifact the driver checked
    load_seconds = time.perf_counter() - started
    started, cpu_started = time.perf_counter(), time.process_time()

    schema = ", ".join(
        [scorer.spark_schema(), f"{_STATUS} string", *(f"{_R}{c} string" for c in REJECTED_SCHEMA.names[2:])]
    )
    scored_all = df.mapInPandas(_partition_fn(worker, fmt), schema)
    scored_all = scored_all.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        counts = scored_all.groupBy(_STATUS, _R + "reason").count().collect()
        out = output.rstrip("/")
        mode = "overwrite" if overwrite else "errorifexists"
        scored_cols = [f"`{n}`" for n in scorer.scored_schema.names]
        rejected_cols = [sf.col(c) for c in REJECTED_SCHEMA.names[:2]]
        rejected_cols += [sf.col(_R + c).alias(c) for c in REJECTED_SCHEMA.names[2:]]
        scored_df = scored_all.where(sf.col(_STATUS) == "scored").select(*scored_cols)
        _write(scored_df, f"{out}/scored", output_format, mode)
        rejected_df = scored_all.where(sf.col(_STATUS) == "rejected").select(*rejected_cols)
        _write(rejected_df, f"{out}/rejected", output_format, mode)
    finally:
        scored_all.unpersist()
    reasons = {r[1]: int(r[2]) for r in counts if r[0] == "rejected"}
    scored_n = sum(int(r[2]) for r in counts if r[0] == "scored")
    rejected_n = sum(reasons.values())
    summary = Summary(
        engine="spark",
        inputs=len(paths),
        rows_in=scored_n + rejected_n,
        scored=scored_n,
        rejected=rejected_n,
        seconds=time.perf_counter() - started,
        load_seconds=load_seconds,
        cpu_seconds=time.process_time() - cpu_started,
        peak_memory_mb=peak_rss_mb(),
        output=f"{out}/scored",
        rejected_output=f"{out}/rejected",
        model=scorer.model.identity,
        prediction_type=kind,
        reasons=reasons,
    )
    put_text(f"{out}/_summary.json", json.dumps(summary.to_dict(), indent=2), None)
    return summary


def _write(df: DataFrame, target: str, fmt: str, mode: str) -> None:
    writer = df.write.mode(mode)
    if fmt == "parquet":
        writer.option("compression", "zstd").parquet(target)
    elif fmt == "csv":
        writer.option("header", True).csv(target)
    elif fmt == "jsonl":
        writer.json(target)
    else:
        raise BatchJobError(f"output format {fmt!r}: one of parquet, csv, jsonl")
