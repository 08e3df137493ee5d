"""One invocation's surroundings (as httpie's Environment): its environment variables, the redactor that
holds the secrets it has seen, and its settings. `main` makes one per invocation and every command takes it:
no process-wide state, so many invocations can share a process (the tests run hundreds)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from apify_jobs.redaction import Redactor
from apify_jobs.settings import Settings


@dataclass
class Environment:
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    redactor: Redactor = field(default_factory=Redactor)
    settings: Settings = field(default_factory=lambda: Settings.from_environ(os.environ))
