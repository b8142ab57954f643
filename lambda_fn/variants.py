"""A/B variants: weighted arms, each record routed by the sha256 of its key; the primary is the one-arm case.

`MODEL_VARIANTS` sets the arms. Each record is routed by the sha256 of its id (not Python's salted
`hash()`), so an id always reaches the same arm across containers, restarts and replays while the
weights stay the same. Each arm present in a batch is scored with one `score_batch` call on its share,
and a labelled arm's name goes into the output record (`model.variant`) and into the metrics (`variant`
dimension). Without `MODEL_VARIANTS` the primary model is one unlabelled arm (`Variants.primary`): the
same code path, with outputs that carry the model's identity only.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from lambda_fn.config import Metric, metrics_namespace, service_name
from lambda_fn.model_store import LoadedModel
from lambda_fn.scoring import BatchResult, Hook, ModelBatchError, score_batch
from lambda_fn.wire import utf8

_SCALE = float(1 << 64)
PRIMARY = "primary"  # the name of the unlabelled arm (never written: it carries no `variant`)

ModelFactory = Callable[[], LoadedModel]
VariantEmitter = Callable[[str, Sequence[tuple[str, str, float]]], None]


def route_point(key: str) -> float:
    """A stable point in [0, 1) for a routing key: the first 8 bytes of its sha256 (any str, lone surrogates too)."""
    return int.from_bytes(hashlib.sha256(utf8(key)).digest()[:8], "big") / _SCALE


class TrafficSplit:
    """Maps a key to an arm index in proportion to the weights, the same way in every process."""

    def __init__(self, weights: Sequence[float]) -> None:
        if not weights or any(not (w > 0 and math.isfinite(w)) for w in weights):
            raise ValueError("weights must be positive and finite")
        total = sum(weights)
        self.bounds = [c / total for c in accumulate(weights)][:-1]

    def pick(self, key: str) -> int:
        return bisect_right(self.bounds, route_point(key)) if self.bounds else 0

    def groups(self, keys: Sequence[str]) -> dict[int, list[int]]:
        """Positions of `keys` per arm index, each list in input order."""
        out: dict[int, list[int]] = {}
        for pos, key in enumerate(keys):
            out.setdefault(self.pick(key), []).append(pos)
        return out


@dataclass(slots=True)
class Arm:
    """An arm: its name, weight and how to get its (per-container cached) model.

    `labelled` arms write their name next to the model's identity; the implicit primary arm does not."""

    name: str
    weight: float
    model: ModelFactory
    labelled: bool = True

    def identity_of(self, model: LoadedModel) -> dict[str, str]:
        """The identity outputs carry: the model's, and this arm's name when it is labelled."""
        return {**model.identity, "variant": self.name} if self.labelled else model.identity


@dataclass(slots=True)
class ArmStats:
    name: str
    rows: int = 0
    scored: int = 0
    errors: int = 0
    predict_seconds: float = 0.0
    predict_calls: int = 0


@dataclass(slots=True)
class Routed:
    """A batch scored across arms, aligned with the input like `BatchResult`."""

    result: BatchResult
    arm_of: list[int]
    identities: list[dict[str, str]]
    stats: list[ArmStats]
    # Each arm's own result: (arm index, positions in the batch, its BatchResult); what monitoring profiles per arm.
    parts: list[tuple[int, list[int], BatchResult]] = field(default_factory=list)


class Variants:
    """Weighted arms; `score` makes one `score_batch` call per arm present in the batch."""

    def __init__(self, arms: Sequence[Arm]) -> None:
        self.arms = list(arms)
        self.split = TrafficSplit([a.weight for a in self.arms])
        self.labelled = any(a.labelled for a in self.arms)

    @classmethod
    def primary(cls, model: ModelFactory) -> Variants:
        """The primary model alone: one unlabelled arm that takes every record."""
        return cls([Arm(PRIMARY, 1.0, model, labelled=False)])

    def pick(self, key: str | None) -> Arm:
        """The arm of one key; without a key, a random one (it follows the weights but is not sticky)."""
        if len(self.arms) == 1:
            return self.arms[0]
        return self.arms[self.split.pick(key or uuid.uuid4().hex)]

    def choose(self, key: str | None) -> tuple[LoadedModel, dict[str, str]]:
        """The model for one request routed whole by `key`, and the identity to answer with."""
        arm = self.pick(key)
        model = arm.model()
        return model, arm.identity_of(model)

    def score(
        self, features: Sequence[Any], keys: Sequence[str], hook: Hook | None = None, *, finite: bool = False
    ) -> Routed:
        n = len(features)
        stats = [ArmStats(a.name) for a in self.arms]
        identities: list[dict[str, str]] = [{} for _ in self.arms]
        # The primary alone takes every record: no routing keys to hash.
        groups = {0: list(range(n))} if not self.labelled else dict(sorted(self.split.groups(keys).items()))
        parts = []
        for index, positions in groups.items():
            arm = self.arms[index]
            model = arm.model()
            identities[index] = arm.identity_of(model)
            whole = len(positions) == n
            try:
                part = score_batch(features if whole else [features[p] for p in positions], model, hook, finite=finite)
            except ModelBatchError as exc:
                if not arm.labelled:
                    raise
                raise ModelBatchError(f"variant {arm.name!r}: {exc}") from exc
            s = stats[index]
            s.rows, s.errors = len(positions), len(part.errors)
            s.scored = s.rows - s.errors
            s.predict_seconds, s.predict_calls = part.predict_seconds, part.predict_calls
            parts.append((index, positions, part))
        if len(parts) == 1 and len(parts[0][1]) == n:  # one arm took the batch: its result is aligned already
            index, _, result = parts[0]
            return Routed(result, [index] * n, identities, stats, parts)
        return Routed(_merge(n, parts), _arm_of(n, parts), identities, stats, parts)


def _merge(n: int, parts: list[tuple[int, list[int], BatchResult]]) -> BatchResult:
    merged = BatchResult([None] * n, {})
    for _, positions, part in parts:
        for j, p in enumerate(positions):
            err = part.errors.get(j)
            if err is None:
                merged.predictions[p] = part.predictions[j]
            else:
                merged.errors[p] = err
        merged.predict_seconds += part.predict_seconds
        merged.predict_calls += part.predict_calls
    merged.scored = n - len(merged.errors)
    return merged


def _arm_of(n: int, parts: list[tuple[int, list[int], BatchResult]]) -> list[int]:
    arm_of = [0] * n
    for index, positions, _ in parts:
        for p in positions:
            arm_of[p] = index
    return arm_of


def ephemeral_metrics() -> Any:
    """Metrics flushed as their own EMF document, apart from the handler's (which carry no variant)."""
    from aws_lambda_powertools.metrics import EphemeralMetrics

    return EphemeralMetrics(namespace=metrics_namespace(), service=service_name())


def emf_variant_emitter(variant: str, values: Sequence[tuple[str, str, float]]) -> None:
    """Emit metrics with a `variant` dimension as their own EMF document (the handler's carry none)."""
    emf = ephemeral_metrics()
    emf.add_dimension(name=Metric.VARIANT_DIMENSION, value=variant)
    for name, unit, value in values:
        emf.add_metric(name=name, unit=unit, value=value)
    emf.flush_metrics()


def emit_variant_stats(stats: Sequence[ArmStats], emit: VariantEmitter) -> None:
    """Per-variant RecordsScored / PredictLatencyMs; a variant with no rows in the batch emits nothing."""
    for s in stats:
        if s.rows:
            emit(
                s.name,
                [
                    (Metric.RECORDS_IN, "Count", s.rows),
                    (Metric.RECORDS_SCORED, "Count", s.scored),
                    (Metric.PREDICT_LATENCY, "Milliseconds", s.predict_seconds * 1000),
                ],
            )
