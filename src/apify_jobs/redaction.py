"""The token must never be printed, logged or written: everything that leaves the process passes through here.

The token only ever goes into the Authorization header, so it should never reach any text we write; this
is the second line of defence for the case it does anyway (a proxy or server echoing headers back in an
error message that we then report). It is masked in every form an error message can show it: as is,
escaped (`repr`, JSON), URL-encoded, and inside Base64 (a `user:token` Basic credential, say) at any
alignment — whatever its length.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus

MASK = "[redacted]"


class Redactor:
    """The secrets one invocation has seen (the token, `${{ secrets.X }}` values), each in every form it can
    take, and their masking. One per invocation, carried in its Environment: nothing is process-wide."""

    def __init__(self) -> None:
        self._forms: set[str] = set()
        self._ordered: list[str] = []

    def register(self, secret: str | None) -> None:
        if not secret:
            return
        forms = {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
                 quote(secret, safe=""), quote_plus(secret, safe=""), *_base64_cores(secret.encode("utf-8"))}
        self._forms.update(form for form in forms if form)
        self._ordered = sorted(self._forms, key=len, reverse=True)  # longer forms first: a form may contain another

    def __call__(self, text: str) -> str:
        """``text`` with every form of every secret masked."""
        for form in self._ordered:
            if form in text:
                text = text.replace(form, MASK)
        return text


def _base64_cores(secret: bytes) -> set[str]:
    """The part of the Base64 of ``prefix + secret + suffix`` that depends on the secret alone, for each of the
    three alignments a prefix can give it: masking these masks the secret inside any Base64 text."""
    cores = set()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + secret).decode("ascii").rstrip("=")
        start = -(-shift * 8 // 6)  # the first character made of the secret's bits only
        end = (shift + len(secret)) * 8 // 6  # the last whole character of them
        core = encoded[start:end]
        if len(core) >= 4:  # shorter is too likely to occur by chance in other Base64
            cores.add(core)
    return cores
