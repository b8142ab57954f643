"""`servingkit demo --drift` at a reduced size on the embedded emulator: the injected features (and the prediction)
are flagged, the unchanged ones are not, the late labels give the model's quality, the report is in S3 and copied
locally, the drift alarm (evaluated in-process on the datapoints the monitor published) fires within 5 minutes of
stream time, and backfill over the stored capture re-runs the same windows with the same findings."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from servingkit.drift_demo import INJECTED, DriftOptions, run
from tests.conftest import ROOT
from tests.helpers import run_cli

UNCHANGED = ("pickup_hour", "pickup_dow")


@pytest.fixture(autouse=True)
def _no_stray_settings(clean_env: pytest.MonkeyPatch) -> None:
    return None


def test_drift_demo_flags_the_injected_features_only_and_reports(tmp_path: Path) -> None:
    opts = DriftOptions(records=4800, out_dir=tmp_path, model_dir=ROOT / "build" / "model",
                        release=ROOT / "build" / "release.json")  # fmt: skip
    result = run(opts, log=lambda line: None)

    flagged = {r["feature"]: r for r in result.drift}
    assert set(flagged) == {*INJECTED, *UNCHANGED, "prediction"}
    for name in INJECTED:
        assert flagged[name]["drifted"], flagged[name]
        assert flagged[name]["score"] > flagged[name]["threshold"]
    for name in UNCHANGED:
        assert not flagged[name]["drifted"] and flagged[name]["severity"] in ("ok", "warn"), flagged[name]
    assert flagged["prediction"]["drifted"]  # longer trips, longer predicted durations
    assert result.records == result.predicted == 4800

    primary = result.quality["variants"]["primary"]
    assert primary["n"] > 200 and primary["mae"] > 0 and primary["rmse"] >= primary["mae"]
    assert result.quality["counts"]["joined"] == primary["n"]
    assert "degradation" in primary  # the release's training metrics are compared

    summary = json.loads(Path(result.local["summary.json"]).read_text())
    assert summary["end"] == result.end.isoformat() and "quality" in summary
    assert "<svg" in Path(result.local["report.html"]).read_text()
    assert (
        result.report_uris["report.html"].startswith("s3://") and "/reports/model=" in result.report_uris["report.html"]
    )

    # Detection: before the onset no tick alarms; the alarm fires under 5 minutes of stream time after it.
    before = [t for t in result.ticks if t["end"] <= result.onset.isoformat()]
    assert before and all(t["drifted"] == [] for t in before)
    assert result.alarm_at is not None and result.delay_seconds is not None
    assert 0 < result.delay_seconds < 5 * 60
    assert result.alarm_at - result.onset == timedelta(seconds=result.delay_seconds)

    # Backfill over the stored history re-runs every scheduled window with the same findings.
    assert len(result.backfill) == len(result.ticks) - 1 >= 6
    assert [b["drifted"] for b in result.backfill] == [t["drifted"] for t in result.ticks[:-1]]
    assert result.figures()["backfill_agrees"] is True


def test_demo_cli_drift_prints_the_table_and_the_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)  # the local copy goes to ./build/drift-demo
    model = ["--model-dir", str(ROOT / "build" / "model"), "--release", str(ROOT / "build" / "release.json")]
    code = run_cli(["demo", "--drift", "--records", "3000", "--no-progress", *model])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "feature" in out and "threshold" in out and "trip_distance" in out and "report: s3://" in out
    figures = json.loads(out.strip().splitlines()[-1])
    assert set(INJECTED) <= set(figures["drifted"]) and not set(UNCHANGED) & set(figures["drifted"])
    assert figures["detection_delay_seconds"] < 300
    assert (tmp_path / "build" / "drift-demo" / "report.html").is_file()


def test_demo_drift_refuses_serve_and_image(capsys: pytest.CaptureFixture[str]) -> None:
    for flag in ("--serve", "--image"):
        assert run_cli(["demo", "--drift", flag]) == 2
        assert "--drift replays rides in stream time" in capsys.readouterr().err
