"""The quality job's I/O: label files and capture objects in S3 (boto3, imported on use).

    <prefix>/labels/date=YYYY-MM-DD/hour=HH/<name>.jsonl[.gz]                           labels (the arrival's hour)
    <prefix>/capture/model=<name>/sha256=<sha>/variant=<v>/date=YYYY-MM-DD/hour=HH/<uuid>.jsonl.gz   capture

A label file holds JSON lines in the kit's form `{"id", "label", "time"}` or SageMaker's ground truth
(`labels.parse_label_line`); gzip when its name ends in `.gz`. A label's arrival is its line's `time`, else the
object's LastModified. The files of the hours [start, end] are read (a label is filed under the hour it
arrived, which is after its prediction's). Capture objects of the hours [start, end) are read and their records
kept when their `inferenceTime` is in [start, end).
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote

from lambda_fn.monitoring import labels as lab
from lambda_fn.monitoring.capture import partition, read_lines
from lambda_fn.monitoring.quality_job import LabelBatch
from lambda_fn.monitoring.s3_store import CAPTURE, hours, s3_client, utc

LABELS = "labels"
LABEL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def label_hour_prefix(prefix: str, hour: datetime) -> str:
    t = utc(hour)
    return _join(prefix, LABELS, f"date={t:%Y-%m-%d}", f"hour={t:%H}")


def label_key(prefix: str, name: str, at: datetime) -> str:
    """Where a label file named `name` (…jsonl or …jsonl.gz) that arrives at `at` goes."""
    if not name.endswith(LABEL_SUFFIXES):
        raise ValueError(f"a label file is named *.jsonl or *.jsonl.gz, not {name!r}")
    return f"{label_hour_prefix(prefix, at)}/{PurePosixPath(name).name}"


def put_labels(s3: Any, bucket: str, prefix: str, name: str, body: bytes, at: datetime | None = None) -> str:
    """Upload one label file under the hour it arrives (default now); returns its key."""
    key = label_key(prefix, name, at or datetime.now(UTC))
    extra = {"ContentEncoding": "gzip"} if name.endswith(".gz") else {}
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/x-ndjson", **extra)
    return key


def _objects(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        yield from page.get("Contents", [])


def _text_lines(key: str, body: bytes) -> list[bytes]:
    return (gzip.decompress(body) if key.endswith(".gz") else body).splitlines()


def _earlier(a: lab.Label | None, b: lab.Label) -> bool:
    return a is None or (b.arrived is not None and a.arrived is not None and b.arrived < a.arrived)


@dataclass
class S3Labels:
    """`quality_job.LabelReader` over the label layout."""

    bucket: str
    prefix: str
    s3: Any = None

    def client(self) -> Any:
        if self.s3 is None:
            self.s3 = s3_client()
        return self.s3

    def labels(self, start: datetime, end: datetime) -> LabelBatch:
        out = LabelBatch()
        for hour in hours(start, end + timedelta(hours=1)):
            for obj in _objects(self.client(), self.bucket, label_hour_prefix(self.prefix, hour)):
                key = str(obj["Key"])
                if not key.endswith(LABEL_SUFFIXES):
                    continue
                body = self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()
                try:
                    lines = _text_lines(key, body)
                except (OSError, EOFError):
                    out.bad_lines += 1
                    continue
                found, bad = lab.read_labels(lines, utc(obj["LastModified"]))
                out.objects += 1
                out.bad_lines += bad
                for rid, label in found.items():
                    if _earlier(out.labels.get(rid), label):
                        out.labels[rid] = label
        return out


@dataclass
class S3Captures:
    """`quality_job.CaptureReader` over the capture layout of one deployment's model (every variant)."""

    bucket: str
    prefix: str
    model_name: str
    model_sha256: str
    s3: Any = None
    unreadable: int = 0

    def client(self) -> Any:
        if self.s3 is None:
            self.s3 = s3_client()
        return self.s3

    def model_path(self) -> str:
        model, sha = f"model={partition(self.model_name)}", f"sha256={partition(self.model_sha256)}"
        return _join(self.prefix, CAPTURE, model, sha)

    def variants(self) -> list[str]:
        base = self.model_path() + "/"
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base, Delimiter="/")
        names = [p["Prefix"][len(base) :].rstrip("/") for page in pages for p in page.get("CommonPrefixes", [])]
        return sorted(unquote(n.split("=", 1)[1]) for n in names if n.startswith("variant="))

    def captured(self, start: datetime, end: datetime) -> list[lab.Captured]:
        out: list[lab.Captured] = []
        for variant in self.variants():
            for hour in hours(start, end):
                t = utc(hour)
                base = _join(self.model_path(), f"variant={partition(variant)}", f"date={t:%Y-%m-%d}", f"hour={t:%H}")
                for obj in _objects(self.client(), self.bucket, base):
                    out.extend(self._read(str(obj["Key"]), start, end))
        return out

    def _read(self, key: str, start: datetime, end: datetime) -> list[lab.Captured]:
        body = self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        try:
            records = [lab.Captured.from_record(d) for d in read_lines(body)]
        except (OSError, EOFError, ValueError, KeyError, TypeError):
            self.unreadable += 1
            return []
        return [c for c in records if utc(start) <= utc(c.time) < utc(end)]
