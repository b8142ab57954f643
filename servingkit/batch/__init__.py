"""Offline (batch) scoring with the Lambda's scoring core: a `local` engine and a `spark` engine.

    from servingkit.batch import JobConfig, model_env, run_local
    summary = run_local(["data/*.parquet"], "out/", JobConfig(model_env(os.environ)))

`servingkit.batch.spark.run_spark` takes the same arguments plus a Spark session.
"""

from servingkit.batch.core import ChunkScorer, JobConfig, model_env
from servingkit.batch.errors import BatchJobError
from servingkit.batch.local import Summary, run_local

__all__ = ["BatchJobError", "ChunkScorer", "JobConfig", "Summary", "model_env", "run_local"]
