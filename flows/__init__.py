"""Flows compose tasks; the CLI lives in :mod:`flows.cli`."""

import tasks  # noqa: F401  (sets Prefect environment defaults before prefect is imported)
