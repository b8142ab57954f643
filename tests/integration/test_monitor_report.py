"""The monitor report rendered by a real headless browser (Debian's chromium): a non-trivial page image."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lambda_fn.monitoring.profile import Profile
from lambda_fn.monitoring.reference import Reference
from lambda_fn.monitoring.report import evaluate_window, render_html
from tests.unit.test_monitor_reference import taxi_frame


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    reason = "chromium is not installed and apt-get is not usable here"
    if shutil.which("apt-get") and os.geteuid() == 0:
        # The package lists first (a fresh container has none), as servingkit/image/engine.py does for docker.io.
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            if run.returncode != 0:
                break
        found = shutil.which("chromium")
        if found:
            return found
        reason = f"{' '.join(run.args[:2])} failed: {run.stderr.strip()[-300:]}"
    pytest.fail(f"the report's browser test needs Debian's chromium: {reason}", pytrace=False)


def _png_rows(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, raw scanlines) of a PNG, with the standard library only."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, bpp = 8, b"", 0, 0, 4
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            bpp = {2: 3, 6: 4, 0: 1, 4: 2}.get(colour, 4) * depth // 8
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = 1 + width * bpp
    return width, height, [raw[i * stride : (i + 1) * stride] for i in range(height)]


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    browser = _chromium()
    train, y = taxi_frame(20000, 1)
    ref = Reference.build(train, y, meta={"name": "taxi-ride-duration", "version": "3"})
    profiles = {}
    for variant, scale in (("primary", 1.0), ("shadow", 1.6)):
        current, yc = taxi_frame(3000, 5)
        current["trip_distance"] = current["trip_distance"] * scale
        current.loc[current.index[:5], "PU_DO"] = "<script>alert(1)</script>"
        p = Profile.new(ref, variant)
        p.add_batch(current, yc)
        profiles[variant] = [p]
    start = datetime(2026, 12, 1, 11, 0, tzinfo=UTC)
    page = tmp_path / "report.html"
    page.write_text(render_html(evaluate_window(ref, profiles, start=start, end=start + timedelta(minutes=15))))
    shot = tmp_path / "report.png"
    run = subprocess.run(
        [
            browser,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            f"--screenshot={shot}",
            "--window-size=1200,2000",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.exists(), run.stderr[-2000:]
    data = shot.read_bytes()
    width, height, rows = _png_rows(data)
    print(f"\nreport screenshot: {width}x{height}, {len(data)} bytes, {len(set(rows))} distinct scanlines")
    assert (width, height) == (1200, 2000)
    assert len(data) > 30_000  # text, tables and histograms, not a blank page
    assert len(set(rows)) > 200  # not all one colour: many different scanlines
