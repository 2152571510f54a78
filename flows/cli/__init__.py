"""The ``landmarks`` command line: one module per group of commands, gathered on one app.

``common`` holds the app, the shared options and helpers; ``pipeline`` (run, refresh),
``crawl`` (crawl, attribution), ``stages`` (clean, dedup, split, augment, verify), ``train``
(train, evaluate, runs, predict, export, sweep, leakage), ``deploy`` (serve, deploy, retrain) and
``review`` (suspects, review) register their commands on it, in that order; ``errors`` turns any
failure into one ``error:`` line.
"""

from __future__ import annotations

from importlib import import_module

from flows.cli.common import app

# Each module registers its commands on ``app``; this order is the order of ``landmarks --help``.
for _module in ("pipeline", "crawl", "stages", "train", "deploy", "review"):
    import_module(f"flows.cli.{_module}")

__all__ = ["app"]
