"""The whole pipeline on this machine, no AWS account (`servingkit demo`, `make demo`).

Trains the demo model if it is missing or stale (the default build only), starts an AWS emulator on 127.0.0.1
(moto, embedded) or uses LocalStack (`target="localstack"`) or any endpoint in $AWS_ENDPOINT_URL, creates the
stack's resources from infra.topology, uploads the model, runs the local Kinesis poller with the real handler,
produces rides (1% malformed) and accounts for every one. `serve=True` then keeps it all running with the API on
a printed URL until Ctrl-C. The last output line is one JSON object.

Whatever happens to the emulator (stopped, killed, restarted empty), the run ends with its ledger (in,
predicted, dead-lettered, lost) and a one-line reason, never a bare traceback. Exit status: 0 when
every record is accounted for, 1 when one is lost or misrouted or the run was cut short, 2 for a
configuration error, 130 when interrupted.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.topology import TopologyError
from lambda_fn.config import ConfigError
from servingkit.image.engine import EngineError
from servingkit.localcloud.accounting import PipelineSummary
from servingkit.localcloud.cloud import LocalCloud
from servingkit.localcloud.emulator import endpoint_environment
from servingkit.localcloud.faults import EmulatorFaultError
from servingkit.localcloud.resources import DEFAULT_MODEL_DIR, DEFAULT_RELEASE, ResourceError
from servingkit.serve import ensure_port_free, port_in_use_error

TARGETS = ("embedded", "localstack")


class DemoError(Exception):
    """A demo that cannot start as asked (e.g. a model directory that is not one)."""


@dataclass(frozen=True)
class DemoOptions:
    records: int = 10_000
    shards: int | None = None
    poison_rate: float = 0.01
    seed: int = 42
    rate: float | None = None
    target: str = "embedded"
    endpoint_url: str | None = None
    context: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    serve: bool = False
    host: str = "127.0.0.1"
    port: int = 8080
    model_dir: Path = DEFAULT_MODEL_DIR
    release: Path = DEFAULT_RELEASE
    progress: bool = True
    image: bool = False
    drift: bool = False  # servingkit demo --drift: prediction monitoring end to end (servingkit.drift_demo)


def err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def ensure_model(model_dir: Path, release: Path) -> None:
    """Train the demo model when the default build (build/model + build/release.json) is missing or stale: its
    release.json pins a sha256 the directory no longer has (written under an older digest rule, or half
    rewritten). A model the user named is never overwritten: a mismatch there stays LocalCloud's one-line error."""
    built = (model_dir / "MLmodel").is_file() and release.is_file()
    if model_dir != DEFAULT_MODEL_DIR or release != DEFAULT_RELEASE:
        if not built:
            raise DemoError(f"{model_dir} is not a model directory (or {release} is missing)")
        return
    if not built:
        err(f"{model_dir} is missing: training the demo model first (about 10 s) ...")
    elif _matches(model_dir, release):
        return
    else:
        err(f"{model_dir} is stale (not what {release} pins): retraining the demo model (about 10 s) ...")
    from servingkit.train import train

    result = train(export_dir=model_dir)
    err(f"trained: rmse {result.rmse:.2f} min, sha256 {result.sha256}")


def _matches(model_dir: Path, release: Path) -> bool:
    """The build is what its release.json pins (`servingkit.train.pins_match`); False for a manifest that cannot
    be read or pins nothing."""
    from servingkit.train import pins_match

    try:
        manifest = json.loads(release.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and pins_match(model_dir, manifest)


def resolve_endpoint(target: str, endpoint: str | None) -> tuple[str | None, str]:
    """(endpoint URL or None for the embedded emulator, label of the target); the CLI passes
    $AWS_ENDPOINT_URL as `endpoint` when no --endpoint-url is given."""
    if target == "localstack":
        from servingkit.localcloud import localstack

        err("LocalStack: reusing or starting it (the first start installs it) ...")
        return localstack.ensure_running(endpoint, log=err), "localstack"
    if endpoint:
        return endpoint, "endpoint"
    return None, "embedded-moto"


class Bars:
    """tqdm bars for producing and accounting (one line per stage when disabled)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bars: dict[str, Any] = {}
        self.stages: set[str] = set()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.stages:
            self.stages.add(stage)
            err(f"{'producing' if stage == 'produce' else 'reading back'} {total:,} records ...")
        if not self.enabled:
            return
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            label = {"produce": "produced ", "collect": "accounted"}.get(stage, stage)
            bar = self.bars[stage] = tqdm(total=total, desc=label, unit="rec", file=sys.stderr, leave=True)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def table(s: PipelineSummary, cloud: LocalCloud, target: str) -> str:
    topo = cloud.topology
    trig = topo.trigger
    ms = "n/a" if s.latency_ms_p50 is None else f"{s.latency_ms_p50:,.0f} ms / {s.latency_ms_p99:,.0f} ms"
    rows = [
        ("target", f"{target} {s.endpoint}"),
        ("streams", f"{topo.input_stream.name} ({s.input_shards} shards) -> {topo.output_stream.name}"),
        ("trigger", f"batch {trig.batch_size}, window {trig.batching_window_seconds} s, bisect {trig.bisect_on_error}"),
        ("model", f"{cloud.release.name} v{cloud.release.version} sha256 {cloud.release.sha256[:12]}..."),
        ("records in", f"{s.records_in:,} ({s.poison_in} malformed, {s.kpl_user_records} inside KPL aggregates)"),
        ("predicted", f"{s.predicted:,}"),
        ("dead-lettered", f"{s.dead_lettered:,}  " + ", ".join(f"{k}={v}" for k, v in s.dlq_reasons.items())),
        ("on-failure", f"{s.skipped_on_failure:,}"),
        ("LOST", f"{s.lost:,}"),
        ("never sent", f"{s.unsent:,} (not acknowledged by the emulator: not in the ledger)"),
        ("duplicates", f"{s.duplicates:,}"),
        ("misrouted", f"{s.misrouted:,}"),
        (
            "throughput",
            f"{s.throughput_rps:,.0f} records/s end to end ({s.seconds:.2f} s; produce {s.produce_seconds:.2f} s)",
        ),
        ("latency p50/p99", ms + "  (read time - approximate arrival)"),
        ("invocations", f"{s.poller.get('invocations')} (retries {s.poller.get('retries')})"),
        (
            "model load",
            f"{s.model_load_seconds} s (before traffic)" if s.model_load_seconds is not None else "in the cold start",
        ),
    ]
    if not s.unsent:
        rows = [r for r in rows if r[0] != "never sent"]
    errors = s.poller.get("errors") or []
    if errors:
        rows.append(("errors", f"{len(errors)}: " + "; ".join(e[:200] for e in errors[:3])))
    width = max(len(k) for k, _ in rows)
    lines = [f"  {k.ljust(width)}  {v}" for k, v in rows]
    lines.append("  sample predictions (minutes):")
    lines += [f"    {x['id']}: {x['prediction']:.1f}" for x in s.samples if isinstance(x.get("prediction"), float)]
    return "\n".join(lines)


#: Where `--serve` writes the running cloud's names, for a shell to source (docs/local.md).
SERVE_ENV = Path("build") / "demo-serve.env"

CLI = """\
Try the pipeline with the AWS CLI (fake credentials; nothing leaves this machine); these names are also
in {env_file} (`. {env_file}` in another shell):
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION={region}
  printf '%s' '{{"ride_id": "my-ride-1", "ride": {{"PULocationID": 161, "DOLocationID": 236, "trip_distance": 2.3,
    "pickup_datetime": "2026-03-02T08:15:00"}}}}' > ride.json
  aws --endpoint-url {endpoint} kinesis put-record --stream-name {input} --partition-key my-ride-1 \\
    --data fileb://ride.json
  # your prediction, from every output shard (the demo's own records are there too: filter by your id)
  for SHARD in $(aws --endpoint-url {endpoint} kinesis list-shards --stream-name {output} \\
                   --query 'Shards[].ShardId' --output text); do
    IT=$(aws --endpoint-url {endpoint} kinesis get-shard-iterator --stream-name {output} --shard-id "$SHARD" \\
         --shard-iterator-type TRIM_HORIZON --query ShardIterator --output text)
    aws --endpoint-url {endpoint} kinesis get-records --shard-iterator "$IT" --limit 10000 \\
      --query 'Records[].Data' --output text | tr '\\t' '\\n' | while read -r d; do echo "$d" | base64 -d; echo; done
  done | grep '"my-ride-1"'
  # dead letters (with their reason) of your records: filter by your partition key
  aws --endpoint-url {endpoint} sqs receive-message --queue-url {dlq} --max-number-of-messages 10 \\
    --query 'Messages[].Body' --output text | tr '\\t' '\\n' | grep '"my-ride-1"'
API (the same model, loaded from the emulator's S3):
  curl -s {url}/health
  curl -s {url}/predict -H 'Content-Type: application/json' -d @ride.json
Ctrl-C stops everything."""


def write_serve_env(path: Path, values: dict[str, str]) -> None:
    """The running cloud's names as shell assignments (`. build/demo-serve.env`)."""
    import shlex

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items()))


def serve(cloud: LocalCloud, host: str, port: int, handler: Any = None) -> None:
    """Serve the API handler (the same model, from the emulator's S3) until Ctrl-C; the poller keeps running.

    `handler`: the API function to call (the image, with --image); by default the handler in this process."""
    from servingkit.http_local import make_server

    assert cloud.resources is not None
    with port_in_use_error(host, port):
        http, url = make_server(handler, host=host, port=port)
    names = {
        "AWS_ENDPOINT": str(cloud.endpoint_url),
        "INPUT_STREAM": cloud.topology.input_stream.name,
        "OUTPUT_STREAM": cloud.topology.output_stream.name,
        "DLQ_URL": cloud.resources.dlq_url,
        "API_URL": url,
    }
    write_serve_env(SERVE_ENV, names)
    print(
        CLI.format(
            env_file=SERVE_ENV,
            region=cloud.region,
            endpoint=cloud.endpoint_url,
            input=cloud.topology.input_stream.name,
            output=cloud.topology.output_stream.name,
            dlq=cloud.resources.dlq_url,
            url=url,
        ),
        flush=True,
    )
    print(f"serving the API on {url}; the poller keeps scoring {cloud.topology.input_stream.name}", flush=True)
    try:
        http.serve_forever()
    except KeyboardInterrupt:
        err("stopping ...")
    finally:
        http.server_close()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(opts: DemoOptions) -> int:
    """The demo as `servingkit demo` runs it; returns the exit status (see the module's docstring)."""
    started = time.perf_counter()
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as cleanly as Ctrl-C
    ctx = dict(opts.context)
    if opts.serve:  # before the whole pipeline runs, not after
        ensure_port_free(opts.host, opts.port)
    ensure_model(opts.model_dir, opts.release)
    endpoint, target = resolve_endpoint(opts.target, opts.endpoint_url)
    if opts.drift:
        from servingkit.drift_demo import run_for_demo

        return run_for_demo(opts, endpoint)
    bars = Bars(opts.progress)
    err(f"starting the local cloud on {endpoint or 'an embedded moto server'} ...")
    summary: PipelineSummary | None = None
    stopped: str | None = None
    notes: list[str] = []
    try:
        with ExitStack() as stack:
            function: Any = None
            if opts.image:
                from servingkit.localcloud.image_session import image_session

                session = stack.enter_context(image_session(progress=err))

                def function(env: dict[str, str]) -> Any:
                    return session.scorer(env, ctx, name="serving-local-scorer")

            cloud = stack.enter_context(
                LocalCloud(
                    endpoint_url=endpoint,
                    ctx=ctx,
                    shards=opts.shards,
                    model_dir=opts.model_dir,
                    release=opts.release,
                    function=function,
                )
            )
            try:
                summary = cloud.run(
                    opts.records,
                    poison_rate=opts.poison_rate,
                    seed=opts.seed,
                    timeout_s=opts.timeout,
                    progress=bars,
                    rate=opts.rate,
                )
            finally:
                bars.close()
            print(table(summary, cloud, target), flush=True)
            if opts.serve and summary.stopped is None:
                api = None
                if opts.image:
                    assert cloud.resources is not None and cloud.endpoint_url
                    api_env = {**cloud.resources.environment, **endpoint_environment(cloud.endpoint_url, cloud.region)}
                    api = stack.enter_context(session.api(api_env, ctx, name="serving-local-api"))
                serve(cloud, opts.host, opts.port, api)
        notes = cloud.notes
    except (TopologyError, ResourceError, ConfigError, EngineError) as exc:
        err(f"error: {exc}")
        return 2
    except EmulatorFaultError as exc:  # before the first record: nothing produced, nothing to account for
        stopped = f"{exc.reason}, while starting"
    except KeyboardInterrupt:
        if summary is None:
            stopped = "interrupted"
    finally:
        if target == "localstack":
            from servingkit.localcloud import localstack

            localstack.stop()  # only an instance this process started; a reused one keeps running
    return report(summary, stopped, notes, target, opts.rate, started, image=opts.image)


def report(
    summary: PipelineSummary | None,
    stopped: str | None,
    notes: list[str],
    target: str,
    rate: float | None,
    t0: float,
    *,
    image: bool = False,
) -> int:
    """The ledger line, the reason when the run was cut short, and the JSON figures; the exit status."""
    stopped = stopped or (summary.stopped if summary else None)
    records = summary.records_in if summary else 0
    predicted = summary.predicted if summary else 0
    dead = summary.dead_lettered if summary else 0
    lost = summary.lost if summary else 0
    misrouted = summary.misrouted if summary else 0
    ok = stopped is None and lost == 0 and misrouted == 0
    err(f"ledger: {records:,} in, {predicted:,} predicted, {dead:,} dead-lettered, {lost:,} lost")
    for note in notes:
        err(f"note: {note}")
    if stopped:
        unaccounted = f"; {lost:,} acknowledged records unaccounted for" if lost else ""
        err(f"STOPPED: {stopped}{unaccounted}")
    elif not ok:
        err(f"FAILED: {lost} records lost, {misrouted} misrouted")
    figures = {
        "target": target,
        "image": image,
        "records": records,
        "predicted": predicted,
        "dead_lettered": dead,
        "skipped_on_failure": summary.skipped_on_failure if summary else 0,
        "lost": lost,
        "duplicates": summary.duplicates if summary else 0,
        "foreign": summary.foreign if summary else 0,
        "unsent": summary.unsent if summary else 0,
        "shards": summary.input_shards if summary else None,
        "rate": rate,
        "throughput_rps": summary.throughput_rps if summary else None,
        "latency_ms_p50": summary.latency_ms_p50 if summary else None,
        "latency_ms_p99": summary.latency_ms_p99 if summary else None,
        "pipeline_seconds": summary.seconds if summary else None,
        "wall_seconds": round(time.perf_counter() - t0, 2),
        "stopped": stopped,
        "ok": ok,
    }
    print(json.dumps(figures), flush=True)
    if stopped == "interrupted":
        return 130
    return 0 if ok else 1
