"""The EMR Serverless job's entry point (infra/batch_emr.py uploads this file): `servingkit batch` with the
job's arguments, e.g. `spark-submit batch_score.py s3://bucket/rides/ --output s3://bucket/scored/ --engine spark`.

lambda_fn and servingkit come from the job's --py-files zip; click from its Python environment.
"""

from servingkit.cli.batch import batch

if __name__ == "__main__":
    batch.main(prog_name="batch_score.py")
