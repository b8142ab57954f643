"""One monitor window: its JSON summary and a self-contained HTML report (inline CSS and SVG; no script, no network).

`evaluate_window` merges each variant's profiles and computes drift and quality; `summary` is plain JSON data
(strict: no NaN) from which `render_html` draws the page, so a stored summary can be re-rendered (backfill).
Every string that comes from data (feature names, categories, variant and model names) is HTML-escaped.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from lambda_fn.monitoring.drift import DEFAULT_THRESHOLDS, Thresholds, profile_drift, shares
from lambda_fn.monitoring.profile import FeatureCounts, Profile, merge_all
from lambda_fn.monitoring.quality import DEFAULT_QUALITY, QualityThresholds, check_quality
from lambda_fn.monitoring.reference import Reference

SUMMARY_FORMAT = 1
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"  # no script, no network


def evaluate_window(
    reference: Reference,
    profiles: Mapping[str, Sequence[Profile]],
    *,
    start: datetime,
    end: datetime,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    quality: QualityThresholds = DEFAULT_QUALITY,
    label_metrics: Sequence[Mapping[str, Any]] = (),
    labels: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The JSON summary of one window: per variant, merged counts, drift (ranked) and quality violations."""
    variants: dict[str, Any] = {}
    for variant, group in sorted(profiles.items()):
        merged = merge_all(list(group))
        drift = profile_drift(reference, merged, thresholds=thresholds)
        violations = check_quality(reference, merged, quality)
        feats = []
        for ref in (*reference.features, reference.prediction):
            c: FeatureCounts = merged.prediction if ref is reference.prediction else merged.features[ref.name]
            feats.append({
                "feature": ref.name,
                "kind": ref.kind,
                "labels": [*ref.bin_labels(), "(missing)"],
                "reference": [float(x) for x in shares(np.append(np.array(ref.counts, float), ref.missing))],
                "current": [float(x) for x in shares(np.append(c.bins.astype(float), c.missing))],
            })  # fmt: skip
        variants[variant] = {
            "rows": merged.rows,
            "batches": merged.batches,
            "drift": [d.to_dict() for d in drift],
            "quality": [v.to_dict() for v in violations],
            "histograms": feats,
        }
    severities = [d["severity"] for v in variants.values() for d in v["drift"]]
    status = "alert" if "alert" in severities else "warn" if "warn" in severities else "ok"
    if any(v["quality"] for v in variants.values()) and status == "ok":
        status = "warn"
    summary: dict[str, Any] = _finite({
        "format": SUMMARY_FORMAT,
        "window": {"start": start.isoformat(), "end": end.isoformat()},
        "reference_sha256": reference.sha256,
        "model": dict(reference.meta),
        "status": status,
        "thresholds": {"drift": thresholds.to_dict(), "quality": quality.to_dict()},
        "variants": variants,
        "labels": {"metrics": [dict(m) for m in label_metrics], "counts": dict(labels or {})},
    })  # fmt: skip
    return summary


def _finite(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


def summary_json(summary: Mapping[str, Any]) -> bytes:
    return json.dumps(summary, sort_keys=True, indent=1, allow_nan=False, ensure_ascii=False).encode()


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(x: Any, digits: int = 3) -> str:
    return "&ndash;" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else _e(x)


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d232b;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #dde2e8}
h3{font-size:15px;margin:16px 0 4px}.meta{color:#58636f}
table{border-collapse:collapse;margin:6px 0 12px}td,th{padding:3px 10px;border-bottom:1px solid #eceff3;text-align:left}
th{background:#f4f6f8}td.n{text-align:right;font-variant-numeric:tabular-nums}
.s{display:inline-block;padding:1px 8px;border-radius:9px;font-weight:600;font-size:12px}
.alert{background:#fde2e1;color:#a1110a}.warn{background:#fff1cc;color:#7a5200}.ok{background:#def5e5;color:#136c2e}
.insufficient{background:#eceff3;color:#58636f}
.grid{display:flex;flex-wrap:wrap;gap:16px}.card{border:1px solid #dde2e8;border-radius:6px;padding:8px 12px}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}
"""


def _histogram(h: Mapping[str, Any], width: int = 520, height: int = 170) -> str:
    labels, ref, cur = list(h["labels"]), list(h["reference"]), list(h["current"])
    n = max(1, len(labels))
    top = max([*ref, *cur, 1e-9])
    plot_h = height - 50
    slot = (width - 40) / n
    bar = max(1.0, slot / 2 - 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{_e(h["feature"])}: reference vs current">',
             f'<line x1="30" y1="{plot_h + 10}" x2="{width - 10}" y2="{plot_h + 10}" stroke="#9aa4ae"/>']  # fmt: skip
    for i, (label, r, c) in enumerate(zip(labels, ref, cur, strict=True)):
        x = 30 + i * slot
        for j, (v, colour) in enumerate(((r or 0.0, "#8aa0b8"), (c or 0.0, "#e0782b"))):
            bh = plot_h * v / top
            parts.append(f'<rect x="{x + j * bar:.1f}" y="{plot_h + 10 - bh:.1f}" width="{bar:.1f}" height="{bh:.1f}" '
                         f'fill="{colour}"><title>{_e(label)}: {"reference" if j == 0 else "current"} '
                         f"{v:.1%}</title></rect>")  # fmt: skip
        text = str(label)
        text = text if len(text) <= 12 else text[:11] + "…"
        parts.append(f'<text x="{x + slot / 2:.1f}" y="{plot_h + 24}" font-size="9" text-anchor="end" '
                     f'transform="rotate(-35 {x + slot / 2:.1f} {plot_h + 24})">{_e(text)}</text>')  # fmt: skip
    parts.append(f'<text x="30" y="12" font-size="10" fill="#58636f">max {top:.1%}</text></svg>')
    return "".join(parts)


def render_html(summary: Mapping[str, Any]) -> str:
    """The report of one window's summary: a single HTML file with no scripts and no external resources."""
    w = summary["window"]
    model = summary.get("model") or {}
    out = [
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        f"<title>Monitor report {_e(w['start'])} &ndash; {_e(w['end'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>Prediction monitor <span class=\"s {_e(summary['status'])}\">{_e(summary['status'])}</span></h1>",
        f'<p class="meta">window {_e(w["start"])} &ndash; {_e(w["end"])} · reference sha256 '
        f"<code>{_e(summary['reference_sha256'][:16])}…</code>"
        + "".join(f" · {_e(k)} {_e(v)}" for k, v in sorted(model.items())) + "</p>",
    ]  # fmt: skip
    variants = summary["variants"]
    out.append("<h2>Variants</h2><table><tr><th>variant</th><th>rows</th><th>batches</th><th>alerts</th>"
               "<th>warnings</th><th>quality violations</th></tr>")  # fmt: skip
    for name, v in variants.items():
        sev = [d["severity"] for d in v["drift"]]
        out.append(f"<tr><td>{_e(name)}</td><td class=n>{v['rows']}</td><td class=n>{v['batches']}</td>"
                   f"<td class=n>{sev.count('alert')}</td><td class=n>{sev.count('warn')}</td>"
                   f"<td class=n>{len(v['quality'])}</td></tr>")  # fmt: skip
    out.append("</table>")
    th = summary["thresholds"]["drift"]
    out.append(f"<h2>Drift, most severe first</h2><p class=meta>PSI warn {th['psi'][0]} / alert {th['psi'][1]}; "
               f"Jensen-Shannon distance warn {th['js'][0]} / alert {th['js'][1]}; "
               f"fewer than {th['min_rows']} rows: insufficient data.</p><div class=grid>")  # fmt: skip
    for name, v in variants.items():
        out.append(f'<div class=card><h3>{_e(name)}</h3><table><tr><th>feature</th><th>severity</th><th>PSI</th>'
                   "<th>JS</th><th>KS</th><th>W1/&sigma;</th></tr>")  # fmt: skip
        for d in v["drift"]:
            out.append(f"<tr><td>{_e(d['feature'])}</td><td><span class=\"s {_e(d['severity'])}\">"
                       f"{_e(d['severity'])}</span></td><td class=n>{_num(d['psi'])}</td>"
                       f"<td class=n>{_num(d['js'])}</td>"
                       f"<td class=n>{_num(d['ks'])}</td><td class=n>{_num(d['wasserstein'])}</td></tr>")  # fmt: skip
        out.append("</table></div>")
    out.append("</div><h2>Data quality</h2>")
    for name, v in variants.items():
        out.append(f"<h3>{_e(name)}</h3>")
        if not v["quality"]:
            out.append("<p>No violations.</p>")
            continue
        out.append("<table><tr><th>feature</th><th>check</th><th>observed</th><th>expected</th><th>threshold</th>"
                   "<th>detail</th></tr>")  # fmt: skip
        for q in v["quality"]:
            out.append(f"<tr><td>{_e(q['feature'])}</td><td>{_e(q['check'])}</td><td class=n>{_num(q['observed'], 4)}"
                       f"</td><td class=n>{_num(q['expected'], 4)}</td><td class=n>{_num(q['threshold'], 4)}</td>"
                       f"<td>{_e(q['detail'])}</td></tr>")  # fmt: skip
        out.append("</table>")
    labels = summary.get("labels") or {}
    out.append("<h2>Model quality from labels</h2>")
    if labels.get("metrics"):
        keys = sorted({k for m in labels["metrics"] for k in m} - {"model_version", "variant"})
        out.append("<table><tr><th>model version</th><th>variant</th>" + "".join(f"<th>{_e(k)}</th>" for k in keys)
                   + "</tr>")  # fmt: skip
        for m in labels["metrics"]:
            out.append(f"<tr><td>{_e(m.get('model_version'))}</td><td>{_e(m.get('variant'))}</td>"
                       + "".join(f"<td class=n>{_num(m.get(k))}</td>" for k in keys) + "</tr>")  # fmt: skip
        out.append("</table>")
    else:
        out.append("<p>No labels joined in this window.</p>")
    if labels.get("counts"):
        out.append("<p class=meta>" + " · ".join(f"{_e(k)} {_e(v)}" for k, v in sorted(labels["counts"].items()))
                   + "</p>")  # fmt: skip
    out.append('<h2>Reference vs current</h2><p class="legend"><span style="background:#8aa0b8"></span>reference'
               '<span style="background:#e0782b"></span>current (share of rows per bin)</p>')  # fmt: skip
    names = [h["feature"] for h in next(iter(variants.values()))["histograms"]] if variants else []
    for i, feature in enumerate(names):
        out.append(f"<h3>{_e(feature)}</h3><div class=grid>")
        for name, v in variants.items():
            out.append(f"<div class=card><div class=meta>{_e(name)}</div>{_histogram(v['histograms'][i])}</div>")
        out.append("</div>")
    out.append("</body></html>")
    return "\n".join(out)
