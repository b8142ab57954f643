"""The monitor's I/O: profile and report objects in S3, metrics to CloudWatch (boto3, imported on use).

S3 layout under one bucket and prefix (values percent-encoded as Hive partitions, `capture.partition`):

    <prefix>/capture/model=<name>/sha256=<model sha256>/variant=<v>/date=YYYY-MM-DD/hour=HH/<uuid>.jsonl.gz
    <prefix>/profiles/model=<name>/sha256=<model sha256>/variant=<v>/date=YYYY-MM-DD/hour=HH/<stamp>-<uuid>.json
    <prefix>/profiles-hourly/model=<name>/sha256=<model sha256>/variant=<v>/date=YYYY-MM-DD/hour=HH.json
    <prefix>/reports/model=<name>/sha256=<model sha256>/date=YYYY-MM-DD/hour=HH/end=<stamp>/summary.json
    <prefix>/reports/model=<name>/sha256=<model sha256>/date=YYYY-MM-DD/hour=HH/end=<stamp>/report.html
    <prefix>/reports/.../end=<stamp>/report-long.html

`<stamp>` is the UTC time in ISO basic form (`20261201T110509Z`): a profile's name starts with the time its batch
was scored, so a window selects its profiles from the listing without reading the others; its body
(`profile_body`) carries the same time, the model identity and the profile. A report's directory is named by
its window's end, so running a window again (backfill) replaces that window's objects instead of adding more.
An hourly object (`compaction`) is the merge of one complete hour's per-batch profiles (kept: the lifecycle
expires them); the reader takes it instead of that hour's per-batch objects for every hour wholly inside a window.

Clients are created when first needed, never at import, so AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 (an emulator)
apply. `put_profile` is the writer the scorer's capture step will call once per invocation and variant.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlparse

from lambda_fn.monitoring.capture import partition
from lambda_fn.monitoring.profile import Profile, ProfileError
from lambda_fn.monitoring.reference import Reference, canonical_json
from lambda_fn.monitoring.window import MetricDatum, ReadStats

PROFILE_FORMAT = 1
CAPTURE = "capture"
PROFILES = "profiles"
HOURLY = "profiles-hourly"  # one merged profile per variant and complete hour (lambda_fn.monitoring.compaction)
REPORTS = "reports"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
LONG_REPORT_FILE = "report-long.html"
_STAMP = "%Y%m%dT%H%M%SZ"
_METRICS_PER_CALL = 500  # PutMetricData takes up to 1,000 values and 1 MB per request


def utc(t: datetime) -> datetime:
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)


def stamp(t: datetime) -> str:
    return utc(t).strftime(_STAMP)


def parse_stamp(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, _STAMP).replace(tzinfo=UTC)
    except ValueError:
        return None


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


@dataclass(frozen=True)
class Location:
    """Where one model's monitoring objects live: a bucket, a prefix, the model's name and sha256."""

    bucket: str
    prefix: str
    model_name: str
    model_sha256: str

    def model_path(self, kind: str) -> str:
        return _join(self.prefix, kind, f"model={partition(self.model_name)}", f"sha256={partition(self.model_sha256)}")

    def hour_prefix(self, variant: str, hour: datetime) -> str:
        t = utc(hour)
        return _join(self.model_path(PROFILES), f"variant={partition(variant)}", f"date={t:%Y-%m-%d}", f"hour={t:%H}")

    def profile_key(self, variant: str, at: datetime, name: str | None = None) -> str:
        return f"{self.hour_prefix(variant, at)}/{stamp(at)}-{name or uuid.uuid4().hex}.json"

    def hourly_day_prefix(self, variant: str, day: datetime) -> str:
        return _join(self.model_path(HOURLY), f"variant={partition(variant)}", f"date={utc(day):%Y-%m-%d}")

    def hourly_key(self, variant: str, hour: datetime) -> str:
        """The merged profile of one variant's hour [hour, hour + 1 h)."""
        return f"{self.hourly_day_prefix(variant, hour)}/hour={utc(hour):%H}.json"

    def report_dir(self, end: datetime) -> str:
        t = utc(end)
        return _join(self.model_path(REPORTS), f"date={t:%Y-%m-%d}", f"hour={t:%H}", f"end={stamp(t)}")


def profile_body(profile: Profile, model: Mapping[str, str], at: datetime) -> bytes:
    """A profile object's body: strict canonical JSON of the time, the model identity and the profile."""
    return canonical_json(
        {"format": PROFILE_FORMAT, "time": utc(at).isoformat(), "model": dict(model), "profile": profile.to_dict()}
    )


def read_profile_body(body: bytes, reference: Reference | None = None) -> tuple[datetime, Profile]:
    try:
        d = json.loads(body)
        when = utc(datetime.fromisoformat(str(d["time"])))
        profile = d["profile"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ProfileError(f"profile object: {exc}") from exc
    if d.get("format") != PROFILE_FORMAT:
        raise ProfileError(f"profile object: expected format {PROFILE_FORMAT}")
    return when, Profile.from_dict(profile, reference)


def s3_client() -> Any:
    import boto3

    return boto3.client("s3")


def cloudwatch_client() -> Any:
    import boto3

    return boto3.client("cloudwatch")


def put_profile(
    s3: Any, location: Location, profile: Profile, *, model: Mapping[str, str], at: datetime, name: str | None = None
) -> str:
    """Write one profile (of one invocation and variant) under its partition; returns its key."""
    key = location.profile_key(profile.variant, at, name)
    s3.put_object(Bucket=location.bucket, Key=key, Body=profile_body(profile, model, at),
                  ContentType="application/json")  # fmt: skip
    return key


def split_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise ValueError(f"{uri!r} is not s3://bucket/key")
    return parsed.netloc, parsed.path.lstrip("/")


def read_s3_uri(uri: str, s3: Any | None = None) -> bytes:
    bucket, key = split_s3_uri(uri)
    body: bytes = (s3 or s3_client()).get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def hours(start: datetime, end: datetime) -> Iterator[datetime]:
    """The hour partitions [start, end) touches."""
    t = utc(start).replace(minute=0, second=0, microsecond=0)
    while t < utc(end):
        yield t
        t += timedelta(hours=1)


def _keys(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            yield str(obj["Key"])


def key_time(key: str) -> datetime | None:
    return parse_stamp(key.rsplit("/", 1)[-1].split("-", 1)[0])


def complete_hours(start: datetime, end: datetime) -> list[datetime]:
    """The hours [h, h + 1 h) wholly inside [start, end)."""
    return [h for h in hours(start, end) if h >= utc(start) and h + timedelta(hours=1) <= utc(end)]


@dataclass
class S3Store:
    """Profiles in and reports out for one model: `window.Store` over S3.

    With `hourly` (default), each hour wholly inside a window is read from its hourly object when there is one
    (`compaction`), else from its per-batch objects, as the hours the window only partly covers always are."""

    location: Location
    s3: Any = None
    hourly: bool = True

    def client(self) -> Any:
        if self.s3 is None:
            self.s3 = s3_client()
        return self.s3

    def variants(self) -> list[str]:
        base = self.location.model_path(PROFILES) + "/"
        pages = (
            self.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.location.bucket, Prefix=base, Delimiter="/")
        )
        names = [p["Prefix"][len(base) :].rstrip("/") for page in pages for p in page.get("CommonPrefixes", [])]
        return sorted(unquote(n.split("=", 1)[1]) for n in names if n.startswith("variant="))

    def profiles(
        self, reference: Reference, start: datetime, end: datetime
    ) -> tuple[dict[str, list[Profile]], ReadStats]:
        """Every variant's profiles timed in [start, end), read and checked against the reference."""
        stats = ReadStats()
        out: dict[str, list[Profile]] = {}
        for variant in self.variants():
            merged = self.hourly_keys(variant, complete_hours(start, end)) if self.hourly else {}
            keys = [*merged.values(), *self.batch_keys(variant, start, end, skip=set(merged))]
            found = [self._read(key, reference, start, end, stats) for key in keys]
            stats.hourly += len(merged)
            kept = [p for p in found if p is not None]
            if kept:
                out[variant] = kept
        return out, stats

    def hourly_keys(self, variant: str, wanted: Sequence[datetime]) -> dict[datetime, str]:
        """The hourly objects present among the `wanted` hours (one listing per day): hour → key."""
        out: dict[datetime, str] = {}
        for day in sorted({h.date() for h in wanted}):
            prefix = self.location.hourly_day_prefix(variant, datetime(day.year, day.month, day.day, tzinfo=UTC))
            present = set(_keys(self.client(), self.location.bucket, prefix))
            for h in wanted:
                if h.date() == day and self.location.hourly_key(variant, h) in present:
                    out[h] = self.location.hourly_key(variant, h)
        return out

    def batch_keys(
        self, variant: str, start: datetime, end: datetime, skip: Set[datetime] = frozenset()
    ) -> Iterator[str]:
        """The per-batch profile objects timed in [start, end) by their names, but those of the `skip` hours."""
        for hour in hours(start, end):
            if hour in skip:
                continue
            for key in _keys(self.client(), self.location.bucket, self.location.hour_prefix(variant, hour)):
                t = key_time(key)
                if t is not None and utc(start) <= t < utc(end):
                    yield key

    def _read(self, key: str, reference: Reference, start: datetime, end: datetime, stats: ReadStats) -> Profile | None:
        body = self.client().get_object(Bucket=self.location.bucket, Key=key)["Body"].read()
        try:
            when, profile = read_profile_body(body, reference)
        except ProfileError as exc:
            stats.skip(key, str(exc))
            return None
        if not utc(start) <= when < utc(end):
            stats.skip(key, f"its time {when.isoformat()} is outside the window")
            return None
        stats.read += 1
        return profile

    def write_report(self, end: datetime, files: Mapping[str, tuple[bytes, str]]) -> dict[str, str]:
        """Write the window's files (name → (body, content type)) under its report directory; name → s3 URI."""
        base = self.location.report_dir(end)
        out = {}
        for name, (body, content_type) in files.items():
            key = f"{base}/{name}"
            self.client().put_object(Bucket=self.location.bucket, Key=key, Body=body, ContentType=content_type)
            out[name] = f"s3://{self.location.bucket}/{key}"
        return out

    def latest_report(self, before: datetime | None = None, days: int = 2) -> str | None:
        """The newest report directory's key (within `days` before `before`), or None."""
        end = utc(before or datetime.now(UTC))
        best: str | None = None
        for back in range(days):
            day = end - timedelta(days=back)
            prefix = _join(self.location.model_path(REPORTS), f"date={day:%Y-%m-%d}")
            keys = [k for k in _keys(self.client(), self.location.bucket, prefix) if k.endswith("/" + SUMMARY_FILE)]
            if keys:
                best = max(keys)
                break
        return best.rsplit("/", 1)[0] if best else None


@dataclass
class CloudWatchSink:
    """PutMetricData in chunks; `window.MetricsSink` over CloudWatch."""

    namespace: str
    cloudwatch: Any = None

    def publish(self, data: Sequence[MetricDatum], timestamp: datetime) -> int:
        cw = self.cloudwatch = self.cloudwatch or cloudwatch_client()
        items = [{"MetricName": d.name, "Value": float(d.value), "Unit": d.unit, "Timestamp": utc(timestamp),
                  "Dimensions": [{"Name": k, "Value": v} for k, v in d.dimensions]} for d in data]  # fmt: skip
        for i in range(0, len(items), _METRICS_PER_CALL):
            cw.put_metric_data(Namespace=self.namespace, MetricData=items[i : i + _METRICS_PER_CALL])
        return len(items)
