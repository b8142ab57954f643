"""`servingkit bench monitor`: the monitor's run time and memory on 1,000,000 captured rows, and its false positives.

**Run time.** `rows` demo rides (the demo model's columns, `servingkit.taxi`) are profiled in batches of
`profile_rows` as the scorer writes them (one profile object each: 2,000 of 500 rows for 1,000,000, one a second),
against a training reference of `reference_rows`. Three runs, interleaved (servingkit.bench.measure: CPU beside
wall, min and median): the monitor's whole window job (`window.run_window` over a store that holds the objects'
bytes: each window's objects parsed, merged, drift and data quality for the short and the long window, the JSON
summary and both HTML reports rendered; everything the function does but the S3 GETs and PUTs), the long window's
work alone (parse, merge, drift, quality), and that from profiles already in memory. The peak memory of the window
job is measured once more on its own under `tracemalloc` (which slows what it traces, so not timed).

**False positives.** Per seed, `fp_rows` training rides and `fp_rows` serving rides from one draw (the same
distribution, the minimum window): how often drift alerts or warns, and how often a data-quality check fires.
"""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

from servingkit.bench.measure import interleave, machine
from servingkit.taxi import model_frame


def false_positives(seeds: int = 200, rows: int | None = None) -> dict[str, Any]:
    """Drift and quality on same-distribution traffic, `rows` vs `rows` (default the minimum window) per seed."""
    from lambda_fn.monitoring.drift import MIN_ROWS, profile_drift
    from lambda_fn.monitoring.profile import Profile
    from lambda_fn.monitoring.quality import check_quality
    from lambda_fn.monitoring.reference import Reference

    n = rows or MIN_ROWS
    alerts = warns = violations = 0
    worst = 0.0
    for seed in range(seeds):
        frame, y = model_frame(2 * n, 50_000 + seed)
        ref = Reference.build(frame.iloc[:n], y[:n])
        p = Profile.new(ref)
        for i in range(n, 2 * n, 500):
            p.add_batch(frame.iloc[i : min(i + 500, 2 * n)], y[i : min(i + 500, 2 * n)])
        drift = profile_drift(ref, p)
        severities = {d.severity for d in drift}
        alerts += "alert" in severities
        warns += "warn" in severities
        violations += bool(check_quality(ref, p))
        worst = max(worst, *(d.psi or 0.0 for d in drift))
    return {"seeds": seeds, "rows": n, "alert_rate": alerts / seeds, "warn_rate": warns / seeds,
            "quality_violation_rate": violations / seeds, "worst_psi": round(worst, 4)}  # fmt: skip


T0 = datetime(2026, 12, 1, tzinfo=UTC)  # the first profile's time (one a second after it)


def _stored_profiles(
    rows: int, profile_rows: int, reference_rows: int, seed: int
) -> tuple[Any, list[tuple[datetime, bytes]]]:
    """The reference and `rows` / `profile_rows` profile objects as the scorer stores them (s3_store.profile_body)."""
    from lambda_fn.monitoring.profile import Profile
    from lambda_fn.monitoring.reference import Reference
    from lambda_fn.monitoring.s3_store import profile_body

    frame, y = model_frame(reference_rows, seed)
    ref = Reference.build(frame, y)
    serving, truth = model_frame(rows, seed + 1)
    model = {"name": "taxi-ride-duration", "version": "1", "sha256": "0" * 64}
    bodies = []
    for k, i in enumerate(range(0, rows, profile_rows)):
        p = Profile.new(ref)
        p.add_batch(serving.iloc[i : i + profile_rows], truth[i : i + profile_rows])
        at = T0 + timedelta(seconds=k)
        bodies.append((at, profile_body(p, model, at)))
    return ref, bodies


class _StoredBytes:
    """`window.Store` over profile objects' bytes (as S3 holds them): each read parses what the window selects."""

    def __init__(self, bodies: list[tuple[datetime, bytes]]) -> None:
        self.bodies = bodies
        self.reports: dict[str, int] = {}

    def profiles(self, reference: Any, start: datetime, end: datetime) -> tuple[dict[str, list[Any]], Any]:
        from lambda_fn.monitoring.s3_store import read_profile_body
        from lambda_fn.monitoring.window import ReadStats

        out: dict[str, list[Any]] = {}
        for at, body in self.bodies:
            if start <= at < end:
                profile = read_profile_body(body, reference)[1]
                out.setdefault(profile.variant, []).append(profile)
        return out, ReadStats(read=sum(len(v) for v in out.values()))

    def write_report(self, end: datetime, files: Any) -> dict[str, str]:
        self.reports = {name: len(body) for name, (body, _) in files.items()}
        return {name: f"mem://{name}" for name in files}


def run(
    rows: int = 1_000_000,
    profile_rows: int = 500,
    repeats: int = 5,
    seeds: int = 200,
    reference_rows: int = 48_000,
    seed: int = 7,
) -> dict[str, Any]:
    """Every figure of the module's docstring (run times in ms, memory in MB)."""
    from lambda_fn.monitoring.drift import profile_drift
    from lambda_fn.monitoring.profile import merge_all
    from lambda_fn.monitoring.quality import check_quality
    from lambda_fn.monitoring.s3_store import read_profile_body
    from lambda_fn.monitoring.window import Target, run_window

    ref, bodies = _stored_profiles(rows, profile_rows, reference_rows, seed)
    parsed = [read_profile_body(b, ref)[1] for _, b in bodies]
    checked: dict[str, Any] = {}
    store = _StoredBytes(bodies)
    target = Target("taxi-ride-duration", "0" * 64, ref, "1")
    at = bodies[-1][0] + timedelta(minutes=1)  # the long window (24 h) holds every object, the short one 15 min

    def window(profiles: list[Any]) -> None:
        merged = merge_all(profiles)
        checked["rows"], checked["drift"] = merged.rows, profile_drift(ref, merged)
        checked["violations"] = check_quality(ref, merged)

    def from_stored() -> None:
        window([read_profile_body(b, ref)[1] for _, b in bodies])

    def window_job() -> None:
        checked["job"] = run_window(target, store, at)

    runs = {"window_job": window_job, "from_stored": from_stored, "in_memory": lambda: window(parsed)}
    series = interleave(runs, repeats)
    assert checked["rows"] == rows, (checked["rows"], rows)  # every row merged
    long_rows = checked["job"].summary["windows"]["long"]["variants"]["primary"]["rows"]
    assert long_rows == rows, (long_rows, rows)
    tracemalloc.start()
    window_job()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "rows": rows,
        "profiles": len(bodies),
        "profile_rows": profile_rows,
        "stored_bytes": sum(len(b) for _, b in bodies),
        "window_job": series["window_job"].summary(),
        "report_bytes": dict(store.reports),
        "from_stored": series["from_stored"].summary(),
        "in_memory": series["in_memory"].summary(),
        "peak_traced_mb": round(peak / 2**20, 1),
        "drifted": [d.feature for d in checked["drift"] if d.severity == "alert"],
        "false_positives": false_positives(seeds),
        "machine": machine(),
    }


def table(figures: dict[str, Any]) -> str:
    """The figures as the lines `servingkit bench monitor` prints before its JSON."""
    j, s, m, fp = figures["window_job"], figures["from_stored"], figures["in_memory"], figures["false_positives"]
    return "\n".join([
        f"monitor over {figures['rows']:,} captured rows ({figures['profiles']:,} profiles of "
        f"{figures['profile_rows']} rows, {figures['stored_bytes'] / 2**20:.1f} MB of JSON), "
        f"{s['repeats']} interleaved rounds, ms:",
        f"  window job (2 windows, summary, 2 HTML reports)  CPU min {j['cpu_min']:.1f} median {j['cpu_median']:.1f}   "
        f"wall min {j['wall_min']:.1f} median {j['wall_median']:.1f}",
        f"  long window: parse + merge + drift + quality   CPU min {s['cpu_min']:.1f} median {s['cpu_median']:.1f}   "
        f"wall min {s['wall_min']:.1f} median {s['wall_median']:.1f}",
        f"  long window: merge + drift + quality (memory)  CPU min {m['cpu_min']:.1f} median {m['cpu_median']:.1f}   "
        f"wall min {m['wall_min']:.1f} median {m['wall_median']:.1f}",
        f"  peak traced memory of the window job: {figures['peak_traced_mb']} MB",
        f"false positives, same distribution, {fp['rows']:,} vs {fp['rows']:,} rows, {fp['seeds']} seeds: drift "
        f"alert rate {fp['alert_rate']:.3f}, warn rate {fp['warn_rate']:.3f}, quality-violation rate "
        f"{fp['quality_violation_rate']:.3f}, worst PSI {fp['worst_psi']:.3f}",
        f"load average {figures['machine']['load_average']}",
    ])  # fmt: skip
