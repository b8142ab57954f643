"""Rows as the scoring core sees them: Arrow batches, CSV text tables and JSON lines turned into row objects.

Pure conversions, no I/O: `io` reads chunks and calls these, `core` falls back to them for the rows the
columnar path cannot vouch for. Rows that cannot even be decoded keep their text and get a reason.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lambda_fn.records import Reason
from lambda_fn.scoring import RowError


@dataclass(slots=True)
class Chunk:
    rows: list[Any]
    first_row: int
    errors: dict[int, RowError] = field(default_factory=dict)
    positions: list[int] | None = None  # row numbers when they are not first_row + i (JSON lines skip blanks)


def arrow_rows(batch: pa.RecordBatch | pa.Table) -> list[Any]:
    """Arrow rows as the JSON-like objects the scoring core validates (dates as ISO-8601 strings)."""
    cols = []
    changed = False
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
            column = pc.strftime(column, format="%Y-%m-%dT%H:%M:%S")
            changed = True
        cols.append((name, column))
    if changed:
        batch = pa.table(dict(cols))
    return batch.to_pylist()  # type: ignore[no-any-return]


def text_rows(table: pa.Table | pa.RecordBatch, keep_text: Sequence[str] = ()) -> list[Any]:
    """CSV cells are text: columns that are wholly numbers become numbers (as pandas.read_csv does), and a
    column holding a stray word keeps the word only in that row, so validation rejects that row alone."""
    names = list(table.schema.names)
    cols: dict[str, Any] = {}
    mixed: list[str] = []
    for name, column in zip(names, table.columns, strict=True):
        text = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)  # pandas 3 "str" -> large
        if name in keep_text or not text or column.null_count == len(column):
            cols[name] = column
            continue
        for target in (pa.int64(), pa.float64()):
            try:
                cols[name] = pc.cast(column, target)
                break
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
        else:
            cols[name] = column
            mixed.append(name)
    rows: list[dict[str, Any]] = pa.table(cols).to_pylist()
    for name in mixed:
        for row in rows:
            row[name] = _number_or_text(row[name])
    return rows


def _number_or_text(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


def json_rows(lines: Sequence[str | None], first_row: int = 0) -> Chunk:
    """One JSON document per line, as the stream decodes a record; undecodable lines keep their text."""
    rows: list[Any] = []
    errors: dict[int, RowError] = {}
    loads = json.loads
    for i, line in enumerate(lines):
        try:
            rows.append(loads(line or ""))
        except ValueError as exc:
            rows.append(line)
            errors[i] = RowError(Reason.NOT_JSON, f"line is not JSON: {exc}")
    return Chunk(rows, first_row, errors)
