"""Job file → resolved jobs: the YAML loader, the schema, expressions and resolution."""

from apify_jobs.jobfile.resolve import deep_merge, discover, load

__all__ = ["deep_merge", "discover", "load"]
