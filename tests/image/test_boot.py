"""The function image booted as Lambda boots it: its entrypoint, the real awslambdaric, the Runtime API.

Each case runs the container with a read-only root, a writable /tmp, a non-root user and the template's
memory; the handler CMD of each function comes from the synthesized template.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from lambda_fn.config import Env
from servingkit.http_local import serving
from servingkit.localcloud.cloud import LocalCloud
from servingkit.localcloud.poller import FunctionError
from tests.helpers import kinesis_event
from tests.image.conftest import Provisioned, TemplateFunction

PAYLOAD: dict[str, Any] = {
    "ride_id": "r1",
    "ride": {"PULocationID": 161, "DOLocationID": 236, "trip_distance": 2.3, "pickup_datetime": "2026-03-01T08:15:00"},
}


def _strict(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_missing_configuration_fails_the_init_naming_the_variable(run_function: Any, scorer: TemplateFunction) -> None:
    fn = run_function(scorer, {"MODEL_URI": "s3://nowhere/model", "MODEL_SHA256": "0" * 64})
    result = fn.invoke({"Records": []}, timeout_s=120)
    assert result.error is not None, result
    assert Env.OUTPUT_STREAM_NAME in result.error.message or Env.OUTPUT_STREAM_NAME in fn.logs(), fn.logs()
    assert not fn.running()  # Lambda discards an environment whose init failed


def test_the_stream_scorer_accounts_for_every_record_kpl_aggregates_included(
    run_function: Any, scorer: TemplateFunction, release: tuple[Path, Path]
) -> None:
    """Records (and KPL aggregates made by aws-kinesis-agg in this process, not the container's) flow from
    the emulator's input stream through the container's handler to the output stream or the DLQ."""
    model, meta = release
    holder: dict[str, Any] = {}

    def image(environment: dict[str, str]) -> Any:
        holder["fn"] = run_function(scorer, environment, name="serving-local-scorer")
        return holder["fn"]

    with LocalCloud(model_dir=model, release=meta, function=image, warm=False) as cloud:
        summary = cloud.run(600, poison_rate=0.05, kpl_share=0.3, seed=7, timeout_s=240)
        fn = holder["fn"]
    assert summary.records_in == 600, summary
    assert summary.lost == 0 and summary.duplicates == 0 and summary.misrouted == 0, summary
    assert summary.kpl_user_records > 0, summary
    assert summary.dead_lettered >= 20 and summary.predicted + summary.dead_lettered == 600, summary
    assert len(fn.cold_starts) == 1, "one execution environment served every batch (warm after the first)"
    env = fn.cold_starts[0]
    assert env.invocations > 1 and env.first_response_seconds is not None


def test_every_api_route_answers_from_the_image(
    run_function: Any, api: TemplateFunction, provisioned: Provisioned
) -> None:
    fn = run_function(api, provisioned.environment, name="serving-local-api")
    name = provisioned.release.name
    with serving(handler=fn) as url:
        health = requests.get(f"{url}/health", timeout=120)
        assert health.status_code == 200, health.text
        info = requests.get(f"{url}/model", timeout=30).json()
        assert info["sha256"] == provisioned.release.sha256
        one = requests.post(f"{url}/predict", json=PAYLOAD, timeout=30)
        assert one.status_code == 200 and isinstance(_strict(one.text)["predictions"][0], float), one.text
        many = requests.post(f"{url}/predict", json={"instances": [PAYLOAD, PAYLOAD]}, timeout=30)
        assert many.status_code == 200 and len(many.json()["predictions"]) == 2
        csv = "PU_DO,trip_distance,pickup_hour,pickup_dow\n161_236,2.3,8,4\n"
        inv = requests.post(f"{url}/invocations", data=csv, headers={"Content-Type": "text/csv"}, timeout=30)
        assert inv.status_code == 200, inv.text
        split: dict[str, Any] = {"dataframe_split": {"columns": ["PU_DO", "trip_distance", "pickup_hour", "pickup_dow"],
                                     "data": [["161_236", 2.3, 8, 4]]}}  # fmt: skip
        assert requests.post(f"{url}/invocations", json=split, timeout=30).json()["predictions"]
        meta_v2 = requests.get(f"{url}/v2/models/{name}", timeout=30)
        assert meta_v2.status_code == 200 and meta_v2.json()["name"] == name
        infer: dict[str, Any] = {"inputs": [
            {"name": "PU_DO", "shape": [1], "datatype": "BYTES", "data": ["161_236"]},
            {"name": "trip_distance", "shape": [1], "datatype": "FP64", "data": [2.3]},
            {"name": "pickup_hour", "shape": [1], "datatype": "INT64", "data": [8]},
            {"name": "pickup_dow", "shape": [1], "datatype": "INT64", "data": [4]},
        ]}  # fmt: skip
        v2 = requests.post(f"{url}/v2/models/{name}/infer", json=infer, timeout=30)
        assert v2.status_code == 200 and v2.json()["outputs"], v2.text
        assert requests.get(f"{url}/openapi.json", timeout=30).json()["openapi"].startswith("3.")
        bad = requests.post(f"{url}/predict", data="{not json", headers={"Content-Type": "application/json"})
        assert bad.status_code == 400 and _strict(bad.text)["error"]["code"]
        assert requests.get(f"{url}/nope", timeout=30).status_code == 404
    assert len(fn.cold_starts) == 1 and fn.cold_starts[0].invocations == 11


def test_a_model_whose_sha256_does_not_match_is_an_error_and_nothing_is_written(
    run_function: Any, scorer: TemplateFunction, provisioned: Provisioned
) -> None:
    fn = run_function(scorer, {**provisioned.environment, Env.MODEL_SHA256: "f" * 64})
    with pytest.raises(FunctionError, match="ChecksumMismatchError: checksum mismatch"):
        fn(kinesis_event([PAYLOAD, PAYLOAD]), None)
    kinesis, stream = provisioned.clients["kinesis"], provisioned.resources.topology.output_stream.name
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        it = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")
        assert kinesis.get_records(ShardIterator=it["ShardIterator"])["Records"] == []
    dlq = provisioned.clients["sqs"].receive_message(QueueUrl=provisioned.resources.dlq_url, WaitTimeSeconds=0)
    assert not dlq.get("Messages")


def test_the_image_ships_only_the_runtime_and_runs_as_lambda_does(engine: Any, function_image: Any) -> None:
    probe = (
        "import importlib.util, os, sys, json\n"
        "dev = [m for m in ('mlflow', 'aws_cdk', 'servingkit', 'infra', 'moto', 'pytest', 'awslambdaric')"
        " if importlib.util.find_spec(m) and not (m == 'awslambdaric' and '/var/runtime' in sys.path)]\n"
        "print(json.dumps({'python': list(sys.version_info[:2]), 'dev': dev, 'uid': os.getuid(),"
        " 'task': os.environ['LAMBDA_TASK_ROOT'], 'cwd': os.getcwd()}))\n"
    )
    done = engine.docker(
        "run", "--rm", "--network=host", "--read-only", "--user", "993:990", "--entrypoint", "/var/lang/bin/python3",
        function_image.tag, "-c", probe,
    )  # fmt: skip
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["python"] == [3, 13] and facts["uid"] == 993, facts
    assert facts["task"] == facts["cwd"] == "/var/task"
    assert facts["dev"] == [], f"development packages in the image: {facts['dev']}"


def test_one_cold_start_then_warm_invocations_in_the_same_environment(
    run_function: Any, scorer: TemplateFunction, provisioned: Provisioned
) -> None:
    fn = run_function(scorer, provisioned.environment)
    rides = [{**PAYLOAD, "ride_id": f"r{i}"} for i in range(20)]
    cold = fn.invoke(kinesis_event(rides, key_field="ride_id"))
    warm = [
        fn.invoke(kinesis_event(rides, start_seq=49_000_000_000 + 100 * (i + 1), key_field="ride_id")) for i in range(3)
    ]
    assert cold.error is None and cold.payload == {"batchItemFailures": []}, cold
    assert cold.cold and not any(w.cold for w in warm)
    assert all(w.error is None and w.payload == {"batchItemFailures": []} for w in warm), warm
    assert len(fn.cold_starts) == 1 and fn.cold_starts[0].invocations == 4
    # The cold one paid for init (imports) and the model download, verification and load; warm ones did not.
    assert cold.timings.total_s > max(w.timings.total_s for w in warm), (cold.timings, [w.timings for w in warm])


def test_the_base_has_the_lambda_layout_and_amazon_linux_2023_wheel_policy(engine: Any, base_image: str) -> None:
    """What the real base image gives the Dockerfile: its layout, environment, entrypoint, and the wheels
    pip may choose (none newer than glibc 2.34, whatever the stand-in's own glibc is)."""
    config = json.loads(engine.docker("image", "inspect", "--format", "{{json .Config}}", base_image).stdout)
    env = dict(item.split("=", 1) for item in config["Env"])
    assert config["Entrypoint"] == ["/lambda-entrypoint.sh"] and config["WorkingDir"] == "/var/task"
    assert env["LAMBDA_TASK_ROOT"] == "/var/task" and env["LAMBDA_RUNTIME_DIR"] == "/var/runtime"
    assert env["PATH"].startswith("/var/lang/bin:")
    probe = (
        "import json, sys\n"
        "from pip._vendor.packaging import tags\n"
        "import awslambdaric\n"
        "linux = [t.platform for t in tags.sys_tags() if t.platform.startswith('manylinux_2_')]\n"
        "print(json.dumps({'exe': sys.executable, 'ric': awslambdaric.__file__, 'glibc': sorted(\n"
        "    {tuple(map(int, p.split('_')[1:3])) for p in linux})}))\n"
    )
    done = engine.docker(
        "run",
        "--rm",
        "--network=host",
        "--env",
        "PYTHONPATH=/var/runtime",
        "--entrypoint",
        "/var/lang/bin/python3",
        base_image,
        "-c",
        probe,
    )
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["exe"].startswith("/var/lang/bin/python3") and facts["ric"].startswith("/var/runtime/awslambdaric/")
    assert max(map(tuple, facts["glibc"])) == (2, 34), facts["glibc"]
