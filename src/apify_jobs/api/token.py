"""The API token: read from APIFY_TOKEN, checked, and given to the invocation's redactor before anything can
show it. It then goes only into the Authorization header (`api/client.py`)."""

from __future__ import annotations

from collections.abc import Mapping

from apify_jobs.errors import UsageError
from apify_jobs.redaction import Redactor


def token_from(environ: Mapping[str, str], redactor: Redactor) -> str:
    """APIFY_TOKEN, with the whitespace a pasted secret or `$(cat token.txt)` brings stripped; anything else
    that cannot be a token is refused with a message that does not show it."""
    raw = environ.get("APIFY_TOKEN")
    if raw is None:
        raise UsageError("APIFY_TOKEN is not set: export your Apify API token, or add --emulator to try the "
                         "jobs locally")
    redactor.register(raw)
    token = raw.strip()
    if not token:
        raise UsageError("APIFY_TOKEN is empty: export your Apify API token, or add --emulator to try the jobs "
                         "locally")
    odd = next((index for index, char in enumerate(token) if not char.isprintable()), None)
    if odd is not None:
        raise UsageError(f"APIFY_TOKEN has a control or non-printable character (at position {odd + 1} of "
                         f"{len(token)}); copy the token again")
    redactor.register(token)
    return token
