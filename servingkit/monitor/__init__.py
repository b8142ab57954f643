"""The monitor's computations outside the image: drift, data quality, late labels and the window report.

`drift` (PSI, Jensen-Shannon, KS, Wasserstein), `quality` (SageMaker-style data-quality checks), `labels`
(ground-truth join and metrics), `report` (the window's JSON summary and HTML report). Not wired yet into the
monitor function, CDK or the CLI (see docs/monitoring.md).
"""
