"""`servingkit`: every user job of the kit as one command with subcommands (`servingkit --help`).

Each module here only turns options into arguments of a library function (servingkit.train, .publish,
.demo, .serve, .batch_job, .rides, .localstack_jobs, .bench.*); heavy imports happen inside the command,
so `--help` stays quick.
"""

from __future__ import annotations

import click

from servingkit.cli import (
    batch,
    bench,
    demo,
    dlq,
    localstack,
    monitor,
    predictions,
    publish,
    release,
    rides,
    serve,
    train,
)

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True, "max_content_width": 110}


@click.group("servingkit", context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="serverless-model-serving-kit", prog_name="servingkit")
def main() -> None:
    """Serve scikit-learn and MLflow models on AWS Lambda, and run the whole pipeline locally.

    Every command explains its options with --help. AWS is reached with the standard configuration
    (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_<SERVICE>); MLflow with MLFLOW_TRACKING_URI.
    """


for command in (
    train.train,
    publish.publish,
    publish.promote,
    demo.demo,
    serve.serve,
    batch.batch,
    rides.make_rides,
    localstack.localstack,
    bench.bench,
    monitor.monitor,
    dlq.dlq,
    predictions.predictions,
    release.release,
):
    main.add_command(command)

__all__ = ["main"]
