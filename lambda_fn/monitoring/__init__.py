"""Prediction monitoring inside the image: the release's reference, per-batch profiles, capture sampling and records.

numpy only (no pandas import): `reference` (training bins), `profile` (mergeable counts per scored batch),
`sampling` (deterministic keyed sampling by record id), `capture` (record shape, S3 keys, gzip JSON lines).
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
