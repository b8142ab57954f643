"""The local cloud's labels topology (issue 14) on the embedded moto server: with monitoring_labels_stream=true it
has the stack's labels stream and on-failure queue, and labels put on the stream by `servingkit monitor labels put
--stream` are filed by the real labels function under monitoring/labels/ of the bucket, where the quality job reads
them; without it, none of that exists."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from infra.topology import LABELS_TRIGGER, topology
from lambda_fn.monitoring.s3_labels import S3Labels
from servingkit.localcloud.cloud import LocalCloud
from tests.helpers import run_cli

LABELS_ON = {"monitoring_labels": "true", "monitoring_labels_stream": "true"}


@pytest.fixture(autouse=True)
def _no_stray_settings(clean_env: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("LABELS_BUCKET", "LABELS_PREFIX", "LABELS_STREAM", "MONITOR_BUCKET"):
        clean_env.delenv(name, raising=False)
    yield


def _label_objects(cloud: LocalCloud) -> list[str]:
    s3, bucket = cloud.clients["s3"], cloud.topology.model_bucket
    found = s3.list_objects_v2(Bucket=bucket, Prefix="monitoring/labels/").get("Contents", [])
    return [o["Key"] for o in found]


def test_labels_stream_files_labels_sent_by_the_cli(
    release: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # No `time`: each label arrives when the stream got it (its approximateArrivalTimestamp), filed in that hour.
    lines = [{"id": f"ride-{i:04d}", "label": float(i)} for i in range(40)]
    lines.append({"groundTruthData": {"data": "7.5", "encoding": "CSV"}, "eventMetadata": {"eventId": "ride-x"},
                  "eventVersion": "0"})  # fmt: skip
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in lines))
    with LocalCloud(model_dir=release[0], release=release[1], ctx=LABELS_ON) as cloud:
        assert cloud.resources is not None and cloud.resources.labels is not None
        labels = cloud.resources.labels
        # The stack's names (infra/label_stream.py takes them from the same topology) and event source.
        assert labels.stream_name == f"{cloud.topology.prefix}-labels" == cloud.topology.labels_stream.name
        assert labels.on_failure_url.endswith(f"/{cloud.topology.prefix}-labels-failures")
        assert labels.labels_uri == f"s3://{cloud.topology.model_bucket}/monitoring/labels/"
        assert cloud.labels_poller is not None and cloud.labels_poller.trigger == LABELS_TRIGGER
        assert run_cli(["monitor", "labels", "put", str(path), "--stream", labels.stream_name]) == 0
        assert capsys.readouterr().out.strip() == f"41 labels put on {labels.stream_name}"
        deadline = time.monotonic() + LABELS_TRIGGER.batching_window_seconds + 30
        while not _label_objects(cloud) and time.monotonic() < deadline:
            time.sleep(0.5)
        keys = _label_objects(cloud)
        assert keys and all(k.endswith(".jsonl.gz") and "/labels/date=" in k for k in keys)
        # The quality job's reader sees every label, SageMaker's line included, with its arrival.
        reader = S3Labels(cloud.topology.model_bucket, "monitoring", cloud.clients["s3"])
        now = datetime.now(UTC)
        batch = reader.labels(now - timedelta(hours=1), now)
        got = {k: v.value for k, v in batch.labels.items()}
        assert got == {**{f"ride-{i:04d}": float(i) for i in range(40)}, "ride-x": 7.5}
        sqs = cloud.clients["sqs"]
        failed = sqs.get_queue_attributes(
            QueueUrl=labels.on_failure_url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        assert failed["Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_without_the_labels_stream_the_local_cloud_has_none(release: tuple[Path, Path]) -> None:
    with LocalCloud(model_dir=release[0], release=release[1]) as cloud:
        assert cloud.resources is not None and cloud.resources.labels is None and cloud.labels_poller is None
        streams = cloud.clients["kinesis"].list_streams()["StreamNames"]
        assert cloud.topology.labels_stream.name not in streams


def test_a_bad_label_file_sends_nothing_and_says_which_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text('{"id": "ride-1", "label": 3.0}\n{"id": "ride-2"}\n')
    assert run_cli(["monitor", "labels", "put", str(path), "--stream", "nowhere"]) == 1
    err = capsys.readouterr().err
    assert f"{path}:2:" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert run_cli(["monitor", "labels", "put", str(path)]) == 1
    assert "--bucket" in capsys.readouterr().err


def test_labels_stream_needs_labels_on() -> None:
    from infra.topology import TopologyError

    with pytest.raises(TopologyError, match="monitoring_labels_stream=true needs monitoring_labels=true"):
        topology({"monitoring_labels_stream": "true"})
    assert topology(LABELS_ON).labels and not topology({}).labels
