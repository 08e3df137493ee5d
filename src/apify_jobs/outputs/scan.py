"""The structure of a JSON stream, found without building a value: how deep it nests and how many values
sit at one depth (the items of a top-level array), at a speed close to the download's.

Each chunk is reduced in C before anything is looked at byte by byte: escape sequences are removed (`re`),
every byte but quotes and `[]{},` is dropped (`bytes.translate`), strings are removed (all at once when
none holds a bracket or comma, else by a parity scan), and what is left, ~6 % of a typical dataset, is
walked with numpy (depth as a running sum). Nothing is kept from one chunk to the next but a few counters:
memory is flat whatever the answer's size or nesting.

It checks structure, not every token: a stream it counts may still be invalid JSON in ways that do not
change the count (a bad number, a missing colon). Checks that build values (`schema`) parse every item.
"""

from __future__ import annotations

import re
from typing import Any

_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{},')
_QUOTE, _COMMA = 34, 44


class TooDeep(Exception):
    def __init__(self, depth: int):
        super().__init__(depth)
        self.depth = depth


class Unbalanced(Exception):
    """More closing brackets than opening ones: not JSON."""


class Structure:
    """Feed it a JSON stream's bytes; `separators` counts the commas at ``depth`` (outside strings)."""

    def __init__(self, depth: int, max_depth: int):
        import numpy  # only when items are counted or built (~60 ms to import)

        self._np: Any = numpy
        self._step = numpy.zeros(256, dtype=numpy.int8)  # what each byte does to the depth
        self._step[[ord("["), ord("{")]] = 1
        self._step[[ord("]"), ord("}")]] = -1
        self.counted_depth = depth
        self.max_depth = max_depth
        self.depth = 0
        self.separators = 0
        self.closed = 0  # how often the depth came back to 0 (values ended at the top level)
        self._in_string = False
        self._escaped_first = False  # the chunk before ended inside an escape sequence

    def reset(self) -> None:
        """A new value starts (the next JSONL line)."""
        self.depth, self._in_string, self._escaped_first = 0, False, False

    def feed(self, chunk: bytes) -> None:
        if self._escaped_first:
            chunk, self._escaped_first = chunk[1:], False
        if b"\\" in chunk:
            chunk = _ESCAPE.sub(b"", chunk)
            if chunk.endswith(b"\\"):  # its escaped character is the next chunk's first byte
                chunk, self._escaped_first = chunk[:-1], True
        kept = chunk.translate(None, _NOT_STRUCTURE)
        if not kept:
            return
        if self._in_string:
            kept = b'"' + kept  # the string this chunk starts inside, opened again
        quotes = kept.count(b'"')
        self._in_string = bool(quotes & 1)
        if self._in_string:  # what follows the last quote is inside a string that goes on in the next chunk
            kept = kept[:kept.rindex(b'"')]
        if kept.count(b'""') * 2 == quotes - self._in_string:  # no string holds a bracket or a comma
            structure = kept.translate(None, b'"')
        else:  # drop what lies between quote pairs
            structure = self._outside_strings(kept)
        if structure:
            self._walk(structure)

    def _outside_strings(self, kept: bytes) -> bytes:
        np = self._np
        codes = np.frombuffer(kept, dtype=np.uint8)
        quotes = codes == _QUOTE
        inside = np.bitwise_xor.accumulate(quotes)  # True from an opening quote up to (not at) its closing one
        return bytes(codes[~(inside | quotes)])

    def _walk(self, structure: bytes) -> None:
        np = self._np
        codes = np.frombuffer(structure, dtype=np.uint8)
        depths = np.cumsum(self._step[codes], dtype=np.int32) + self.depth
        deepest = int(depths.max())
        if deepest > self.max_depth:
            raise TooDeep(deepest)
        if int(depths.min()) < 0:
            raise Unbalanced()
        self.separators += int(np.count_nonzero((codes == _COMMA) & (depths == self.counted_depth)))
        self.closed += int(np.count_nonzero((depths == 0) & (codes != _COMMA)))  # a bracket closed at the top
        self.depth = int(depths[-1])
