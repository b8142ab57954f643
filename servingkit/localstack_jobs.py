"""LocalStack for the kit, without Docker (`servingkit localstack install|run|status|e2e|bench|serve`).

  install  pinned LocalStack in .localstack/venv (Python 3.13) + kinesis-mock bound to 127.0.0.1
  run      start it on 127.0.0.1:PORT in the foreground (`make localstack`); Ctrl-C or TERM stops it
  status   print /_localstack/health of 127.0.0.1:PORT (exit 1 if nothing answers)
  e2e      the whole pipeline (producer → stream → handler → output stream / DLQ) against LocalStack:
           reuses the one healthy at `endpoint`, or starts one for the run and stops it afterwards
  bench    the same pipeline on the embedded moto server (baseline) and on LocalStack, in this run
  serve    the stack's resources on LocalStack and the local poller running the real handler, until
           Ctrl-C: put records with the AWS CLI, read predictions back (it prints the commands)

`e2e` and `bench` print a summary; their last line is one JSON object with the figures. Each function
returns the exit status; `LocalStackError` says why LocalStack could not be installed or started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

from servingkit.localcloud import localstack as ls

FIGURES = (
    "records_in",
    "predicted",
    "dead_lettered",
    "lost",
    "duplicates",
    "produce_seconds",
    "seconds",
    "throughput_rps",
    "latency_ms_p50",
    "latency_ms_p99",
)


def say(message: str) -> None:
    print(f"[localstack] {message}", file=sys.stderr, flush=True)


def install() -> int:
    started = time.monotonic()
    already = ls.is_installed()
    layout = ls.install(log=say)
    state = "already installed" if already else "installed"
    say(f"{state} in {layout.home} ({time.monotonic() - started:.1f} s)")
    return 0


def status(port: int) -> int:
    states = ls.health(ls.endpoint_for(port))
    print(json.dumps({"endpoint": ls.endpoint_for(port), "services": states}))
    return 0 if states is not None else 1


def run(port: int, services: tuple[str, ...] = ls.DEFAULT_SERVICES) -> int:
    instance = ls.launch(port, services=services, log=say)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    say(f"ready in {instance.start_seconds:.1f} s; point the SDK and the AWS CLI at it:")
    print(
        f"export AWS_ENDPOINT_URL={instance.endpoint} AWS_ACCESS_KEY_ID=test "
        "AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1",
        flush=True,
    )
    say(f"log: {instance.log_path}; Ctrl-C stops it (TERM, then KILL after {ls.STOP_GRACE_S:.0f} s)")
    try:
        while instance.running():
            time.sleep(0.5)
        say(f"LocalStack exited with {instance.process.returncode}; log {instance.log_path}:\n{instance.log_tail()}")
        return 1
    except KeyboardInterrupt:
        say("stopping")
        return 0
    finally:
        instance.stop()


def _progress(stage: str, done: int, total: int) -> None:
    print(f"\r  {stage:<8} {done:>7,}/{total:,}", end="" if done < total else "\n", file=sys.stderr, flush=True)


def _pipeline(endpoint: str | None, records: int, shards: int | None, poison_rate: float) -> dict[str, Any]:
    from servingkit.localcloud.cloud import run_pipeline

    summary = run_pipeline(
        records=records,
        endpoint_url=endpoint,
        shards=shards,
        poison_rate=poison_rate,
        progress=_progress if sys.stderr.isatty() else None,
    )
    return summary.as_dict()


def _print_summary(label: str, result: dict[str, Any]) -> None:
    say(
        f"{label}: {result['records_in']:,} in → {result['predicted']:,} predicted, "
        f"{result['dead_lettered']:,} dead-lettered, {result['lost']} lost, {result['duplicates']} duplicates; "
        f"{result['throughput_rps']:,.0f} records/s, latency p50 {result['latency_ms_p50']} ms, "
        f"p99 {result['latency_ms_p99']} ms"
    )


@contextlib.contextmanager
def _localstack_for_run(endpoint: str | None) -> Iterator[tuple[str, ls.LocalStack | None]]:
    """The LocalStack at `endpoint` (reused), or one started for this run and stopped when it ends."""
    if endpoint:
        url, instance = ls.ensure_running(endpoint, log=say), ls.current()
    else:
        instance = ls.launch(0, log=say)
        url = instance.endpoint
    try:
        yield url, instance
    finally:
        if instance is not None:
            instance.stop()


def e2e(
    records: int = 10_000, shards: int | None = None, poison_rate: float = 0.01, endpoint: str | None = None
) -> int:
    with _localstack_for_run(endpoint) as (url, instance):
        result = _pipeline(url, records, shards, poison_rate)
    _print_summary("localstack", result)
    figures = {k: result[k] for k in FIGURES}
    if instance is not None:
        figures["localstack_start_s"] = instance.start_seconds
    print(json.dumps({"target": "localstack", **figures}))
    return 0 if result["lost"] == 0 and result["duplicates"] == 0 else 1


def bench(
    records: int = 10_000, shards: int | None = None, poison_rate: float = 0.01, endpoint: str | None = None
) -> int:
    baseline = _pipeline(None, records, shards, poison_rate)
    _print_summary("embedded moto (baseline)", baseline)
    with _localstack_for_run(endpoint) as (url, instance):
        result = _pipeline(url, records, shards, poison_rate)
    _print_summary("localstack", result)
    out: dict[str, Any] = {
        "records": records,
        "embedded": {k: baseline[k] for k in FIGURES},
        "localstack": {k: result[k] for k in FIGURES},
        "throughput_ratio_localstack_vs_embedded": round(result["throughput_rps"] / baseline["throughput_rps"], 3),
    }
    if baseline["latency_ms_p50"] and result["latency_ms_p50"]:
        out["latency_p50_ratio_localstack_vs_embedded"] = round(
            result["latency_ms_p50"] / baseline["latency_ms_p50"], 2
        )
    if instance is not None:
        out["localstack_start_s"] = instance.start_seconds
    print(json.dumps(out))
    return 0 if result["lost"] == baseline["lost"] == 0 else 1


CLI_EXAMPLE = """\
  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1
  awsl() {{ aws --endpoint-url {endpoint} "$@"; }}   # AWS CLI v1 ignores AWS_ENDPOINT_URL for SQS
  ride='{{"PULocationID": 161, "DOLocationID": 236, "trip_distance": 2.3, "pickup_datetime": "2024-03-01T08:15:00"}}'
  printf '%s' "{{\\"ride_id\\":\\"r1\\",\\"ride\\":$ride}}" > ride.json; printf 'not json' > bad.txt
  awsl kinesis put-record --stream-name {input} --partition-key r1 --data fileb://ride.json   # fileb: v1 and v2 alike
  awsl kinesis put-record --stream-name {input} --partition-key r2 --data fileb://bad.txt     # goes to the DLQ
  for shard in $(awsl kinesis list-shards --stream-name {output} --query 'Shards[].ShardId' --output text); do
    it=$(awsl kinesis get-shard-iterator --stream-name {output} --shard-id $shard \\
      --shard-iterator-type TRIM_HORIZON --query ShardIterator --output text)
    awsl kinesis get-records --shard-iterator $it --query 'Records[].Data' --output text | tr '\\t' '\\n' | \\
      while read -r d; do [ -n "$d" ] && echo "$d" | base64 -d && echo; done
  done
  awsl sqs receive-message --queue-url {dlq} --max-number-of-messages 10 --query 'Messages[].Body'"""


def serve(port: int = ls.DEFAULT_PORT, prefix: str = "serving-local") -> int:
    from infra.topology import Ctx
    from servingkit.localcloud.cloud import LocalCloud

    endpoint = ls.ensure_running(ls.endpoint_for(port), log=say)
    instance = ls.current()  # None when an already running LocalStack is reused

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        with LocalCloud(endpoint_url=endpoint, ctx={Ctx.PREFIX: prefix}) as cloud:
            assert cloud.resources is not None
            topo = cloud.resources.topology
            say(f"scoring {topo.input_stream.name} → {topo.output_stream.name} / {topo.dlq_name} on {endpoint}")
            print(
                CLI_EXAMPLE.format(
                    endpoint=endpoint,
                    input=topo.input_stream.name,
                    output=topo.output_stream.name,
                    dlq=cloud.resources.dlq_url,
                ),
                flush=True,
            )
            say("Ctrl-C stops the poller" + (" and LocalStack" if instance else ""))
            while True:
                time.sleep(0.5)
    except KeyboardInterrupt:
        say("stopping")
        return 0
    finally:
        if instance is not None:
            instance.stop()


def quiet_powertools() -> None:
    """No EMF lines and only warnings from the handler's Powertools on a terminal (unless already set)."""
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
