"""Hourly profiles: the monitor merges each complete hour's per-batch profiles into one object per variant.

The scorer writes one profile per invocation and variant, so a 24-hour window is one GET per scored batch (about
170,000 at one invocation a second on two shards). Each monitor run first compacts the complete hours of its
long window that have no hourly object yet: it reads the hour's per-batch profiles (as the window reader does:
the reference's, timed inside the hour) and writes their merge to
`<prefix>/profiles-hourly/model=…/sha256=…/variant=<v>/date=YYYY-MM-DD/hour=HH.json`
(`s3_store.Location.hourly_key`); the window reader then takes that object for every hour wholly inside a window.
`merge` only adds counts, so a window over hourly objects is the window over the per-batch ones.

Safe to rerun: the hourly object is a function of the hour's per-batch objects (canonical JSON, no write time),
written whole by one PUT, and the per-batch objects are never deleted here (the bucket's lifecycle expires them),
so a failed or repeated run loses nothing and a rerun writes the same bytes. An hour is compacted only once it is
`SETTLE` past its end, because a profile is filed under the time its batch was scored and may land a little
later (the capture worker's bound, a frozen container's pending write). A profile that lands later still is
in the per-batch objects but not in the hourly one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from lambda_fn.monitoring.profile import ProfileError, merge_all
from lambda_fn.monitoring.reference import Reference, canonical_json
from lambda_fn.monitoring.s3_store import PROFILE_FORMAT, S3Store, complete_hours, read_profile_body, utc

SETTLE = timedelta(minutes=15)


@dataclass
class CompactionStats:
    """What one compaction pass did."""

    written: list[str] = field(default_factory=list)  # hourly objects written
    present: int = 0  # hours already compacted
    sources: int = 0  # per-batch objects merged
    skipped: int = 0  # per-batch objects not merged (unreadable, another reference, timed outside their hour)
    empty: int = 0  # complete hours with no profile to merge (nothing written)

    def to_dict(self) -> dict[str, Any]:
        return {"written": len(self.written), "present": self.present, "sources": self.sources,
                "skipped": self.skipped, "empty": self.empty}  # fmt: skip


def hourly_body(merged: Any, model: Mapping[str, str], hour: datetime, sources: int) -> bytes:
    """A profile object (`s3_store.read_profile_body` reads it) timed at the hour's start, with its sources."""
    start = utc(hour)
    return canonical_json(
        {
            "format": PROFILE_FORMAT,
            "time": start.isoformat(),
            "model": dict(model),
            "profile": merged.to_dict(),
            "hour": {"start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat()},
            "sources": sources,
        }
    )


def compact_hour(
    store: S3Store, reference: Reference, variant: str, hour: datetime, model: Mapping[str, str]
) -> tuple[str | None, int, int]:
    """Merge one variant's hour into its hourly object: (the key written or None when empty, merged, skipped)."""
    loc, s3 = store.location, store.client()
    start, end = utc(hour), utc(hour) + timedelta(hours=1)
    profiles, skipped = [], 0
    for key in store.batch_keys(variant, start, end):
        body = s3.get_object(Bucket=loc.bucket, Key=key)["Body"].read()
        try:
            when, profile = read_profile_body(body, reference)
        except ProfileError:
            skipped += 1
            continue
        if start <= when < end:
            profiles.append(profile)
        else:
            skipped += 1
    if not profiles:
        return None, 0, skipped
    key = loc.hourly_key(variant, start)
    s3.put_object(Bucket=loc.bucket, Key=key, Body=hourly_body(merge_all(profiles), model, start, len(profiles)),
                  ContentType="application/json")  # fmt: skip
    return key, len(profiles), skipped


def compact(
    store: S3Store,
    reference: Reference,
    model: Mapping[str, str],
    start: datetime,
    end: datetime,
    *,
    settle: timedelta = SETTLE,
    force: bool = False,
) -> CompactionStats:
    """Compact every variant's complete hours in [start, end - settle) that have no hourly object (all with
    `force`, e.g. after late profiles were found)."""
    stats = CompactionStats()
    wanted = complete_hours(start, utc(end) - settle)
    for variant in store.variants():
        present = {} if force else store.hourly_keys(variant, wanted)
        stats.present += len(present)
        for hour in wanted:
            if hour in present:
                continue
            key, merged, skipped = compact_hour(store, reference, variant, hour, model)
            stats.sources += merged
            stats.skipped += skipped
            if key is None:
                stats.empty += 1
            else:
                stats.written.append(key)
    return stats
