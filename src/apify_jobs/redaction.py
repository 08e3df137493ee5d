"""The token must never be printed, logged or written: everything that leaves the process passes through here.

The token only ever goes into the Authorization header, so it should never reach any text we write; this
is the second line of defence for the case it does anyway (a proxy or server echoing headers back in an
error message that we then report).
"""

from __future__ import annotations

_secrets: set[str] = set()
MASK = "[redacted]"


def register(secret: str | None) -> None:
    if secret and len(secret) >= 8:  # shorter strings would mask innocent words; real tokens are ~46 characters
        _secrets.add(secret)


def redact(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text
