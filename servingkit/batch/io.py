"""Where rows come from and where results go: local files or S3, Parquet / CSV / JSON lines, in chunks.

S3 is read and written with boto3 (one object at a time through a temporary file), so the standard
`AWS_ENDPOINT_URL_S3` variable points it at moto or LocalStack and memory never holds more than a
chunk. Readers turn every format into the same thing the stream sees: a list of row objects, with
rows that cannot even be decoded reported with a reason instead of being dropped.
"""

from __future__ import annotations

import csv
import fnmatch
import glob
import json
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from lambda_fn.model_store import s3_client
from servingkit.batch import decode
from servingkit.batch.decode import Chunk
from servingkit.batch.errors import BatchJobError

FORMATS = ("parquet", "csv", "jsonl")
_SUFFIXES = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
}
_OUT_SUFFIX = {"parquet": ".parquet", "csv": ".csv", "jsonl": ".jsonl"}
_GLOB = set("*?[")


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise BatchJobError(f"{uri!r} is not s3://bucket/key")
    return bucket, key


def format_of(name: str) -> str | None:
    return _SUFFIXES.get(Path(name).suffix.lower())


def _data_file(name: str) -> bool:
    """Skip markers and hidden files (_SUCCESS, .crc, _summary.json) like Spark does."""
    base = name.rsplit("/", 1)[-1]
    return bool(base) and not base.startswith(("_", "."))


@dataclass(frozen=True, slots=True)
class InputFile:
    uri: str
    format: str


def resolve_inputs(specs: Sequence[str], fmt: str | None = None, s3: Any | None = None) -> list[InputFile]:
    """Expand files, directories, globs and s3:// prefixes or globs into a sorted list of data files."""
    uris: list[str] = []
    for spec in specs:
        if spec.startswith("s3://"):
            s3 = s3 or s3_client()
            found = _expand_s3(spec, s3)
        else:
            found = _expand_local(spec)
        if not found:
            raise BatchJobError(f"input {spec!r} matches no data file")
        uris.extend(found)
    files: list[InputFile] = []
    for uri in uris:
        kind = fmt or format_of(uri)
        if kind is None:
            raise BatchJobError(f"cannot tell the format of {uri!r} from its name; pass --format {'|'.join(FORMATS)}")
        if kind not in FORMATS:
            raise BatchJobError(f"format {kind!r}: one of {FORMATS}")
        files.append(InputFile(uri, kind))
    kinds = {f.format for f in files}
    if len(kinds) > 1:
        raise BatchJobError(f"inputs mix formats {sorted(kinds)}; score them in separate runs")
    return files


def _expand_local(spec: str) -> list[str]:
    path = Path(spec).expanduser()
    if any(c in spec for c in _GLOB):
        paths = [Path(p) for p in glob.glob(str(path), recursive=True)]  # noqa: PTH207 - absolute patterns
    elif path.is_dir():
        paths = [
            p for p in path.rglob("*") if not any(part.startswith(("_", ".")) for part in p.relative_to(path).parts)
        ]
    else:
        paths = [path] if path.exists() else []
    files = sorted(p.resolve() for p in paths if p.is_file() and _data_file(p.name))
    if path.is_dir():
        files = [p for p in files if format_of(p.name)]
    return [str(p) for p in files]


def _expand_s3(spec: str, s3: Any) -> list[str]:
    bucket, key = split_s3(spec)
    cut = min((key.index(c) for c in _GLOB if c in key), default=-1)
    pattern = key if cut >= 0 else None
    prefix = key[:cut] if cut >= 0 else key
    out: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            k = obj["Key"]
            if k.endswith("/") or not _data_file(k):
                continue
            if pattern is not None and not fnmatch.fnmatchcase(k, pattern):
                continue
            if pattern is None and k != prefix and not (prefix == "" or prefix.endswith("/") or k[len(prefix)] == "/"):
                continue
            if pattern is None and k != prefix and not format_of(k):
                continue
            out.append(f"s3://{bucket}/{k}")
    return sorted(out)


@contextmanager
def local_copy(uri: str, workdir: Path, s3: Any | None) -> Iterator[Path]:
    """A local path for the input: the file itself, or an S3 object downloaded to disk and then deleted."""
    if not uri.startswith("s3://"):
        yield Path(uri)
        return
    bucket, key = split_s3(uri)
    target = workdir / f"in-{abs(hash(uri))}{Path(key).suffix}"
    try:
        (s3 or s3_client()).download_file(bucket, key, str(target))
        yield target
    finally:
        target.unlink(missing_ok=True)


# --------------------------------------------------------------------------- chunk readers


@dataclass(slots=True)
class RawChunk:
    """A chunk as read (Arrow data or text lines), cheap to hand to another process; `decode()` makes rows."""

    fmt: str
    data: Any  # pa.RecordBatch (parquet), pa.Table of text (csv), list[str] (jsonl)
    first_row: int
    positions: list[int] | None = None
    keep_text: tuple[str, ...] = ()

    def head(self, n: int) -> RawChunk:
        data = self.data[:n] if isinstance(self.data, list) else self.data.slice(0, n)
        positions = self.positions[:n] if self.positions is not None else None
        return RawChunk(self.fmt, data, self.first_row, positions, self.keep_text)

    def decode(self) -> Chunk:
        if self.fmt == "parquet":
            return Chunk(decode.arrow_rows(self.data), self.first_row)
        if self.fmt == "csv":
            return Chunk(decode.text_rows(self.data, self.keep_text), self.first_row)
        chunk = decode.json_rows(self.data, self.first_row)
        chunk.positions = self.positions
        return chunk


def read_chunks(path: Path, fmt: str, chunk_size: int, keep_text: Sequence[str] = ()) -> Iterator[RawChunk]:
    """Stream a file in chunks of at most `chunk_size` rows; memory holds one chunk (plus one Parquet row group)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path, buffer_size=1 << 20)
        start = 0
        for batch in pf.iter_batches(batch_size=chunk_size, use_threads=True):
            yield RawChunk(fmt, batch, start)
            start += batch.num_rows
    elif fmt == "csv":
        yield from _csv_chunks(path, chunk_size, tuple(keep_text))
    elif fmt == "jsonl":
        start = 0
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            while True:
                lines = [line.rstrip("\r\n") for _, line in zip(range(chunk_size), fh, strict=False)]
                if not lines:
                    break
                # Blank lines are not records (a trailing newline, say); skip them but keep true line numbers.
                kept = [(start + i, ln) for i, ln in enumerate(lines) if ln.strip()]
                if kept:
                    positions = [pos for pos, _ in kept] if len(kept) != len(lines) else None
                    yield RawChunk(fmt, [ln for _, ln in kept], start, positions)
                start += len(lines)
    else:
        raise BatchJobError(f"format {fmt!r}: one of {FORMATS}")


def _csv_chunks(path: Path, chunk_size: int, keep_text: tuple[str, ...]) -> Iterator[RawChunk]:
    from pyarrow import csv as pacsv

    with path.open(newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh), None)
    if not header:
        return
    opts = pacsv.ConvertOptions(column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=True)
    reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=8 << 20), convert_options=opts)
    start = 0
    pending: list[pa.RecordBatch] = []
    size = 0
    for batch in reader:
        pending.append(batch)
        size += batch.num_rows
        while size >= chunk_size:
            table = pa.Table.from_batches(pending)
            head, rest = table.slice(0, chunk_size), table.slice(chunk_size)
            yield RawChunk("csv", head.combine_chunks(), start, keep_text=keep_text)
            start += head.num_rows
            pending, size = rest.to_batches(), rest.num_rows
    if size:
        yield RawChunk("csv", pa.Table.from_batches(pending), start, keep_text=keep_text)


# --------------------------------------------------------------------------- writers


class PartWriter:
    """Writes tables into numbered part files under a local directory or an S3 prefix.

    A part is closed after `rows_per_file` rows (and uploaded when the target is S3), so a run of any
    size leaves files of a bounded size and holds at most one part on local disk.
    """

    def __init__(
        self, target: str, fmt: str, schema: pa.Schema, rows_per_file: int, s3: Any | None, workdir: Path
    ) -> None:
        if fmt not in FORMATS:
            raise BatchJobError(f"output format {fmt!r}: one of {FORMATS}")
        self.target, self.fmt, self.schema = target.rstrip("/"), fmt, schema
        self.rows_per_file, self.s3, self.workdir = rows_per_file, s3, workdir
        self.parts: list[str] = []
        self.rows = 0
        self._writer: Any = None
        self._fh: Any = None
        self._path: Path | None = None
        self._in_part = 0

    def _open(self) -> None:
        name = f"part-{len(self.parts):05d}{_OUT_SUFFIX[self.fmt]}"
        if self.target.startswith("s3://"):
            self._path = self.workdir / f"out-{id(self)}-{name}"
        else:
            Path(self.target).mkdir(parents=True, exist_ok=True)
            self._path = Path(self.target) / name
        self.parts.append(f"{self.target}/{name}")
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            self._writer = pq.ParquetWriter(self._path, self.schema, compression="zstd")
        elif self.fmt == "csv":
            from pyarrow import csv as pacsv

            self._writer = pacsv.CSVWriter(self._path, self.schema)
        else:
            self._fh = self._path.open("w", encoding="utf-8")
        self._in_part = 0

    def write(self, table: pa.Table) -> None:
        while table.num_rows:
            if self._path is None:
                self._open()
            room = self.rows_per_file - self._in_part
            head, table = table.slice(0, room), table.slice(room)
            if self._writer is not None:
                self._writer.write_table(head)
            else:
                self._fh.write("".join(json.dumps(r, default=str) + "\n" for r in head.to_pylist()))
            self._in_part += head.num_rows
            self.rows += head.num_rows
            if self._in_part >= self.rows_per_file:
                self._close_part()

    def _close_part(self) -> None:
        if self._path is None:
            return
        if self._writer is not None:
            self._writer.close()
        if self._fh is not None:
            self._fh.close()
        if self.target.startswith("s3://"):
            bucket, prefix = split_s3(self.parts[-1])
            try:
                (self.s3 or s3_client()).upload_file(str(self._path), bucket, prefix)
            finally:
                self._path.unlink(missing_ok=True)
        self._writer = self._fh = self._path = None

    def close(self) -> None:
        self._close_part()


OUTPUT_ENTRIES = ("scored", "rejected", "_summary.json")


def ensure_empty(target: str, overwrite: bool, s3: Any | None) -> None:
    """Refuse to mix a new run's parts with an old one's; `overwrite` deletes only what a run writes
    (scored/, rejected/, _summary.json), never anything else under the output."""
    if target.startswith("s3://"):
        client = s3 or s3_client()
        bucket, prefix = split_s3(target.rstrip("/") + "/")
        keys = [
            o["Key"]
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", [])
        ]
        if keys and not overwrite:
            raise BatchJobError(f"output {target} is not empty ({len(keys)} objects); pass --overwrite to replace it")
        ours = [k for k in keys if k[len(prefix) :].split("/", 1)[0] in OUTPUT_ENTRIES]
        for i in range(0, len(ours), 1000):
            client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in ours[i : i + 1000]]})
        return
    path = Path(target)
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise BatchJobError(f"output {target} is not empty; pass --overwrite to replace it")
        for name in OUTPUT_ENTRIES:
            entry = path / name
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink(missing_ok=True)


def put_text(target: str, text: str, s3: Any | None) -> None:
    if target.startswith("s3://"):
        bucket, key = split_s3(target)
        (s3 or s3_client()).put_object(Bucket=bucket, Key=key, Body=text.encode(), ContentType="application/json")
    else:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(text)


def scratch_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="servingkit-batch-")
