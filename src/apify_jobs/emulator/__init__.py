"""A local stand-in for the Apify API (see server.py)."""

from apify_jobs.emulator.server import Behaviour, Emulator, Script, load_script

__all__ = ["Behaviour", "Emulator", "Script", "load_script"]
