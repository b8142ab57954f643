"""The window summary (strict JSON) and the self-contained HTML report: content and escaping."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from lambda_fn.monitoring.profile import Profile
from lambda_fn.monitoring.reference import Reference
from lambda_fn.monitoring.report import evaluate_window, render_html, summary_json

HOSTILE = '<script>alert("x")</script>'
START = datetime(2026, 12, 1, 11, 0, tzinfo=UTC)


def window(hostile: bool = True) -> dict[str, object]:
    rng = np.random.default_rng(0)
    n = 3000
    zones = np.array(["a", "b", "c", HOSTILE if hostile else "d"])
    train = pd.DataFrame({"zone": zones[rng.integers(0, 4, n)], "km": rng.gamma(2.0, 2.0, n),
                          f"{HOSTILE if hostile else 'x'} col": rng.integers(0, 5, n)})  # fmt: skip
    ref = Reference.build(train, train["km"] * 3, meta={"name": "<b>model</b>", "version": "3"})
    profiles: dict[str, list[Profile]] = {}
    for variant, scale in (("primary", 1.0), ("shadow<i>", 1.8)):
        group = []
        for _ in range(3):
            p = Profile.new(ref, variant)
            cur = train.sample(1000, random_state=int(rng.integers(1 << 30))).reset_index(drop=True)
            cur["km"] = cur["km"] * scale
            p.add_batch(cur, cur["km"] * 3)
            group.append(p)
        profiles[variant] = group
    metrics = [{"model_version": "3", "variant": "primary", "n": 120, "mae": 1.5, "rmse": 2.25}]
    return evaluate_window(ref, profiles, start=START, end=START + timedelta(minutes=15), label_metrics=metrics,
                           labels={"late": 3, "missing": 7})  # fmt: skip


def test_summary_is_strict_json_with_ranked_drift_per_variant() -> None:
    s = window()
    back = json.loads(summary_json(s))
    assert back == s and back["status"] == "alert"
    assert set(back["variants"]) == {"primary", "shadow<i>"}
    shadow = back["variants"]["shadow<i>"]
    assert shadow["rows"] == 3000 and shadow["batches"] == 3
    assert [d["feature"] for d in shadow["drift"]][:2] in (["km", "prediction"], ["prediction", "km"])
    assert shadow["drift"][0]["severity"] == "alert"
    assert all(d["severity"] == "ok" for d in back["variants"]["primary"]["drift"])
    h = shadow["histograms"][0]
    assert len(h["labels"]) == len(h["reference"]) == len(h["current"])
    assert abs(sum(h["reference"]) - 1) < 1e-9


def test_report_escapes_every_data_string_and_has_no_script_or_network() -> None:
    page = render_html(window())
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page  # category in SVG titles and labels, column name
    assert "&lt;b&gt;model&lt;/b&gt;" in page and "shadow&lt;i&gt;" in page
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page)
    assert "http://www.w3.org/2000/svg" in page  # the SVG namespace only
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_report_shows_the_window() -> None:
    page = render_html(window(hostile=False))
    for text in ("Drift, most severe first", "Data quality", "Model quality from labels", "Reference vs current",
                 "primary", "shadow&lt;i&gt;", "PSI warn 0.1 / alert 0.25", "mae", "late 3", "missing 7"):  # fmt: skip
        assert text in page, text
    assert page.count("<svg") == 2 * 4  # 3 features + the prediction, per variant
    assert page.count('class="s alert"') >= 2
