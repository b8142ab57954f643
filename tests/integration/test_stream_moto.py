"""The stream handler against moto: nothing lost, nothing duplicated, failures reported precisely."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from lambda_fn import runtime
from lambda_fn.handler import stream_handler
from lambda_fn.model_store import ChecksumMismatchError, ModelLoadError, ModelNotFoundError, artifact_sha256
from tests.helpers import FakeContext, kinesis_event, kinesis_record, kpl_aggregate, save_skops, tiny_row
from tests.integration.conftest import BUCKET, Aws

CTX = FakeContext()


def payload(i: int) -> dict[str, Any]:
    return {"id": f"r{i}", "features": tiny_row(i)}


def mixed_batch(n: int = 200) -> tuple[dict[str, Any], set[int]]:
    """n records, every 20th one poison of a different kind."""
    kinds = [
        "%%%",  # not base64
        b"not json",
        b"[1,2]",
        json.dumps({"id": "x", "nofeatures": {}}).encode(),
        json.dumps({"id": "y", "features": {"zone": "a", "distance": "far", "hour": 1}}).encode(),
    ]
    items: list[Any] = []
    poison = set()
    for i in range(n):
        if i % 20 == 7:
            items.append(kinds[(i // 20) % len(kinds)])
            poison.add(i)
        else:
            items.append(payload(i))
    return kinesis_event(items, start_seq=1000), poison


def test_mixed_batch_every_record_is_one_prediction_or_one_dead_letter(deployed: Aws) -> None:
    event, poison = mixed_batch(200)
    response = stream_handler(event, CTX)
    assert response == {"batchItemFailures": []}
    outputs = deployed.output_records()
    dead = deployed.dead_letters()
    assert len(outputs) + len(dead) == 200
    assert len(dead) == len(poison)
    assert Counter(o["id"] for o in outputs) == Counter(f"r{i}" for i in range(200) if i not in poison)
    assert {int(d["sequence_number"]) - 1000 for d in dead} == poison
    assert {d["reason"] for d in dead} == {
        "not_base64",
        "not_json",
        "not_object",
        "missing_features_field",
        "schema_violation",
    }
    assert all(d["reason"] == d["_attr_reason"] for d in dead)
    schema = next(d for d in dead if d["reason"] == "schema_violation")
    assert "distance" in schema["detail"]
    first = outputs[0]
    assert first["model"]["name"] == "tiny" and len(first["model"]["sha256"]) == 64
    assert first["source"]["shard_id"] == "shardId-000000000000"
    assert isinstance(first["prediction"], float)
    # The original data comes back unchanged in the dead letter.
    raw = {r["kinesis"]["sequenceNumber"]: r["kinesis"]["data"] for r in event["Records"]}
    assert all(d["data"] == raw[d["sequence_number"]] for d in dead)


def test_partial_put_records_failures_are_retried_entry_by_entry(deployed: Aws) -> None:
    rt = runtime.stream_runtime()
    real = rt.output._client  # type: ignore[attr-defined]
    calls: list[int] = []

    class Flaky:
        """Writes only every other entry on the first two calls and reports the rest as throttled."""

        def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
            calls.append(len(Records))
            if len(calls) > 2:
                return real.put_records(StreamName=StreamName, Records=Records)  # type: ignore[no-any-return]
            keep = Records[::2]
            written = iter(real.put_records(StreamName=StreamName, Records=keep)["Records"])
            out = []
            for j in range(len(Records)):
                if j % 2 == 0:
                    out.append(next(written))
                else:
                    out.append({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded"})
            return {"FailedRecordCount": len(Records) // 2, "Records": out}

    rt.output._client = Flaky()  # type: ignore[attr-defined]
    event = kinesis_event([payload(i) for i in range(700)], start_seq=5000)
    assert stream_handler(event, CTX) == {"batchItemFailures": []}
    ids = [o["id"] for o in deployed.output_records()]
    assert len(ids) == 700 and len(set(ids)) == 700
    assert calls[:2] == [500, 250]  # first chunk of 500, then only its 250 failed entries


def test_persistent_output_failure_reports_the_first_failed_record(deployed: Aws) -> None:
    rt = runtime.stream_runtime()
    real = rt.output._client  # type: ignore[attr-defined]

    class Broken:
        """Entries for ids r30 and later always fail (e.g. a hot shard throttled for minutes)."""

        def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
            ok = [r for r in Records if int(r["PartitionKey"][1:]) < 30]
            written = iter(real.put_records(StreamName=StreamName, Records=ok)["Records"] if ok else [])
            return {
                "Records": [
                    next(written) if int(r["PartitionKey"][1:]) < 30 else {"ErrorCode": "InternalFailure"}
                    for r in Records
                ]
            }

    rt.output._client = Broken()  # type: ignore[attr-defined]
    event = kinesis_event([payload(i) for i in range(50)], start_seq=100)
    response = stream_handler(event, CTX)
    failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    assert failed[0] == "130"
    assert failed == [str(100 + i) for i in range(30, 50)]
    assert sorted(int(o["id"][1:]) for o in deployed.output_records()) == list(range(30))

    # Lambda re-delivers from the lowest failed sequence number; once healthy, nothing is missing.
    rt.output._client = real  # type: ignore[attr-defined]
    retry = {"Records": [r for r in event["Records"] if int(r["kinesis"]["sequenceNumber"]) >= 130]}
    assert stream_handler(retry, CTX) == {"batchItemFailures": []}
    ids = Counter(o["id"] for o in deployed.output_records())
    assert set(ids) == {f"r{i}" for i in range(50)} and max(ids.values()) == 1


def test_kpl_aggregated_input_scores_every_user_record(deployed: Aws) -> None:
    agg = kpl_aggregate([payload(i) for i in range(25)])
    event = {"Records": [kinesis_record(agg, 900), kinesis_record(json.dumps(payload(99)).encode(), 901)]}
    assert stream_handler(event, CTX) == {"batchItemFailures": []}
    outputs = deployed.output_records()
    assert sorted(o["id"] for o in outputs) == sorted([f"r{i}" for i in range(25)] + ["r99"])
    subs = sorted(o["source"]["sub_sequence_number"] for o in outputs if o["source"]["sequence_number"] == "900")
    assert subs == list(range(25))


def test_single_skops_file_pinned_by_s3_version(aws: Aws, clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = save_skops(tmp_path / "tiny.skops")
    version = aws.s3.put_object(Bucket=BUCKET, Key="models/tiny.skops", Body=path.read_bytes())["VersionId"]
    aws.s3.put_object(Bucket=BUCKET, Key="models/tiny.skops", Body=b"a newer, broken upload")
    clean_env.setenv("MODEL_URI", f"s3://{BUCKET}/models/tiny.skops?versionId={version}")
    clean_env.setenv("MODEL_SHA256", artifact_sha256(path))
    assert stream_handler(kinesis_event([payload(1), payload(2)]), CTX) == {"batchItemFailures": []}
    outs = aws.output_records()
    assert [o["model"]["version"] for o in outs] == [version, version]


@pytest.mark.parametrize(
    ("setup", "error", "needle"),
    [
        ("missing", ModelNotFoundError, "no model at"),
        ("checksum", ChecksumMismatchError, "checksum mismatch"),
        ("unreadable", ModelLoadError, "not a readable skops file"),
    ],
)
def test_model_problems_fail_the_batch_with_a_clear_error_and_write_nothing(
    aws: Aws, clean_env: pytest.MonkeyPatch, tiny_mlflow_dir: Path, setup: str, error: type[Exception], needle: str
) -> None:
    if setup == "missing":
        clean_env.setenv("MODEL_URI", f"s3://{BUCKET}/models/absent")
    elif setup == "checksum":
        clean_env.setenv("MODEL_URI", aws.upload_dir(tiny_mlflow_dir, "models/tiny/v2"))
        clean_env.setenv("MODEL_SHA256", "f" * 64)
    else:
        aws.s3.put_object(Bucket=BUCKET, Key="models/bad.skops", Body=b"garbage")
        clean_env.setenv("MODEL_URI", f"s3://{BUCKET}/models/bad.skops")
    with pytest.raises(error, match=needle):
        stream_handler(kinesis_event([payload(1)]), CTX)
    assert aws.output_records() == []
    assert aws.dead_letters() == []


def test_missing_sink_configuration_names_the_variable(deployed: Aws, clean_env: pytest.MonkeyPatch) -> None:
    from lambda_fn.config import ConfigError

    clean_env.delenv("DLQ_URL")
    runtime.reset()
    with pytest.raises(ConfigError, match="DLQ_URL"):
        stream_handler(kinesis_event([payload(1)]), CTX)


def test_directory_uri_without_slash_works_when_head_object_is_denied(
    deployed: Aws, clean_env: pytest.MonkeyPatch
) -> None:
    """A role limited to the prefix gets 403 (not 404) from HeadObject on the bare directory key."""
    from botocore.exceptions import ClientError

    from lambda_fn.config import settings_from
    from lambda_fn.model_store import fetch

    s3 = deployed.s3

    class PrefixOnlyRole:
        def __getattr__(self, name: str) -> Any:
            return getattr(s3, name)

        def head_object(self, **kw: Any) -> Any:
            raise ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "HeadObject")

    settings = settings_from(dict(os.environ))
    path, _ = fetch(settings.model_uri, settings.model_cache_dir, PrefixOnlyRole())
    assert (path / "MLmodel").is_file()

    class NoAccess(PrefixOnlyRole):
        def get_paginator(self, name: str) -> Any:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "ListObjectsV2")

    with pytest.raises(ModelNotFoundError, match="access denied"):
        fetch(settings.model_uri, settings.model_cache_dir + "-2", NoAccess())
