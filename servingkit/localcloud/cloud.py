"""Producer → input stream → scorer (the real handler, invoked by the local poller) → output stream / DLQ.

`run_pipeline()` works against any endpoint that speaks the AWS APIs: the embedded moto server by
default, or an existing one (LocalStack) given by URL. It produces realistic rides with ~1% poison of
several kinds, reads the output stream and the queues back until every record is accounted for (or a
bounded wait ends) and returns what happened: predicted, dead-lettered, skipped, lost, duplicates,
throughput and end-to-end latency (reader's clock minus the input record's approximate arrival).

If the emulator stops answering or comes back empty mid-run, the run stops there and still returns its
summary: what was acknowledged, accounted for and lost, with the reason in `stopped` (one line).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from infra.topology import LABELS_TRIGGER, Ctx, Topology, topology
from lambda_fn.config import ENV_FIELDS, Env
from servingkit.localcloud.accounting import PipelineSummary
from servingkit.localcloud.collector import Collector, read_arrivals
from servingkit.localcloud.emulator import (
    DEFAULT_REGION,
    endpoint_environment,
    patched_environ,
    pointed_at,
    start_emulator,
)
from servingkit.localcloud.faults import EmulatorFaultError, client_config, emulator_fault
from servingkit.localcloud.poller import KinesisPoller
from servingkit.localcloud.resources import (
    DEFAULT_MODEL_DIR,
    DEFAULT_RELEASE,
    ExportedModel,
    LabelsResources,
    Resources,
    provision,
)
from servingkit.localcloud.traffic import Ledger, Progress, make_units, produce


class LocalCloud:
    """Emulator (or a given endpoint), the stack's resources, the model and the running poller."""

    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        ctx: Mapping[str, Any] | None = None,
        shards: int | None = None,
        model_dir: str | Path = DEFAULT_MODEL_DIR,
        release: str | Path = DEFAULT_RELEASE,
        region: str = DEFAULT_REGION,
        handler: Callable[[dict[str, Any], Any], Any] | None = None,
        max_concurrency: int = 1,
        warm: bool = True,
        environment: Mapping[str, str] | None = None,
        function: Callable[[dict[str, str]], Callable[[dict[str, Any], Any], Any]] | None = None,
    ) -> None:
        """`function`, given the scorer's environment, makes the handler the poller invokes (the image runner);
        by default the handler runs in this process."""
        context = dict(ctx or {})
        context.setdefault(Ctx.STAGE, "local")
        context.setdefault(Ctx.PREFIX, f"serving-local-{secrets.token_hex(3)}")
        if shards is not None:
            context[Ctx.INPUT_SHARDS] = shards
        self.topology: Topology = topology(context)
        self.endpoint_url = endpoint_url
        self.region = region
        self.release = ExportedModel.load(model_dir, release)
        self.handler = handler
        self.max_concurrency = max_concurrency
        self.warm = warm
        self.extra_env = dict(environment or {})
        self.function = function
        self.last_ledger: Ledger = {}
        self.last_collector: Collector | None = None
        self.model_load_seconds: float | None = None
        self.resources: Resources | None = None
        self.poller: KinesisPoller | None = None
        self.labels_poller: KinesisPoller | None = None  # with monitoring_labels_stream=true
        self.clients: dict[str, Any] = {}
        self.notes: list[str] = []  # what went wrong while shutting down after another error
        self.last_stopped: str | None = None  # why the last run ended early (None: it completed)
        self._stack = ExitStack()

    def __enter__(self) -> LocalCloud:
        try:
            self._start()
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            fault = emulator_fault(exc, self.endpoint_url) if isinstance(exc, Exception) else None
            if fault is not None:
                raise fault from exc
            raise
        return self

    def _start(self) -> None:
        import boto3

        if self.endpoint_url is None:
            emulator = start_emulator()
            self._stack.callback(emulator.stop)
            self.endpoint_url = emulator.endpoint_url
        self._stack.enter_context(pointed_at(self.endpoint_url, self.region))
        self.clients = {name: boto3.client(name, config=client_config()) for name in ("kinesis", "sqs", "s3")}
        self.resources = provision(self.topology, self.release, self.clients, self.region)
        if self.resources.labels is not None:
            self._start_labels(self.resources.labels)
        if self.function is not None:
            # Its own process: the scorer's settings and the emulator's endpoint, nothing of this process.
            image = self.function(
                {**self.resources.environment, **endpoint_environment(self.endpoint_url, self.region), **self.extra_env}
            )
            self._stack.callback(getattr(image, "stop", lambda: None))
            self._start_poller(image)
            return
        cache = tempfile.mkdtemp(prefix="servingkit-model-")
        self._stack.callback(shutil.rmtree, cache, True)
        scorer_env = {
            **self.resources.environment,
            Env.MODEL_CACHE_DIR: cache,
            "POWERTOOLS_METRICS_DISABLED": os.environ.get("POWERTOOLS_METRICS_DISABLED", "true"),
            "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
            **self.extra_env,
        }
        others = tuple(name for name in ENV_FIELDS if name not in scorer_env)
        self._stack.enter_context(patched_environ(scorer_env, unset=others))
        from lambda_fn import runtime

        runtime.reset()
        self._stack.callback(runtime.reset)
        if self.warm:
            # Like provisioned concurrency: load the model before traffic, so latency shows steady state.
            self.model_load_seconds = round(runtime.get_model().load_seconds, 3)
        if self.handler is None:
            from lambda_fn.handler import stream_handler

            self._start_poller(stream_handler)
        else:
            self._start_poller(self.handler)

    def _start_labels(self, labels: LabelsResources) -> None:
        """The labels function (`labels_handler`, in this process) on the labels stream, with the stack's event
        source: each batch of labels one object under `<prefix>/labels/` of the (model) bucket."""
        from lambda_fn.config import get_labels_settings
        from lambda_fn.handler import labels_handler
        from lambda_fn.monitoring import label_stream

        metrics_off = os.environ.get("POWERTOOLS_METRICS_DISABLED", "true")
        self._stack.enter_context(patched_environ({**labels.environment, "POWERTOOLS_METRICS_DISABLED": metrics_off}))
        for cached in (get_labels_settings, label_stream.labels_s3):
            clear = getattr(cached, "cache_clear", None)
            if clear is not None:
                clear()
                self._stack.callback(clear)
        self.labels_poller = KinesisPoller(
            kinesis=self.clients["kinesis"],
            stream_arn=labels.stream_arn,
            handler=labels_handler,
            trigger=LABELS_TRIGGER,
            sqs=self.clients["sqs"],
            on_failure_url=labels.on_failure_url,
            function_name="local-labels",
            region=self.region,
        )
        self.labels_poller.start()
        self._stack.callback(self.labels_poller.stop)

    def _start_poller(self, handler: Callable[[dict[str, Any], Any], Any]) -> None:
        assert self.resources is not None
        self.poller = KinesisPoller(
            kinesis=self.clients["kinesis"],
            stream_arn=self.resources.input_stream_arn,
            handler=handler,
            trigger=self.topology.trigger,
            sqs=self.clients["sqs"],
            on_failure_url=self.resources.on_failure_url,
            region=self.region,
            max_concurrency=self.max_concurrency,
        )
        self.poller.start()
        self._stack.callback(self.poller.stop)

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        """Shut everything down; a failure doing so never replaces the error that ended the run (a poller
        thread still blocked on a dead emulator is noted, and the original exception propagates)."""
        try:
            self._stack.close()
        except Exception as cleanup:
            if exc is None and self.last_stopped is None:
                raise
            self.notes.append(f"while shutting down: {type(cleanup).__name__}: {cleanup}")

    def health(self) -> EmulatorFaultError | None:
        """Does the emulator still answer, with the stack's input stream? None when it does."""
        assert self.resources is not None
        try:
            self.clients["kinesis"].describe_stream_summary(StreamName=self.resources.topology.input_stream.name)
        except Exception as exc:
            fault = emulator_fault(exc, self.endpoint_url)
            if fault is None:
                raise
            return fault
        return None

    def run(
        self,
        records: int = 10_000,
        *,
        poison_rate: float = 0.01,
        kpl_share: float = 0.05,
        seed: int = 42,
        timeout_s: float | None = None,
        progress: Progress | None = None,
        samples: int = 5,
        rate: float | None = None,
    ) -> PipelineSummary:
        """Produce `records` user records and account for every one of them.

        An emulator fault (it stops answering, or restarted empty) ends the run early, never with an
        exception: the summary says what was acknowledged and accounted for, and why it stopped.
        """
        assert self.resources is not None and self.poller is not None, "use LocalCloud as a context manager"
        units = make_units(records, poison_rate=poison_rate, kpl_share=kpl_share, seed=seed)
        collector = Collector(self.clients, self.resources)
        ledger: Ledger = {}
        stopped: str | None = None
        started = produced = time.time()
        try:
            collector.start()
            try:
                produce(
                    self.clients["kinesis"], self.resources.topology.input_stream.name, units, progress, rate, ledger
                )
            finally:
                produced = time.time()
                collector.expect(ledger)
            limit = timeout_s if timeout_s is not None else 60.0 + records / 200
            stopped = collector.wait(limit, progress, health=self.health)
        except KeyboardInterrupt:
            stopped = "interrupted"
        except Exception as exc:
            fault = emulator_fault(exc, self.endpoint_url)
            if fault is None:
                raise
            phase = "producing" if len(ledger) < sum(len(u.items) for u in units) else "reading back"
            stopped = f"{fault.reason}, while {phase}"
        finally:
            collector.stop()
        self.last_ledger, self.last_collector, self.last_stopped = ledger, collector, stopped
        try:
            arrivals = read_arrivals(self.clients["kinesis"], self.resources.topology.input_stream.name)
        except Exception as exc:
            if emulator_fault(exc, self.endpoint_url) is None:
                raise
            arrivals = {}  # latencies unknown: the emulator holding the input is gone
        summary = collector.summary(
            endpoint=self.endpoint_url or "",
            started=started,
            produce_seconds=produced - started,
            poller=self.poller,
            arrivals=arrivals,
            n_samples=samples,
        )
        summary.model_load_seconds = self.model_load_seconds
        summary.unsent = sum(len(u.items) for u in units) - len(ledger)
        summary.stopped = stopped
        summary.complete = summary.complete and stopped is None
        return summary


def run_pipeline(
    *,
    records: int = 10_000,
    endpoint_url: str | None = None,
    shards: int | None = None,
    poison_rate: float = 0.01,
    kpl_share: float = 0.05,
    seed: int = 42,
    ctx: Mapping[str, Any] | None = None,
    model_dir: str | Path = DEFAULT_MODEL_DIR,
    release: str | Path = DEFAULT_RELEASE,
    timeout_s: float | None = None,
    progress: Progress | None = None,
    region: str = DEFAULT_REGION,
    rate: float | None = None,
) -> PipelineSummary:
    """Set up, produce, score and account for `records` records on `endpoint_url` (None: embedded moto)."""
    with LocalCloud(
        endpoint_url=endpoint_url, ctx=ctx, shards=shards, model_dir=model_dir, release=release, region=region
    ) as cloud:
        return cloud.run(
            records,
            poison_rate=poison_rate,
            kpl_share=kpl_share,
            seed=seed,
            timeout_s=timeout_s,
            progress=progress,
            rate=rate,
        )
