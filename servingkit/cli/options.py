"""Options shared by several commands, defined once."""

from __future__ import annotations

import click

from servingkit.tracking import DEFAULT_TRACKING_URI, ENV

tracking_uri_option = click.option(
    "--tracking-uri",
    envvar=ENV,
    show_envvar=True,
    default=DEFAULT_TRACKING_URI,
    help="MLflow tracking and registry URI, the same for train, publish and promote.",
)
