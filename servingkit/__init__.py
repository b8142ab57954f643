"""Tooling around the Lambda image: demo data and model, local cloud, publishing, benchmarks.

Nothing here ships in the image; `lambda_fn` must not import it.
"""
