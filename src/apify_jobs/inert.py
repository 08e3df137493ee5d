"""Text from outside (server messages, scraped values, output names made from them) made inert wherever it
is shown: on a terminal, in a CI log, in XML. Outputs themselves are the Actor's data and never pass here.

- Terminals and logs: C0 and C1 controls (tab and newline aside), DEL and the bidirectional overrides
  become visible `\\uXXXX` escapes: no escape sequence (clear screen, window title, a fake green line), no
  carriage return over a line, no reordered text. In JSON the same escape is the character itself, so JSON
  printed through here stays equal.
- GitHub Actions executes lines that begin with `::` (`::add-mask::`, `::error::`, `::stop-commands::`):
  no line printed here begins with it (its first colon is escaped the same way).
- XML 1.0 forbids most C0 controls and U+FFFE/U+FFFF even as references: they become `\\uXXXX` text, so
  JUnit always parses.
"""

from __future__ import annotations

import re

_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_SHOWN_ESCAPED = {code: f"\\u{code:04x}" for code in [*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0),
                                                      *(ord(c) for c in _BIDI)]}
_WORKFLOW_COMMAND = re.compile(r"^(\s*):(?=:)", re.MULTILINE)
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def shown(text: str) -> str:
    """``text`` safe to print on a terminal or into a CI log (newlines and tabs kept)."""
    return _WORKFLOW_COMMAND.sub(r"\1\\u003a", text.translate(_SHOWN_ESCAPED))


def xml_text(text: str) -> str:
    """``text`` that XML 1.0 can hold (ElementTree escapes the rest: &, <, >, quotes)."""
    return _XML_FORBIDDEN.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
