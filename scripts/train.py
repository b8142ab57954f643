#!/usr/bin/env python3
"""Train the demo taxi ride-duration model, log it to MLflow and export it for S3 (build/model)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from servingkit.train import DEFAULT_EXPORT, train


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=60_000, help="generated rides (80%% train, 20%% test)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns.db)"
    )
    parser.add_argument("--export-dir", type=Path, default=DEFAULT_EXPORT)
    parser.add_argument("--no-register", action="store_true", help="log the run without registering a version")
    args = parser.parse_args()
    print(f"training on {args.rows:,} generated rides (seed {args.seed}) ...", flush=True)
    result = train(
        rows=args.rows,
        seed=args.seed,
        tracking_uri=args.tracking_uri,
        export_dir=args.export_dir,
        register=not args.no_register,
    )
    print(f"run {result.run_id}: rmse {result.rmse:.2f} min (predict-the-mean baseline {result.baseline_rmse:.2f} min)")
    print(
        f"logged model {result.model_uri}"
        + (f", registered version {result.registered_version}" if result.registered_version else "")
    )
    print(f"exported {result.export_dir} sha256 {result.sha256}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
