from __future__ import annotations

import pytest

from lambda_fn.config import ConfigError, Env, settings_from

SHA = "a" * 64


def test_minimal_settings_have_safe_defaults() -> None:
    s = settings_from({Env.MODEL_URI: "s3://bucket/models/m.skops"})
    assert s.model_uri == "s3://bucket/models/m.skops"
    assert s.model_sha256 is None
    assert s.allow_unpinned_pickle is False
    assert s.output_max_attempts == 6


def test_missing_model_uri_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="MODEL_URI"):
        settings_from({})


@pytest.mark.parametrize(
    ("env", "value", "needle"),
    [
        (Env.MODEL_URI, "http://example.com/model", "MODEL_URI"),
        (Env.MODEL_URI, "s3://bucket-only", "MODEL_URI"),
        (Env.MODEL_SHA256, "abc", "MODEL_SHA256"),
        (Env.FEATURE_HOOK, "not a hook", "FEATURE_HOOK"),
        (Env.OUTPUT_MAX_ATTEMPTS, "zero", "OUTPUT_MAX_ATTEMPTS"),
        (Env.OUTPUT_MAX_ATTEMPTS, "0", "OUTPUT_MAX_ATTEMPTS"),
        (Env.ALLOW_UNPINNED_PICKLE, "maybe", "ALLOW_UNPINNED_PICKLE"),
        (Env.ALLOW_EXTERNAL_FEATURE_HOOK, "maybe", "ALLOW_EXTERNAL_FEATURE_HOOK"),
        (Env.FEATURES_FIELD, "has space", "FEATURES_FIELD"),
    ],
)
def test_malformed_values_name_the_variable(env: str, value: str, needle: str) -> None:
    environ = {Env.MODEL_URI: "s3://bucket/key.skops", env: value}
    with pytest.raises(ConfigError, match=needle):
        settings_from(environ)


def test_an_external_feature_hook_is_refused_unless_explicitly_allowed() -> None:
    assert settings_from({Env.MODEL_URI: "s3://b/k"}).allow_external_feature_hook is False
    allowed = settings_from({Env.MODEL_URI: "s3://b/k", Env.ALLOW_EXTERNAL_FEATURE_HOOK: "True"})
    assert allowed.allow_external_feature_hook is True


def test_sha_is_normalised_and_lists_are_split() -> None:
    s = settings_from({Env.MODEL_URI: "s3://b/k", Env.MODEL_SHA256: SHA.upper(), Env.MODEL_TRUSTED_TYPES: "a.B, c.D ,"})
    assert s.model_sha256 == SHA
    assert s.model_trusted_types == ("a.B", "c.D")


def test_stream_scorer_requires_both_sinks() -> None:
    s = settings_from({Env.MODEL_URI: "s3://b/k", Env.OUTPUT_STREAM_NAME: "out"})
    with pytest.raises(ConfigError, match="DLQ_URL"):
        s.require_stream_outputs()
    ok = settings_from({Env.MODEL_URI: "s3://b/k", Env.OUTPUT_STREAM_NAME: "out", Env.DLQ_URL: "https://q"})
    assert ok.require_stream_outputs() == ("out", "https://q")
