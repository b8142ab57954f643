"""Shadow and A/B scoring through the stream handler on moto: primary output unchanged, nothing lost."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from lambda_fn import handler, runtime
from lambda_fn.model_store import artifact_sha256
from lambda_fn.variants import TrafficSplit
from tests.helpers import FakeContext, kinesis_event, tiny_frame, tiny_pipeline, tiny_row
from tests.integration.conftest import Aws

SHADOW_STREAM = "shadow-predictions"


@pytest.fixture(scope="module")
def challenger_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    x, y = tiny_frame()
    import mlflow.sklearn
    from mlflow.models import infer_signature

    model = tiny_pipeline().fit(x, y + 2.0)  # predicts exactly 2 more than the champion
    path = tmp_path_factory.mktemp("challenger") / "model"
    mlflow.sklearn.save_model(
        model,
        str(path),
        signature=infer_signature(x.head(20), model.predict(x.head(20))),
        serialization_format="skops",
        pip_requirements=["scikit-learn", "skops"],  # skips MLflow's slow requirement inference
        metadata={"name": "tiny"},
    )
    return path


def _expected(model_dir: Path, rows: list[dict[str, Any]]) -> list[float]:
    import skops.io as sio

    path = model_dir / "model.skops"
    model = sio.load(str(path), trusted=sio.get_untrusted_types(file=str(path)))
    return [float(v) for v in model.predict(pd.DataFrame(rows))]


def _records(aws: Aws, stream: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for shard in aws.kinesis.list_shards(StreamName=stream)["Shards"]:
        it = aws.kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        out.extend(json.loads(r["Data"]) for r in aws.kinesis.get_records(ShardIterator=it, Limit=10_000)["Records"])
    return out


def _event(n: int, poison_every: int = 9) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    payloads: list[Any] = []
    good: list[dict[str, Any]] = []
    for i in range(n):
        if i % poison_every == 4:
            payloads.append({"id": f"bad{i}", "features": {"zone": "a", "distance": "far", "hour": 1}})
        else:
            payloads.append({"id": f"r{i}", "features": tiny_row(i)})
            good.append(tiny_row(i))
    return kinesis_event(payloads), good


@contextmanager
def _logs() -> Iterator[list[dict[str, Any]]]:
    """Powertools' handler holds the stdout of import time; collect its formatted records directly."""
    collected: list[dict[str, Any]] = []
    collect = logging.Handler()
    collect.emit = lambda record: collected.append(  # type: ignore[method-assign]
        json.loads(handler.logger.registered_formatter.format(record))
    )
    handler.logger._logger.addHandler(collect)
    try:
        yield collected
    finally:
        handler.logger._logger.removeHandler(collect)


def _emf(text: str) -> list[dict[str, Any]]:
    """The EMF documents printed to stdout (one JSON object per line with an `_aws` key)."""
    docs = []
    for line in text.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            doc = json.loads(line)
            docs.append({k: v[0] if isinstance(v, list) and len(v) == 1 else v for k, v in doc.items()})
    return docs


def test_healthy_shadow_publishes_apart_and_leaves_primary_unchanged(
    deployed: Aws, challenger_dir: Path, tiny_mlflow_dir: Path, clean_env: pytest.MonkeyPatch, capsys: Any
) -> None:
    deployed.kinesis.create_stream(StreamName=SHADOW_STREAM, ShardCount=1)
    clean_env.setenv("SHADOW_MODEL_URI", deployed.upload_dir(challenger_dir, "models/tiny/challenger"))
    clean_env.setenv("SHADOW_MODEL_SHA256", artifact_sha256(challenger_dir))
    clean_env.setenv("SHADOW_OUTPUT_STREAM_NAME", SHADOW_STREAM)
    clean_env.setenv("SHADOW_TIMEOUT_MS", "30000")  # generous: this test checks content, the unit tests the bound
    clean_env.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    event, good = _event(60)

    assert handler.stream_handler(event, FakeContext()) == {"batchItemFailures": []}

    out, dead = deployed.output_records(), deployed.dead_letters()
    assert len(out) + len(dead) == 60 and len(dead) == 60 - len(good)
    by_id = {o["id"]: o for o in out}
    expected = _expected(tiny_mlflow_dir, good)
    ids = [f"r{i}" for i in range(60) if i % 9 != 4]
    assert [by_id[i]["prediction"] for i in ids] == pytest.approx(expected)
    assert all("shadow" not in o and o["model"]["name"] == "tiny" for o in out)

    shadow = {r["id"]: r for r in _records(deployed, SHADOW_STREAM)}
    assert len(shadow) == 60 and all(r["kind"] == "shadow" and "prediction" not in r for r in shadow.values())
    assert [shadow[i]["shadow"]["prediction"] for i in ids] == pytest.approx(_expected(challenger_dir, good))
    assert [shadow[i]["primary"]["prediction"] for i in ids] == [by_id[i]["prediction"] for i in ids]
    assert shadow["r0"]["shadow"]["model"]["sha256"] == artifact_sha256(challenger_dir)
    assert "error" in shadow["bad4"]["shadow"] and "error" in shadow["bad4"]["primary"]

    (doc,) = [d for d in _emf(capsys.readouterr().out) if "ShadowRecordsScored" in d]
    assert doc["ShadowRecordsScored"] == len(good) and doc["ShadowRowErrors"] == 60 - len(good)
    assert doc["ShadowFailures"] == 0 and doc["ShadowTimeouts"] == 0 and doc["ShadowRecordsUnpublished"] == 0
    assert doc["ShadowMeanAbsDiff"] == pytest.approx(2.0) and doc["ShadowAgreementPercent"] == 0.0
    assert doc["RecordsScored"] == len(good)  # in the same document as the primary's metrics


@pytest.mark.parametrize("fault", ["missing", "checksum"])
def test_broken_shadow_fails_nothing_and_loses_nothing(
    deployed: Aws, challenger_dir: Path, tiny_mlflow_dir: Path, clean_env: pytest.MonkeyPatch, fault: str
) -> None:
    uri = deployed.upload_dir(challenger_dir, "models/tiny/challenger")
    if fault == "missing":
        clean_env.setenv("SHADOW_MODEL_URI", uri + "-not-there")
    else:
        clean_env.setenv("SHADOW_MODEL_URI", uri)
        clean_env.setenv("SHADOW_MODEL_SHA256", "0" * 64)
    event, good = _event(45)

    with _logs() as logs:
        for _ in range(2):  # the second batch hits the load back-off instead of S3
            assert handler.stream_handler(event, FakeContext()) == {"batchItemFailures": []}

    out, dead = deployed.output_records(), deployed.dead_letters()
    assert len(out) == 2 * len(good) and len(dead) == 2 * (45 - len(good))
    expected = dict(zip([f"r{i}" for i in range(45) if i % 9 != 4], _expected(tiny_mlflow_dir, good), strict=True))
    assert all(o["prediction"] == pytest.approx(expected[o["id"]]) for o in out)
    assert sorted(o["id"] for o in out) == sorted(list(expected) * 2)
    failures = [entry for entry in logs if entry["message"] == "shadow failed"]
    assert len(failures) == 2
    assert ("no model at" if fault == "missing" else "checksum mismatch") in failures[0]["shadow"]["detail"]
    assert "next load attempt" in failures[1]["shadow"]["detail"]


def test_ab_variants_route_stably_and_label_every_output(
    deployed: Aws, challenger_dir: Path, tiny_mlflow_dir: Path, clean_env: pytest.MonkeyPatch, capsys: Any
) -> None:
    challenger = deployed.upload_dir(challenger_dir, "models/tiny/challenger")
    variants = [
        {"name": "champion", "weight": 70},
        {"name": "challenger", "weight": 30, "uri": challenger, "sha256": artifact_sha256(challenger_dir)},
    ]
    clean_env.setenv("MODEL_VARIANTS", json.dumps(variants))
    clean_env.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    rows: list[dict[str, Any]] = [{"id": f"rider-{i}", "features": tiny_row(i)} for i in range(200)]
    event = kinesis_event(rows)

    assert handler.stream_handler(event, FakeContext()) == {"batchItemFailures": []}
    runtime.reset()  # a new container routes every id the same way
    assert handler.stream_handler(event, FakeContext()) == {"batchItemFailures": []}

    out = deployed.output_records()
    assert len(out) == 400 and not deployed.dead_letters()
    variant_of: dict[str, set[str]] = {}
    for o in out:
        variant_of.setdefault(o["id"], set()).add(o["model"]["variant"])
    assert all(len(v) == 1 for v in variant_of.values())
    router = TrafficSplit([70, 30])
    names = ["champion", "challenger"]
    chosen = {i: v.pop() for i, v in variant_of.items()}
    assert chosen == {r["id"]: names[router.pick(r["id"])] for r in rows}

    expected = {
        "champion": _expected(tiny_mlflow_dir, [r["features"] for r in rows]),
        "challenger": _expected(challenger_dir, [r["features"] for r in rows]),
    }
    for o in out:
        i = int(o["id"].split("-")[1])
        assert o["prediction"] == pytest.approx(expected[o["model"]["variant"]][i])
    share = sum(1 for v in chosen.values() if v == "challenger") / 200
    assert 0.2 < share < 0.4
    per_variant = [d for d in _emf(capsys.readouterr().out) if "variant" in d]
    assert {(d["variant"], d["RecordsScored"]) for d in per_variant} == {
        ("challenger", round(share * 200)),
        ("champion", 200 - round(share * 200)),
    }
    for d in per_variant:
        assert "variant" in d["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]
        assert d["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "ServingKit"


def _predict(instances: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    from servingkit.http_local import build_event

    body = json.dumps({"instances": instances}).encode()
    event = build_event("POST", "/predict", [("Content-Type", "application/json")], body)
    result = handler.api_handler(event, FakeContext())
    return int(result["statusCode"]), json.loads(result["body"])


@pytest.mark.parametrize("shadow_ok", [True, False])
def test_api_routes_the_request_to_a_variant_and_never_returns_the_shadow(
    deployed: Aws, challenger_dir: Path, tiny_mlflow_dir: Path, clean_env: pytest.MonkeyPatch, shadow_ok: bool
) -> None:
    challenger = deployed.upload_dir(challenger_dir, "models/tiny/challenger")
    challenger_sha = artifact_sha256(challenger_dir)
    variants = [
        {"name": "champion", "weight": 50},
        {"name": "challenger", "weight": 50, "uri": challenger, "sha256": challenger_sha},
    ]
    clean_env.setenv("MODEL_VARIANTS", json.dumps(variants))
    deployed.kinesis.create_stream(StreamName=SHADOW_STREAM, ShardCount=1)
    clean_env.setenv("SHADOW_OUTPUT_STREAM_NAME", SHADOW_STREAM)
    clean_env.setenv("SHADOW_MODEL_URI", challenger)
    clean_env.setenv("SHADOW_MODEL_SHA256", challenger_sha if shadow_ok else "f" * 64)
    clean_env.setenv("SHADOW_TIMEOUT_MS", "30000")
    router, names = TrafficSplit([50, 50]), ["champion", "challenger"]
    dirs = {"champion": tiny_mlflow_dir, "challenger": challenger_dir}

    seen = set()
    for user in ("user-1", "user-2", "user-3", "user-4", "user-5", "user-6"):
        instances = [{"id": user, "features": tiny_row(i)} for i in range(3)]
        status, body = _predict(instances)
        assert status == 200, body
        variant = names[router.pick(user)]
        seen.add(variant)
        assert body["model"]["variant"] == variant and set(body) == {"predictions", "ids", "model"}
        assert body["predictions"] == pytest.approx(_expected(dirs[variant], [tiny_row(i) for i in range(3)]))
        assert _predict(instances)[1] == body  # sticky per id

    assert seen == {"champion", "challenger"}
    shadow = _records(deployed, SHADOW_STREAM)
    if shadow_ok:
        assert len(shadow) == 6 * 2 * 3 and all(r["kind"] == "shadow" for r in shadow)
        assert all("variant" in r["primary"]["model"] for r in shadow)
    else:
        assert shadow == []
