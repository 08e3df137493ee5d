"""The token must never be printed, logged or written: everything that leaves the process passes through here.

The token only ever goes into the Authorization header, so it should never reach any text we write; this
is the second line of defence for the case it does anyway (a proxy or server echoing headers back in an
error message that we then report). It is masked in every form an error message can show it: as is,
escaped (`repr`, JSON), URL-encoded, and inside Base64 (a `user:token` Basic credential, say) at any
alignment — whatever its length.
"""

from __future__ import annotations

import base64
import html
import json
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "[redacted]"
CUT = "\u2026"  # where a message was cut: a secret cut there in two loses its first part too (`cut`)
PARTIAL = 4  # the shortest end of a cut-off secret form that is masked


def cut(text: str, limit: int) -> str:
    """``text`` to at most ``limit`` characters, marked where it was cut, so that a redactor masks what is
    left of a secret the cut fell inside."""
    return text if len(text) <= limit else text[:limit] + CUT


class Redactor:
    """The secrets one invocation has seen (the token, `${{ secrets.X }}` values), each in every form it can
    take, and their masking. One per invocation, carried in its Environment: nothing is process-wide."""

    def __init__(self) -> None:
        self._forms: set[str] = set()
        self._ordered: list[str] = []

    def register(self, secret: str | None) -> None:
        if not secret:
            return
        raw = secret.encode("utf-8")
        forms = {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
                 quote(secret, safe=""), quote_plus(secret, safe=""), *_base64_cores(raw),
                 # as a server or a proxy may echo it: upper- or lower-cased, hex, HTML entities
                 secret.upper(), secret.lower(), raw.hex(), raw.hex().upper(), html.escape(secret, quote=True),
                 "".join(f"&#{ord(c)};" for c in secret), "".join(f"&#x{ord(c):x};" for c in secret)}
        forms |= {json.dumps(form)[1:-1] for form in list(forms)}  # each escaped once more (JSON in JSON)
        self._forms.update(form for form in forms if form)
        self._ordered = sorted(self._forms, key=len, reverse=True)  # longer forms first: a form may contain another

    def __call__(self, text: str) -> str:
        """``text`` with every form of every secret masked, and what a cut left of one before a CUT mark."""
        for form in self._ordered:
            if form in text:
                text = text.replace(form, MASK)
        if CUT in text and self._ordered:
            text = CUT.join(self._without_partial(piece) for piece in text.split(CUT)[:-1]) + CUT + \
                text.split(CUT)[-1]
        return text

    def _without_partial(self, head: str) -> str:
        """``head`` (the text before a cut) without the longest beginning of a secret form it ends in."""
        longest = 0
        for form in self._ordered:
            for size in range(min(len(form) - 1, len(head)), PARTIAL - 1, -1):
                if size > longest and head.endswith(form[:size]):
                    longest = size
                    break
        return head[:-longest] + MASK if longest else head

    def values(self, value: Any) -> Any:
        """Every string in ``value`` (dicts, lists) masked: what is serialized next (JSON, SQLite) cannot
        carry a secret in any form its escaping would make (a quote, a backslash)."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {key: self.values(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.values(item) for item in value]
        return value


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
