"""Prediction monitoring inside the image: the release's reference, per-batch profiles, capture, and the monitor.

numpy only (no pandas import): `reference` (training bins), `profile` (mergeable counts per scored batch),
`sampling` (deterministic keyed sampling by record id), `capture` (record shape, S3 keys, gzip JSON lines);
the monitor function's computations: `drift` (PSI, Jensen-Shannon, KS, Wasserstein), `quality` (SageMaker-style
data-quality checks), `labels` (ground-truth join and metrics), `report` (the window's JSON summary and HTML);
`release_reference` (the release's pinned reference, verified), `window` (the scheduled window job, pure) and
`s3_store` (its S3 and CloudWatch I/O; boto3 imported on use), `compaction` (hourly profiles), `quality_job` and
`s3_labels` (model quality from late labels); `label_stream` (the labels stream's function); on the scorer's hot
path, `emit` (capture and profiles per batch or request, bounded, best effort) and `setup` (the CAPTURE_* settings
→ the emitter), imported only when CAPTURE_BUCKET is set.
"""

from lambda_fn.monitoring.profile import FeatureCounts, Profile, ProfileError, merge_all
from lambda_fn.monitoring.reference import FeatureReference, Reference, ReferenceFormatError
from lambda_fn.monitoring.sampling import Sampler, hash_id, sampled

__all__ = [
    "FeatureCounts",
    "FeatureReference",
    "Profile",
    "ProfileError",
    "Reference",
    "ReferenceFormatError",
    "Sampler",
    "hash_id",
    "merge_all",
    "sampled",
]
