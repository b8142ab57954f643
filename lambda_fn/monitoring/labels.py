"""Late ground truth: labels keyed by record id, joined with captured predictions over a delay window, and metrics.

A label counts for a prediction when it arrives within `delay` of the prediction's time. Each captured
prediction ends in one of: `joined`; `late` (its label arrived after the window: counted, not scored);
`missing` (the window has passed with no label); `pending` (no label yet, the window still open: not counted
against anyone). Labels with no captured prediction are `orphans` (capture samples, so most labels are).

Labels are read from the kit's own lines `{"id": ..., "label": ..., "time": ...}` or from SageMaker's
ground-truth JSON lines: `{"groundTruthData": {"data": "1", "encoding": "CSV"}, "eventMetadata":
{"eventId": "<inferenceId>"}, "eventVersion": "0"}` (CSV: the first field; JSON: the value, or its "label").

Metrics per (model version, variant), with sample counts: regression MAE and RMSE; binary classification
accuracy and F1 at `threshold` and ROC AUC (rank statistic, ties averaged; numpy only).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np

Task = Literal["regression", "classification"]


class LabelError(ValueError):
    """A label line that cannot be read."""


@dataclass(frozen=True)
class Label:
    record_id: str
    value: Any
    arrived: datetime | None = None  # None: treated as on time


@dataclass(frozen=True)
class Captured:
    """One captured prediction, as the join needs it."""

    record_id: str
    prediction: Any
    time: datetime
    model_version: str
    variant: str

    @classmethod
    def from_record(cls, d: Mapping[str, Any]) -> Captured:
        """From a capture record (`lambda_fn.monitoring.capture`)."""
        meta = d["eventMetadata"]
        when = datetime.fromisoformat(str(meta["inferenceTime"]).replace("Z", "+00:00"))
        return cls(str(meta["inferenceId"]), d["captureData"]["endpointOutput"]["data"], when,
                   str(d["model"]["version"]), str(d["variant"]))  # fmt: skip


def parse_label_line(line: str | bytes, arrived: datetime | None = None) -> Label:
    """One label line, in the kit's form or SageMaker's ground-truth form."""
    try:
        d = json.loads(line)
    except ValueError as exc:
        raise LabelError(f"not JSON: {exc}") from exc
    return label_from_object(d, arrived)


def parse_time(text: Any) -> datetime:
    """An ISO 8601 time (a trailing Z allowed); LabelError otherwise."""
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError as exc:
        raise LabelError(f"time {str(text)[:64]!r} is not ISO 8601") from exc


def label_from_object(d: Any, arrived: datetime | None = None) -> Label:
    """One decoded label (a JSON object), in the kit's form or SageMaker's ground-truth form."""
    if not isinstance(d, dict):
        raise LabelError("a label line is a JSON object")
    if "groundTruthData" in d:
        try:
            gt, rid = d["groundTruthData"], str(d["eventMetadata"]["eventId"])
            data, encoding = gt["data"], str(gt.get("encoding", "CSV")).upper()
        except (KeyError, TypeError) as exc:
            raise LabelError(f"ground truth without {exc}") from exc
        if encoding == "CSV":
            value: Any = _scalar(str(data).split(",")[0].strip())
        elif encoding == "JSON":
            try:
                value = json.loads(data) if isinstance(data, str) else data
            except ValueError as exc:
                raise LabelError(f"ground truth data is not JSON: {exc}") from exc
            if isinstance(value, dict):
                value = value.get("label", next(iter(value.values()), None))
        else:
            raise LabelError(f"ground truth encoding {encoding!r} is not CSV or JSON")
        return Label(rid, value, arrived)
    if "id" not in d or "label" not in d:
        raise LabelError("a label line has id and label (or is SageMaker ground truth)")
    when = parse_time(d["time"]) if d.get("time") else arrived
    return Label(str(d["id"]), d["label"], when)


def _scalar(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def read_labels(lines: Iterable[str | bytes], arrived: datetime | None = None) -> tuple[dict[str, Label], int]:
    """(labels by id — the first arrival of an id wins —, number of unreadable lines)."""
    out: dict[str, Label] = {}
    bad = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            label = parse_label_line(line, arrived)
        except LabelError:
            bad += 1
            continue
        prev = out.get(label.record_id)
        if prev is None or (label.arrived and prev.arrived and label.arrived < prev.arrived):
            out[label.record_id] = label
    return out, bad


@dataclass
class Join:
    pairs: dict[tuple[str, str], list[tuple[Any, Any]]] = field(
        default_factory=dict
    )  # (version, variant) → (pred, label)
    late: int = 0
    missing: int = 0
    pending: int = 0
    orphans: int = 0

    @property
    def joined(self) -> int:
        return sum(len(v) for v in self.pairs.values())


def join(captured: Iterable[Captured], labels: Mapping[str, Label], *, delay: timedelta, now: datetime) -> Join:
    """Captured predictions joined with their labels over the delay window (see the module's note)."""
    out = Join()
    seen: set[str] = set()
    for c in captured:
        seen.add(c.record_id)
        label = labels.get(c.record_id)
        deadline = c.time + delay
        if label is None:
            if now >= deadline:
                out.missing += 1
            else:
                out.pending += 1
        elif label.arrived is not None and label.arrived > deadline:
            out.late += 1
        else:
            out.pairs.setdefault((c.model_version, c.variant), []).append((c.prediction, label.value))
    out.orphans = sum(1 for rid in labels if rid not in seen)
    return out


def regression_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float | int | None]:
    err = np.asarray(pred, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    if len(err) == 0:
        return {"n": 0, "mae": None, "rmse": None}
    return {"n": len(err), "mae": float(np.mean(np.abs(err))), "rmse": float(math.sqrt(np.mean(err**2)))}


def auc(scores: np.ndarray, truth: np.ndarray) -> float | None:
    """ROC AUC from ranks (Mann-Whitney U; ties get their average rank); None without both classes."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(truth).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0  # 1-based average rank of each run of ties
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(
    pred: np.ndarray, truth: np.ndarray, threshold: float = 0.5
) -> dict[str, float | int | None]:
    """Binary: `pred` are scores (probability of the positive class) or 0/1 classes; `truth` 0/1 (or bools)."""
    s = np.asarray(pred, dtype=np.float64)
    y = np.asarray(truth, dtype=np.float64) >= 0.5
    if len(s) == 0:
        return {"n": 0, "accuracy": None, "f1": None, "auc": None}
    yhat = s >= threshold
    tp = int((yhat & y).sum())
    fp = int((yhat & ~y).sum())
    fn = int((~yhat & y).sum())
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else None
    return {"n": len(s), "accuracy": float((yhat == y).mean()), "f1": f1, "auc": auc(s, y)}


def numeric_pairs(pairs: list[tuple[Any, Any]]) -> tuple[np.ndarray, np.ndarray, int]:
    p, t, bad = [], [], 0
    for a, b in pairs:
        try:
            x, y = float(a), float(b)
        except (TypeError, ValueError):
            bad += 1
            continue
        if math.isfinite(x) and math.isfinite(y):
            p.append(x)
            t.append(y)
        else:
            bad += 1
    return np.array(p), np.array(t), bad


def metrics(j: Join, task: Task, threshold: float = 0.5) -> list[dict[str, Any]]:
    """One row per (model version, variant): the metrics with their sample count, sorted by version and variant."""
    rows = []
    for (version, variant), pairs in sorted(j.pairs.items()):
        p, t, bad = numeric_pairs(pairs)
        m = regression_metrics(p, t) if task == "regression" else classification_metrics(p, t, threshold)
        rows.append({"model_version": version, "variant": variant, "unusable": bad, **m})
    return rows
