"""`servingkit demo --serve` as a user runs it: summary, then the API and the poller keep working until SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3

from tests.conftest import ROOT

RIDE = {"PULocationID": 161, "DOLocationID": 236, "trip_distance": 2.3, "pickup_datetime": "2026-03-02T08:15:00"}


def _wait_for(lines: list[str], pattern: str, proc: subprocess.Popen[str], timeout: float) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(lines):
            found = re.search(pattern, line)
            if found:
                return found
        assert proc.poll() is None, f"demo exited early ({proc.returncode}):\n" + "".join(lines[-30:])
        time.sleep(0.1)
    raise AssertionError(f"no line matching {pattern!r} within {timeout:.0f} s:\n" + "".join(lines[-30:]))


def _read_prediction(kinesis: Any, stream: str, ride_id: str, timeout: float = 30) -> dict[str, Any]:
    shards = [s["ShardId"] for s in kinesis.list_shards(StreamName=stream)["Shards"]]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for sid in shards:
            it = kinesis.get_shard_iterator(StreamName=stream, ShardId=sid, ShardIteratorType="TRIM_HORIZON")
            for r in kinesis.get_records(ShardIterator=it["ShardIterator"], Limit=10_000)["Records"]:
                body: dict[str, Any] = json.loads(r["Data"])
                if body["id"] == ride_id:
                    return body
        time.sleep(0.5)
    raise AssertionError(f"no prediction for {ride_id} on {stream} within {timeout:.0f} s")


def test_demo_summary_then_serve_until_sigterm(release: tuple[Path, Path]) -> None:
    cmd = [sys.executable, "-m", "servingkit", "demo", "--records", "400", "--serve", "--port", "0", "--no-progress"]
    cmd += ["--model-dir", str(release[0]), "--release", str(release[1])]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "POWERTOOLS_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        api = _wait_for(lines, r"serving the API on (http://127\.0\.0\.1:\d+)", proc, 180).group(1)
        endpoint = _wait_for(lines, r"target\s+embedded-moto (http://127\.0\.0\.1:\d+)", proc, 5).group(1)
        stream_in, stream_out = _wait_for(lines, r"streams\s+(\S+) \(\d+ shards\) -> (\S+)", proc, 5).groups()
        assert any(re.search(r"LOST\s+0$", line.rstrip()) for line in lines)

        with urllib.request.urlopen(f"{api}/health", timeout=30) as resp:
            assert resp.status == 200 and json.loads(resp.read())["status"] == "ok"

        kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1")
        kinesis.put_record(
            StreamName=stream_in, Data=json.dumps({"ride_id": "after-demo", "ride": RIDE}), PartitionKey="a"
        )
        streamed = _read_prediction(kinesis, stream_out, "after-demo")

        request = urllib.request.Request(
            f"{api}/predict",
            data=json.dumps({"ride_id": "after-demo", "ride": RIDE}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            answered = json.loads(resp.read())
        assert answered["predictions"][0] == streamed["prediction"]
        assert answered["model"] == streamed["model"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        reader.join(5)
    assert proc.returncode == 0, "".join(lines[-30:])
    figures = json.loads(lines[-1])
    assert figures["ok"] is True and figures["lost"] == 0 and figures["records"] == 400
    assert figures["predicted"] == 396 and figures["dead_lettered"] == 4
