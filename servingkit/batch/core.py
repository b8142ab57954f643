"""What both engines do to one chunk of rows: pick features and id, score with the Lambda's core, split.

The engines differ only in how rows arrive (pyarrow batches locally, pandas partitions in Spark) and
where results go. Everything that decides a prediction or a rejection lives in `lambda_fn.scoring`
(hook, validation, one predict call, bisection); this module only adapts rows to it and turns the
result into two Arrow tables with fixed schemas, so both engines write identical files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lambda_fn.config import Env, Settings, settings_from
from lambda_fn.model_store import LoadedModel, load_model
from lambda_fn.records import Reason, record_id
from lambda_fn.schema import validate
from lambda_fn.scoring import BatchResult, Hook, ModelBatchError, RowError, load_hook, score_batch, score_frame
from servingkit.batch import columnar, decode
from servingkit.batch.errors import BatchJobError

# Prediction column kinds: Arrow type and Spark DDL type. Anything that is not a scalar is JSON text.
PREDICTION_TYPES: dict[str, tuple[pa.DataType, str]] = {
    "double": (pa.float64(), "double"),
    "long": (pa.int64(), "bigint"),
    "boolean": (pa.bool_(), "boolean"),
    "string": (pa.string(), "string"),
    "json": (pa.string(), "string"),
}

REJECTED_SCHEMA = pa.schema(
    [
        ("source_file", pa.string()),
        ("source_row", pa.int64()),
        ("id", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("data", pa.string()),
    ]
)


@dataclass(frozen=True, slots=True)
class JobConfig:
    """Everything an engine needs to rebuild the scorer anywhere (driver, executor, EMR): plain strings."""

    model_env: Mapping[str, str]
    prediction_type: str = "auto"  # or one of PREDICTION_TYPES; "auto" scores a sample of the first rows
    strict: bool = False

    def settings(self) -> Settings:
        return settings_from(self.model_env)


def model_env(
    base: Mapping[str, str] | None = None,
    *,
    release: Mapping[str, Any] | None = None,
    **overrides: str | None,
) -> dict[str, str]:
    """Model settings under the Lambda's environment names: env < release manifest < explicit flags.

    Using the same names (MODEL_URI, MODEL_SHA256, FEATURE_HOOK, ...) means a batch job configured
    from a Lambda's environment scores exactly like that Lambda.
    """
    names = {v for k, v in vars(Env).items() if k.isupper()}
    out = {k: v for k, v in (base or {}).items() if k in names and v}
    if release:
        for env, key in (
            (Env.MODEL_SHA256, "sha256"),
            (Env.MODEL_NAME, "name"),
            (Env.MODEL_VERSION, "version"),
            (Env.FEATURE_HOOK, "feature_hook"),
            (Env.FEATURES_FIELD, "features_field"),
            (Env.ID_FIELD, "id_field"),
        ):
            if release.get(key) is not None:
                out[env] = str(release[key])
    for env, value in overrides.items():
        if value is not None:
            out[env] = value
    return out


def _kind_of(values: Sequence[Any]) -> str:
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return "double"
    if kinds == {bool}:
        return "boolean"
    if kinds == {int}:
        return "long"
    if kinds <= {int, float}:
        return "double"
    if kinds == {str}:
        return "string"
    return "json"


@dataclass(slots=True)
class ChunkResult:
    scored: pa.Table
    rejected: pa.Table
    rows: int
    cpu_seconds: float = 0.0  # CPU spent decoding and scoring it (reported by worker processes)

    @property
    def reasons(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.rejected.column("reason").to_pylist():
            counts[r] = counts.get(r, 0) + 1
        return counts


# Where rows came from: one file for the chunk or one per row (Spark), and explicit row numbers if not a range.
type Files = str | Sequence[str | None] | pa.Array
type Positions = Sequence[int | None] | pa.Array


class _Where:
    """Where each row of a chunk came from, as Arrow columns (one file and a row range in the usual case)."""

    __slots__ = ("files", "positions")

    def __init__(self, source_file: Files, n: int, first_row: int, rows: Positions | None) -> None:
        import numpy as np

        if isinstance(source_file, str):
            self.files: pa.Array = pa.repeat(pa.scalar(source_file, pa.string()), n)
        elif isinstance(source_file, pa.Array):
            self.files = source_file
        else:
            self.files = pa.array(list(source_file), pa.string())
        if isinstance(rows, pa.Array):
            self.positions: pa.Array = rows
        elif rows is not None:
            self.positions = pa.array(list(rows), pa.int64())
        else:
            self.positions = pa.array(np.arange(first_row, first_row + n, dtype=np.int64))


@dataclass(slots=True)
class ChunkScorer:
    """Scores chunks of input rows with one loaded model; cheap to call many times."""

    model: LoadedModel
    hook: Hook | None
    features_field: str | None
    id_field: str | None
    prediction_type: str = "double"
    strict: bool = False
    _identity: tuple[str, str, str] = field(init=False)

    def __post_init__(self) -> None:
        if self.prediction_type not in PREDICTION_TYPES:
            raise BatchJobError(f"prediction type {self.prediction_type!r}: one of {sorted(PREDICTION_TYPES)}")
        self._identity = (self.model.name, self.model.version, self.model.sha256)

    @classmethod
    def from_config(cls, config: JobConfig, s3: Any | None = None) -> ChunkScorer:
        settings = config.settings()
        return cls(
            model=load_model(settings, s3),
            hook=load_hook(settings.feature_hook),
            features_field=settings.features_field,
            id_field=settings.id_field,
            prediction_type="double" if config.prediction_type == "auto" else config.prediction_type,
            strict=config.strict,
        )

    @property
    def scored_schema(self) -> pa.Schema:
        fields: list[tuple[str, pa.DataType]] = []
        if self.id_field:
            fields.append((self.id_field, pa.string()))
        fields += [
            ("prediction", PREDICTION_TYPES[self.prediction_type][0]),
            ("model_name", pa.string()),
            ("model_version", pa.string()),
            ("model_sha256", pa.string()),
            ("source_file", pa.string()),
            ("source_row", pa.int64()),
        ]
        return pa.schema(fields)

    def spark_schema(self) -> str:
        """The scored schema as Spark DDL."""
        parts = [f"`{self.id_field}` string"] if self.id_field else []
        parts += [
            f"prediction {PREDICTION_TYPES[self.prediction_type][1]}",
            "model_name string, model_version string, model_sha256 string",
            "source_file string, source_row bigint",
        ]
        return ", ".join(parts)

    def check_rows(self, sample: Sequence[Any]) -> None:
        """Fail fast when FEATURES_FIELD names a field the dataset does not have (a flat file, say)."""
        ff = self.features_field
        if ff and sample and not any(type(r) is dict and ff in r for r in sample):
            fields = sorted({k for r in sample if type(r) is dict for k in r})[:12]
            raise BatchJobError(
                f"FEATURES_FIELD={ff!r} but the input rows have no such field (fields: {fields}); "
                "pass --features-field '' to score each row as it is"
            )

    def infer_prediction_type(self, rows: Sequence[Any]) -> str:
        """Score a small sample to learn the output type (Spark needs the schema before it runs): from the
        model's own values, before they are put in an output column of the current type."""
        errors: dict[int, RowError] = {}
        _, features = self._features(rows, errors)
        result = self._run(lambda: score_batch(features, self.model, self.hook, strict=self.strict), "<sample>")
        kind = _kind_of([p for i, p in enumerate(result.predictions) if i not in result.errors])
        self.prediction_type = kind
        return kind

    @property
    def keep_text(self) -> list[str]:
        """Columns a CSV reader must leave as text: the id (an id of digits is still an id)."""
        return [self.id_field] if self.id_field else []

    def pinned(self, config: JobConfig) -> str:
        """This scorer's configuration for other processes (workers, executors), pinned to the artifact it
        loaded: every copy loads exactly the model this one checked, even if the URI is overwritten."""
        env = {**config.model_env, Env.MODEL_SHA256: self.model.sha256}
        return json.dumps(
            {"env": env, "prediction_type": self.prediction_type, "strict": config.strict}, sort_keys=True
        )

    @classmethod
    def from_pinned(cls, pinned: str) -> ChunkScorer:
        data = json.loads(pinned)
        return cls.from_config(JobConfig(data["env"], data["prediction_type"], data["strict"]))

    def score(
        self,
        rows: Sequence[Any],
        *,
        source_file: Files,
        first_row: int = 0,
        source_rows: Positions | None = None,
        pre_errors: Mapping[int, RowError] | None = None,
    ) -> ChunkResult:
        """Score one chunk; `pre_errors` are rows the reader could not decode (they are rejected as is)."""
        n = len(rows)
        errors: dict[int, RowError] = dict(pre_errors or {})
        ff, idf = self.features_field, self.id_field
        if ff or errors:
            live, features = self._features(rows, errors)
        else:
            live, features = list(range(n)), list(rows)
        ids = pa.array(_ids(rows, ff, idf), pa.string()) if idf else None
        result = self._run(lambda: score_batch(features, self.model, self.hook, strict=self.strict), source_file)
        if not result.errors and len(live) == n:
            kept, preds = live, result.predictions
        else:
            kept, preds = [], []
            for j, i in enumerate(live):
                err = result.errors.get(j)
                if err is None:
                    kept.append(i)
                    preds.append(result.predictions[j])
                else:
                    errors[i] = err
        where = _Where(source_file, n, first_row, source_rows)
        return self._assemble(n, kept, preds, errors, ids, where, rows.__getitem__)

    def score_arrow(
        self,
        batch: pa.RecordBatch | pa.Table,
        *,
        source_file: Files,
        first_row: int = 0,
        source_rows: Positions | None = None,
    ) -> ChunkResult:
        """Score Arrow rows (Parquet): the same result as `score(decode.arrow_rows(batch))`, but clean columns
        are checked as a whole and go to the model without becoming Python rows (see `columnar`)."""
        n = batch.num_rows
        plan, ids = self._arrow_plan(batch)
        if plan is None:
            return self.score(
                decode.arrow_rows(batch), source_file=source_file, first_row=first_row, source_rows=source_rows
            )

        decoded: dict[int, Any] = {}  # Python rows of the suspects, by input row
        rows: list[Any] | None = None

        def row_at(i: int) -> Any:  # only rejected rows are ever turned into Python rows
            nonlocal rows
            if i in decoded:
                return decoded[i]
            if rows is None:  # a row the model failed on: rare
                rows = decode.arrow_rows(batch)
            return rows[i]

        errors: dict[int, RowError] = {}
        if plan.clean:
            frame, kept = plan.frame(batch), list(range(n))
        else:
            frame, kept = self._with_suspects(batch, plan, errors, decoded)
        result = self._run(lambda: score_frame(frame, self.model, kept=kept, size=n, errors=errors), source_file)
        errors = result.errors
        good = [i for i in kept if i not in errors] if errors else kept
        preds = [result.predictions[i] for i in good] if len(good) != n else result.predictions
        return self._assemble(n, good, preds, errors, ids, _Where(source_file, n, first_row, source_rows), row_at)

    def takes_arrow_path(self, batch: pa.RecordBatch | pa.Table) -> bool:
        """Whether `score_arrow` can score this batch's clean rows without Python rows."""
        return self._arrow_plan(batch)[0] is not None

    def _arrow_plan(
        self, batch: pa.RecordBatch | pa.Table
    ) -> tuple[columnar.ColumnarPlan | None, pa.Array | pa.ChunkedArray | None]:
        if self.hook is not None or self.features_field:
            return None, None
        plan = columnar.plan(batch, self.model.signature, strict=self.strict)
        if plan is None or not self.id_field:
            return plan, None
        ids = self._arrow_ids(batch)
        return (plan, ids) if ids is not None else (None, None)

    def _with_suspects(
        self,
        batch: pa.RecordBatch | pa.Table,
        plan: columnar.ColumnarPlan,
        errors: dict[int, RowError],
        decoded: dict[int, Any],
    ) -> tuple[Any, list[int]]:
        """Rows the columns could not vouch for are validated as rows (which words the reasons); the frame
        holds every valid row in input order, as the row path builds it. Suspects' rows go to `decoded`."""
        import numpy as np
        import pandas as pd

        suspect_at = np.flatnonzero(plan.suspect)
        clean_at = np.flatnonzero(~plan.suspect)
        suspects = decode.arrow_rows(batch.take(suspect_at))
        decoded.update(zip(suspect_at.tolist(), suspects, strict=True))
        checked = validate(suspects, plan.signature, strict=self.strict)
        for j, msg in checked.errors.items():
            errors[int(suspect_at[j])] = RowError(Reason.SCHEMA, msg)
        passed = suspect_at[checked.kept]
        order = np.concatenate([clean_at, passed])
        frames = [plan.frame(batch.take(clean_at)), checked.frame]
        frame = pd.concat([f for f in frames if len(f)], ignore_index=True) if len(order) else checked.frame
        sort = np.argsort(order, kind="stable")
        return frame.iloc[sort].reset_index(drop=True), order[sort].tolist()

    def _arrow_ids(self, batch: pa.RecordBatch | pa.Table) -> pa.Array | pa.ChunkedArray | None:
        """The id column as text, as `_ids` makes it from rows; None when only the row path can say."""
        idf = self.id_field
        assert idf is not None
        if idf not in batch.schema.names:
            return pa.nulls(batch.num_rows, pa.string())
        column = batch.column(idf)
        t = column.type
        if pa.types.is_string(t):
            return column
        if pa.types.is_large_string(t) or pa.types.is_integer(t):  # str(int) == json.dumps(int)
            return pc.cast(column, pa.string())
        return None

    def _run(self, call: Any, source_file: Files) -> BatchResult:
        try:
            result: BatchResult = call()
        except ModelBatchError as exc:
            where = source_file if isinstance(source_file, str) else "this chunk"
            raise BatchJobError(f"{where}: {exc}") from None
        return result

    def _assemble(
        self,
        n: int,
        kept: Sequence[int],
        preds: list[Any],
        errors: Mapping[int, RowError],
        ids: pa.Array | pa.ChunkedArray | None,
        where: _Where,
        row_at: Callable[[int], Any],
    ) -> ChunkResult:
        """The scored and rejected tables of a chunk: `kept[j]` is the input row of `preds[j]`."""
        take = None if len(kept) == n else pa.array(kept, pa.int64())

        def pick(column: Any) -> Any:
            return column if take is None else column.take(take)

        k = len(kept)
        cols: dict[str, Any] = {}
        if self.id_field:
            assert ids is not None
            cols[self.id_field] = pick(ids)
        cols["prediction"] = self._prediction_array(preds)
        for column, value in zip(("model_name", "model_version", "model_sha256"), self._identity, strict=True):
            cols[column] = pa.repeat(pa.scalar(value, pa.string()), k)
        cols["source_file"] = pick(where.files)
        cols["source_row"] = pick(where.positions)
        scored = pa.table(cols, schema=self.scored_schema)

        bad = sorted(errors)
        at = pa.array(bad, pa.int64())
        rejected = pa.table(
            {
                "source_file": where.files.take(at),
                "source_row": where.positions.take(at),
                "id": ids.take(at) if ids is not None else pa.nulls(len(bad), pa.string()),
                "reason": pa.array([errors[i].reason for i in bad], pa.string()),
                "detail": pa.array([errors[i].detail for i in bad], pa.string()),
                "data": pa.array([_as_json(row_at(i)) for i in bad], pa.string()),
            },
            schema=REJECTED_SCHEMA,
        )
        return ChunkResult(scored=scored, rejected=rejected, rows=n)

    def _features(self, rows: Sequence[Any], errors: dict[int, RowError]) -> tuple[list[int], list[Any]]:
        """Pick each row's features (FEATURES_FIELD) as the stream does; rows without them are rejected."""
        ff = self.features_field
        live: list[int] = []
        features: list[Any] = []
        for i, row in enumerate(rows):
            if i in errors:
                continue
            if ff:
                if type(row) is not dict:
                    errors[i] = RowError(Reason.NOT_OBJECT, f"row must be an object, got {type(row).__name__}")
                    continue
                if row.get(ff) is None:
                    errors[i] = RowError(Reason.MISSING_FEATURES, f"row has no '{ff}' field (FEATURES_FIELD)")
                    continue
                features.append(row[ff])
            else:
                features.append(row)
            live.append(i)
        return live, features

    def _prediction_array(self, preds: list[Any]) -> pa.Array:
        kind = self.prediction_type
        arrow_type = PREDICTION_TYPES[kind][0]
        if kind == "json":
            return pa.array([json.dumps(p, default=str) for p in preds], arrow_type)
        if kind == "string":
            return pa.array([p if isinstance(p, str) else json.dumps(p, default=str) for p in preds], arrow_type)
        try:
            return pa.array(preds, arrow_type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            raise BatchJobError(
                f"the model returned predictions that are not {kind} ({exc}); pass --prediction-type json"
            ) from None


def _ids(rows: Sequence[Any], ff: str | None, idf: str) -> list[str | None]:
    fast = [r.get(idf) for r in rows] if all(type(r) is dict for r in rows) else []
    if fast and set(map(type, fast)) == {str}:
        return fast
    return [_row_id(r, ff, idf) for r in rows]


def _row_id(row: Any, ff: str | None, idf: str) -> str | None:
    """The record id as the stream finds it (`record_id`), as text."""
    if type(row) is not dict:
        return None
    rid = record_id(row, row.get(ff) if ff else None, idf)
    if rid is None:
        return None
    return rid if isinstance(rid, str) else json.dumps(rid, default=str)


def _as_json(row: Any) -> str:
    """The rejected row as JSON so that nothing is lost; non-finite floats and dates become strings."""
    if isinstance(row, str):
        return row
    return json.dumps(_jsonable(row), default=str, allow_nan=False)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
