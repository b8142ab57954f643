"""The models live traffic reaches in this container: A/B variants (or the primary alone) and the shadow.

Built once from settings (`live_models_from`); `lambda_fn.stream` and the API both go through
`LiveModels.arms`, so the primary is scored on the same path as any variant.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lambda_fn.config import Metric, Settings, VariantSpec
from lambda_fn.model_store import LoadedModel
from lambda_fn.scoring import BatchResult, Hook
from lambda_fn.shadow import ShadowInput, ShadowReport, ShadowScorer, emit_shadow
from lambda_fn.sinks import Sink
from lambda_fn.variants import Arm, ModelFactory, VariantEmitter, Variants, emf_variant_emitter, ephemeral_metrics


@dataclass(slots=True)
class LiveModels:
    """A/B variants and a shadow configured for this container (each may be absent)."""

    variants: Variants | None = None
    shadow: ShadowScorer | None = None

    def arms(self, primary: ModelFactory) -> Variants:
        """The configured variants, else the primary as the one unlabelled arm."""
        return self.variants if self.variants is not None else Variants.primary(primary)


def choose(live: LiveModels, key: str | None, primary: ModelFactory) -> tuple[LoadedModel, dict[str, str]]:
    """The model for one API request and the identity to answer with (a variant's, when variants are set).

    A request is routed as a whole by `key` (its first id); without one, by a random key, so it still
    follows the weights but is not sticky."""
    return live.arms(primary).choose(key)


def after_request(
    live: LiveModels,
    features: Sequence[Any],
    predictions: Sequence[Any],
    identity: dict[str, str],
    ids: Sequence[Any] = (),
    emit: VariantEmitter = emf_variant_emitter,
    on_scored: Callable[[LoadedModel, BatchResult], None] | None = None,
) -> ShadowReport | None:
    """Per-variant metrics and the shadow for an answered request; bounded by SHADOW_TIMEOUT_MS, never raises.

    The caller has its response already: nothing here can change it."""
    if "variant" in identity:
        n = float(len(predictions))
        emit(identity["variant"], [(Metric.RECORDS_IN, "Count", n), (Metric.RECORDS_SCORED, "Count", n)])
    if live.shadow is None:
        return None
    job = ShadowInput(
        list(features), list(predictions), [True] * len(predictions), identity, ids=list(ids), on_scored=on_scored
    )
    report = live.shadow.start(job).wait()
    emf = ephemeral_metrics()
    emit_shadow(report, emf)
    emf.flush_metrics()
    return report


def settings_for(settings: Settings, uri: str, sha256: str | None) -> Settings:
    """The primary's settings pointed at another artifact; name and version come from that artifact."""
    if uri == settings.model_uri and sha256 == settings.model_sha256:
        return settings
    return settings.model_copy(
        update={"model_uri": uri, "model_sha256": sha256, "model_name": None, "model_version": None}
    )


def live_models_from(
    settings: Settings,
    load: Callable[[Settings], LoadedModel],
    shadow_sink: Sink | None = None,
    hook: Hook | None = None,
) -> LiveModels:
    """Build variants and shadow from settings; models load lazily through `load` (cached per container)."""
    variants = None
    if settings.model_variants:
        arms = []
        for spec in settings.model_variants:
            s = _variant_settings(settings, spec)
            arms.append(Arm(spec.name, spec.weight, lambda s=s: load(s)))  # type: ignore[misc]
        variants = Variants(arms)
    shadow = None
    if settings.shadow_model_uri:
        s = settings_for(settings, settings.shadow_model_uri, settings.shadow_model_sha256)
        shadow = ShadowScorer(lambda: load(s), settings.shadow_timeout_ms / 1000, shadow_sink, hook)
    return LiveModels(variants, shadow)


def _variant_settings(settings: Settings, spec: VariantSpec) -> Settings:
    if spec.uri is None:
        return settings
    return settings_for(settings, spec.uri, spec.sha256)
