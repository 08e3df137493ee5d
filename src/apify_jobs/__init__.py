"""apify-jobs: run checked-in YAML job files through Apify's run-sync endpoints."""

__version__ = "0.1.0"
