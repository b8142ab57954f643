"""Hourly profiles on moto: a long window over hourly objects equals the window over the per-batch ones, compaction
is idempotent and keeps its sources, only settled complete hours are compacted, and the monitor run does it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lambda_fn.config import monitor_settings_from
from lambda_fn.monitoring import job
from lambda_fn.monitoring.compaction import SETTLE, compact
from lambda_fn.monitoring.reference import Reference
from lambda_fn.monitoring.s3_store import Location, S3Store, put_profile
from lambda_fn.monitoring.window import Target, Windows, evaluate
from tests.helpers import handler_context
from tests.integration.conftest import monitor_bucket
from tests.monitoring_data import profiles, reference

BUCKET = "monitor-bucket"
MODEL, SHA = "tiny", "ab" * 32
IDENTITY = {"name": MODEL, "sha256": SHA, "version": "1"}
T0 = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
END = T0 + timedelta(hours=24, minutes=30)  # the long window [00:30, 24:30): two partial hours, 23 complete
WINDOWS = Windows(timedelta(minutes=15), timedelta(hours=24))


@dataclass
class World:
    s3: Any
    ref: Reference
    location: Location
    env: dict[str, str]

    def store(self, hourly: bool = True) -> S3Store:
        return S3Store(self.location, self.s3, hourly=hourly)

    def keys(self, prefix: str) -> dict[str, bytes]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
        return {k: self.s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys}


@pytest.fixture
def world(clean_env: pytest.MonkeyPatch) -> Iterator[World]:
    with monitor_bucket(clean_env, BUCKET, MODEL, SHA) as m:
        world = World(m.s3, m.reference, m.location, m.env)
        # 25 hours of traffic, a profile every 20 minutes per variant, drift on `distance` from 12:00 on.
        for variant in ("primary", "shadow"):
            for hour in range(25):
                start = T0 + timedelta(hours=hour, minutes=1)
                shift = 4.0 if hour >= 12 else 0.0
                for at, p in profiles(world.ref, start, count=3, rows=200, every=timedelta(minutes=20),
                                      distance_shift=shift, seed=1000 * hour, variant=variant):  # fmt: skip
                    put_profile(m.s3, world.location, p, model=IDENTITY, at=at)
        yield world


def _without_reads(summary: dict[str, Any]) -> dict[str, Any]:
    return {name: {k: v for k, v in w.items() if k != "profiles"} for name, w in summary["windows"].items()}


def test_a_window_over_hourly_objects_equals_the_window_over_the_batches(world: World) -> None:
    target = Target(MODEL, SHA, world.ref, "1")
    raw = evaluate(target, world.store(hourly=False), END, WINDOWS)
    stats = compact(world.store(), world.ref, target.identity(), END - WINDOWS.long, END)
    assert len(stats.written) == 2 * 23 and stats.sources == 2 * 23 * 3 and stats.skipped == 0
    compacted = evaluate(target, world.store(), END, WINDOWS)
    assert _without_reads(compacted) == _without_reads(raw)
    long_raw, long_hourly = raw["windows"]["long"]["profiles"], compacted["windows"]["long"]["profiles"]
    assert long_raw == {"read": 2 * 72, "skipped": 0, "hourly": 0, "problems": []}
    # 23 hourly objects and the 2 + 1 per-batch profiles of the partial hours (00:41, 24:01, 24:21), per variant
    assert long_hourly == {"read": 2 * (23 + 3), "skipped": 0, "hourly": 2 * 23, "problems": []}
    assert raw["windows"]["long"]["variants"]["primary"]["rows"] == 72 * 200


def test_compaction_is_idempotent_keeps_its_sources_and_waits_for_the_hour_to_settle(world: World) -> None:
    store = world.store()
    batches = world.keys("monitoring/profiles/")
    first = compact(store, world.ref, IDENTITY, T0, T0 + timedelta(hours=3) + SETTLE - timedelta(seconds=1))
    assert [k.rsplit("/", 2)[-2:] for k in first.written if "variant=primary" in k] == [
        ["date=2026-12-01", "hour=00.json"],
        ["date=2026-12-01", "hour=01.json"],
    ]  # hour 02 ended less than SETTLE before: not yet
    hourly = world.keys("monitoring/profiles-hourly/")
    again = compact(store, world.ref, IDENTITY, T0, T0 + timedelta(hours=3) + SETTLE - timedelta(seconds=1))
    assert again.written == [] and again.present == 4
    forced = compact(store, world.ref, IDENTITY, T0, T0 + timedelta(hours=3) + SETTLE - timedelta(seconds=1),
                     force=True)  # fmt: skip
    assert sorted(forced.written) == sorted(hourly) and world.keys("monitoring/profiles-hourly/") == hourly
    assert world.keys("monitoring/profiles/") == batches  # the sources are kept (the lifecycle expires them)


def test_unreadable_and_other_reference_profiles_are_not_merged(world: World) -> None:
    other = reference(seed=99)
    assert other.sha256 != world.ref.sha256
    (at, p), *_ = profiles(other, T0 + timedelta(hours=5, minutes=10), count=1)
    put_profile(world.s3, world.location, p, model=IDENTITY, at=at)
    key = world.location.profile_key("primary", T0 + timedelta(hours=6, minutes=10))
    world.s3.put_object(Bucket=BUCKET, Key=key, Body=b"{not json")
    stats = compact(world.store(), world.ref, IDENTITY, T0 + timedelta(hours=5), T0 + timedelta(hours=7) + SETTLE)
    assert (stats.skipped, stats.sources, len(stats.written)) == (2, 2 * 2 * 3, 4)


def test_the_monitor_run_compacts_its_long_window_and_reads_hourly(world: World) -> None:
    settings = monitor_settings_from(world.env)
    result = job.run(settings, END, metrics=False, s3=world.s3)
    assert result.compaction == {"written": 46, "present": 0, "sources": 138, "skipped": 0, "empty": 0}
    assert result.summary["windows"]["long"]["profiles"]["hourly"] == 46
    assert result.drifted("long")["primary"] == ["distance"]
    again = job.run(settings, END + timedelta(minutes=15), metrics=False, s3=world.s3)
    assert again.compaction is not None and again.compaction["written"] == 0
    off = job.run(monitor_settings_from({**world.env, "MONITOR_COMPACT": "false"}), END, metrics=False, s3=world.s3)
    assert off.compaction is None and off.summary["windows"]["long"]["profiles"]["hourly"] == 0
    assert _without_reads(off.summary) == _without_reads(result.summary)


def test_the_handler_answers_what_it_compacted(world: World) -> None:
    from lambda_fn import handler

    answer = handler.monitor_handler({"at": END.isoformat()}, handler_context())
    assert answer["compacted"]["written"] == 46


def test_cli_compact_backfills_hourly_objects_of_a_range(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """`servingkit monitor compact`: the complete, settled hours of [start, end), whatever MONITOR_COMPACT says."""
    from tests.helpers import run_cli

    argv = ["monitor", "compact", "--start", "2026-12-01T02:00Z", "--end", "2026-12-01T05:20Z"]
    assert run_cli(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    written = [line for line in lines if line.startswith("s3://")]
    # Hours 02, 03 and 04 (04 ended 20 minutes before the end: settled), two variants; hour 05 is not complete.
    assert len(written) == 6 and all("/profiles-hourly/" in u for u in written)
    assert {u.rsplit("/", 1)[-1] for u in written} == {"hour=02.json", "hour=03.json", "hour=04.json"}
    assert lines[-1].endswith(
        "6 written, 0 already present, 0 without profiles; 18 per-batch profiles merged, 0 skipped"
    )
    keys = world.keys("monitoring/profiles-hourly/")
    assert sorted(f"s3://{BUCKET}/{k}" for k in keys) == sorted(written)
    # Again: nothing to do; --force rewrites the same bytes.
    assert run_cli([*argv, "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["written"], again["present"], again["keys"]) == (0, 6, [])
    assert run_cli([*argv, "--force", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["written"] == 6
    assert world.keys("monitoring/profiles-hourly/") == keys
    # The job function the command calls finds them present.
    settings = monitor_settings_from(world.env)
    stats = job.compact_range(settings, T0 + timedelta(hours=2), T0 + timedelta(hours=5, minutes=20))
    assert stats.written == [] and stats.present == 6
    # An explicit compaction runs whatever MONITOR_COMPACT says (off: the scheduled runs neither write nor read them).
    off = monitor_settings_from({**world.env, "MONITOR_COMPACT": "false"})
    forced = job.compact_range(off, T0 + timedelta(hours=2), T0 + timedelta(hours=5, minutes=20), force=True)
    assert len(forced.written) == 6


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--start", "2026-12-01T05:00Z", "--end", "2026-12-01T02:00Z"], "is not before the end"),
        (["--start", "yesterday"], "is not an ISO 8601 time"),
        (["--reference-sha256", "nope"], "MONITOR_REFERENCE_SHA256"),
    ],
)
def test_cli_compact_errors_are_one_line(
    world: World, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    from tests.helpers import run_cli

    assert run_cli(["monitor", "compact", *argv]) in (1, 2)
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not world.keys("monitoring/profiles-hourly/")
