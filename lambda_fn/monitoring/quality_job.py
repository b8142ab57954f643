"""Model quality from late ground truth: captured predictions joined with labels, per model version and variant.

Pure orchestration over injected readers (`CaptureReader`: captured predictions timed in [start, end);
`LabelReader`: labels that arrived up to `end`), so the monitor function (`lambda_fn.monitoring.job` with
`s3_labels`), the CLI and the tests run the same code. A run for the window ending at `end` scores the
predictions captured in [end - delay - span, end - delay): each of them has had its full delay to be labelled,
so none is `pending`. A label counts when it arrived within `delay` of its prediction (`labels.join`); one that
arrived later is `late` (counted, not scored), a prediction without a label is `missing`, a label of no captured
prediction an `orphan` (capture samples, so most labels are).

Ids: the labels carry the record's raw id (`ID_FIELD`). When capture hashes ids (CAPTURE_ID_KEY_SECRET_ARN),
the job hashes every label's id with the same key (`sampling.hash_id`, `hash_label_ids`), so producers never
need the key; a label already hashed would not match and counts as an orphan.

Per (model version, variant) it computes MAE and RMSE (regression) or accuracy, F1 and ROC AUC (classification)
with sample counts (`labels.metrics`); per variant (all versions) the same, compared with the release's training
metrics as a degradation ratio (> 1 is worse: current / training for an error, training / current for a score);
and shadow against primary on the ids both of them scored and that are labelled. CloudWatch metrics
(`metric_data`; names in `lambda_fn.config.Metric`), per variant:

| metric | dimensions | value | count |
| --- | --- | --- | --- |
| `ModelQuality` | model, variant, metric | MAE / RMSE, or accuracy / F1 / AUC | 2 (regression) or 3 |
| `LabelledRows` | model, variant | predictions joined with a label | 1 |
| `QualityDegradation` | model, variant | the worst ratio to training (none without training metrics) | 1 |

So 4 (regression) or 5 (classification) metrics per labelled variant.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from lambda_fn.config import Metric
from lambda_fn.monitoring import labels as lab
from lambda_fn.monitoring.sampling import hash_id
from lambda_fn.monitoring.window import MetricDatum

QUALITY_FORMAT = 1
METRICS_FILE = "metrics.json"  # the release's validation metrics, in the model directory (`servingkit train`)
ERRORS = ("mae", "rmse")  # lower is better
SCORES = ("accuracy", "f1", "auc")  # higher is better
PRIMARY, SHADOW = "primary", "shadow"


@dataclass
class LabelBatch:
    """What a label read found: labels by id, unreadable lines and the objects read."""

    labels: dict[str, lab.Label] = field(default_factory=dict)
    bad_lines: int = 0
    objects: int = 0


class CaptureReader(Protocol):
    def captured(self, start: datetime, end: datetime) -> list[lab.Captured]: ...


class LabelReader(Protocol):
    def labels(self, start: datetime, end: datetime) -> LabelBatch: ...


@dataclass(frozen=True)
class QualityConfig:
    delay: timedelta = timedelta(hours=1)
    span: timedelta = timedelta(hours=1)
    task: lab.Task = "regression"
    training: Mapping[str, float] = field(default_factory=dict)  # the release's validation metrics
    threshold: float = 0.5  # classification: score at or above is the positive class
    id_key: bytes | None = None  # capture's id-hashing key: label ids are hashed with it

    def __post_init__(self) -> None:
        if self.delay < timedelta(0) or self.span <= timedelta(0):
            raise ValueError("labels: delay >= 0 and span > 0")

    def window(self, end: datetime) -> tuple[datetime, datetime]:
        """The capture window whose labels are due by `end`: [end - delay - span, end - delay)."""
        return end - self.delay - self.span, end - self.delay


def hash_label_ids(labels: Mapping[str, lab.Label], key: bytes | None) -> dict[str, lab.Label]:
    """Labels keyed by their ids as capture writes them (keyed hash when capture hashes ids)."""
    if key is None:
        return dict(labels)
    out: dict[str, lab.Label] = {}
    for rid, label in labels.items():
        hid = hash_id(rid, key)
        out[hid] = lab.Label(hid, label.value, label.arrived)
    return out


def ratio(name: str, current: float | None, training: float | None) -> float | None:
    """Degradation of one metric, > 1 worse: current / training (errors), training / current (scores)."""
    if current is None or training is None or not (math.isfinite(current) and math.isfinite(training)):
        return None
    num, den = (current, training) if name in ERRORS else (training, current)
    return num / den if den > 0 else None  # a perfect training score or a zero current one: no ratio


def degradation(current: Mapping[str, Any], training: Mapping[str, float]) -> dict[str, Any]:
    """Per metric the ratio to training, and the worst of them (`None` when nothing is comparable)."""
    ratios = {
        k: r for k in (*ERRORS, *SCORES) if k in training and (r := ratio(k, current.get(k), training[k])) is not None
    }
    return {"ratios": ratios, "worst": max(ratios.values()) if ratios else None}


def _scores(pairs: list[tuple[Any, Any]], config: QualityConfig) -> dict[str, Any]:
    p, t, bad = lab.numeric_pairs(pairs)
    if config.task == "regression":
        return {"unusable": bad, **lab.regression_metrics(p, t)}
    return {"unusable": bad, **lab.classification_metrics(p, t, config.threshold)}


def per_variant(joined: lab.Join, config: QualityConfig) -> dict[str, dict[str, Any]]:
    """Metrics per variant over every model version, with the ratio to the release's training metrics."""
    by_variant: dict[str, list[tuple[Any, Any]]] = {}
    for (_version, variant), pairs in sorted(joined.pairs.items()):
        by_variant.setdefault(variant, []).extend(pairs)
    out = {}
    for variant, pairs in sorted(by_variant.items()):
        m = _scores(pairs, config)
        out[variant] = {**m, "degradation": degradation(m, config.training)}
    return out


def _on_time(c: lab.Captured, labels: Mapping[str, lab.Label], delay: timedelta) -> bool:
    label = labels.get(c.record_id)
    return label is not None and (label.arrived is None or label.arrived <= c.time + delay)


def shadow_vs_primary(
    captured: Sequence[lab.Captured], labels: Mapping[str, lab.Label], config: QualityConfig
) -> dict[str, Any] | None:
    """Shadow and primary on the same labelled ids (joined for both): their metrics side by side, or None."""
    sides: dict[str, dict[str, lab.Captured]] = {PRIMARY: {}, SHADOW: {}}
    for c in captured:
        if c.variant in sides and _on_time(c, labels, config.delay):
            sides[c.variant][c.record_id] = c
    common = sorted(sides[PRIMARY].keys() & sides[SHADOW].keys())
    if not common:
        return None
    out: dict[str, Any] = {"n": len(common)}
    for name, side in sides.items():
        out[name] = _scores([(side[i].prediction, labels[i].value) for i in common], config)
    return out


def evaluate(
    captures: CaptureReader, label_reader: LabelReader, end: datetime, config: QualityConfig
) -> dict[str, Any]:
    """The quality section of the window ending at `end` (see the module's note); strict JSON values."""
    start, stop = config.window(end)
    captured = captures.captured(start, stop)
    batch = label_reader.labels(start, end)
    labels = hash_label_ids(batch.labels, config.id_key)
    # Labels that arrived after `end` are not counted yet (a backfill re-run sees the same labels as the run did).
    labels = {k: v for k, v in labels.items() if v.arrived is None or v.arrived <= end}
    joined = lab.join(captured, labels, delay=config.delay, now=end)
    counts = {
        "captured": len(captured),
        "joined": joined.joined,
        "late": joined.late,
        "missing": joined.missing,
        "pending": joined.pending,
        "orphans": joined.orphans,
        "label_lines_unreadable": batch.bad_lines,
        "label_objects": batch.objects,
    }
    return {
        "format": QUALITY_FORMAT,
        "task": config.task,
        "window": {"start": start.isoformat(), "end": stop.isoformat(), "labels_until": end.isoformat()},
        "delay_minutes": config.delay.total_seconds() / 60,
        "training": dict(config.training),
        "counts": counts,
        "metrics": lab.metrics(joined, config.task, config.threshold),
        "variants": per_variant(joined, config),
        "shadow_vs_primary": shadow_vs_primary(captured, labels, config),
    }


def metric_data(model_name: str, quality: Mapping[str, Any]) -> list[MetricDatum]:
    """`ModelQuality` per (model, variant, metric), `LabelledRows` and `QualityDegradation` per variant."""
    out = []
    names = ERRORS if quality["task"] == "regression" else SCORES
    for variant, v in quality["variants"].items():
        dims = ((Metric.MODEL_DIMENSION, model_name), (Metric.VARIANT_DIMENSION, variant))
        for name in names:
            if v.get(name) is not None:
                out.append(MetricDatum(Metric.MODEL_QUALITY, v[name], (*dims, (Metric.METRIC_DIMENSION, name))))
        out.append(MetricDatum(Metric.LABELLED_ROWS, v["n"], dims, "Count"))
        if v["degradation"]["worst"] is not None:
            out.append(MetricDatum(Metric.QUALITY_DEGRADATION, v["degradation"]["worst"], dims))
    return out


def report_labels(quality: Mapping[str, Any]) -> dict[str, Any]:
    """The report's `labels` section (what `report.render_html` renders): metric rows and counts."""
    return {"metrics": [dict(m) for m in quality["metrics"]], "counts": dict(quality["counts"])}


def training_metrics(items: Iterable[tuple[str, Any]]) -> dict[str, float]:
    """The comparable training metrics of a release's `metrics` (finite numbers named like ours)."""
    out = {}
    for k, v in items:
        if k in (*ERRORS, *SCORES) and isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out[k] = float(v)
    return out


def metrics_file(metrics: Mapping[str, float], rows: int) -> bytes:
    """The model directory's `metrics.json`: the validation split's metrics, canonical JSON (the digest covers it)."""
    body = {"format": 1, "split": "validation", "rows": rows, "metrics": dict(sorted(metrics.items()))}
    return (json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n").encode()


def read_metrics_file(body: bytes) -> dict[str, float]:
    """The comparable metrics of a `metrics.json` (ValueError when it is not one)."""
    d = json.loads(body)
    if not isinstance(d, dict) or not isinstance(d.get("metrics"), dict):
        raise ValueError(f"{METRICS_FILE}: expected an object with metrics")
    return training_metrics(d["metrics"].items())
