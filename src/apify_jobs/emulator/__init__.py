"""A local stand-in for the Apify API. server.py serves it; one module per endpoint family answers:
run_sync.py, runs.py (listing, run, abort), storage.py (records, dataset items, task input)."""

from apify_jobs.emulator.script import Behaviour, Script, load_script
from apify_jobs.emulator.server import Emulator

__all__ = ["Behaviour", "Emulator", "Script", "load_script"]
