"""landmark-pipeline core: every decision and computation, free of orchestration."""

__version__ = "0.1.0"
