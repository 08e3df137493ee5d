"""The readers behind `expect:`: each is fed the output's bytes as they arrive and finds its items, linear in
the answer's size and bounded in memory whatever its shape.

- JSON: a top-level array's items are counted by `scan.Structure` (nothing built); when values are needed,
  each item is decoded on its own once it is whole (`json`'s C decoder). A document that is not an array
  is one item.
- JSONL: lines with content, found inside each chunk (the tail is never joined again to every chunk).
- CSV: records as Python's `csv` module (RFC 4180) reads them, a quoted field's line ends included.

Every reader has the limits of `Limits`: how deep a value may nest and how large one item (a JSONL line, a
CSV record, a document checked whole) may be. Passing one raises `Overstep`, which the check turns into a
violation naming the limit: never an internal error, never a kill by the kernel.
"""

from __future__ import annotations

import codecs
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from apify_jobs.outputs.scan import Structure, TooDeep, Unbalanced

_WHITESPACE = b" \t\r\n"
_NUMBER_GOES_ON = frozenset("0123456789.eE+-")
_INT_DIGITS = 4000  # below Python's int_max_str_digits (4300): a longer integer is converted in pieces


@dataclass(frozen=True)
class Limits:
    max_depth: int = 1000
    max_item_bytes: int = 64 << 20


class Overstep(Exception):
    """The output passed one of the limits, or cannot be read as its format: the message is the violation."""


def one_line(text: str, limit: int = 200) -> str:
    """A parser's message on one printable line (its newlines and control bytes come from the answer)."""
    from apify_jobs.inert import shown
    from apify_jobs.redaction import cut

    return cut(shown(" ".join(text.split())), limit)


def _integer(digits: str) -> int:
    """A JSON integer of any length (JSON sets none; Python refuses more than 4,300 digits in one step)."""
    sign = -1 if digits.startswith("-") else 1
    digits = digits.lstrip("-")
    if len(digits) <= _INT_DIGITS:
        return sign * int(digits)
    half = len(digits) // 2
    scale: int = 10 ** (len(digits) - half)
    return sign * (_integer(digits[:half]) * scale + _integer(digits[half:]))


_DECODER = json.JSONDecoder(parse_int=_integer)


def decode(text: str, where: str) -> Any:
    """One JSON value; Overstep when it is not one, or nests deeper than Python's own recursion allows."""
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise Overstep(f"{where} nests too deep to be checked (Python's recursion limit, "
                       f"{sys.getrecursionlimit()})") from None
    except ValueError as invalid:
        raise Overstep(f"{where} is not valid JSON: {one_line(str(invalid))}") from None


OnItem = Callable[[Any], None]


class Reader:
    """Fed the output's bytes; `items` counts what it found; `feed` returns False once it needs no more."""

    items = 0
    was_list = False  # a JSON array: "empty" means no items
    document_type: str | None = None  # a JSON answer that is not an array: what value it is (object, string, ...)

    def feed(self, chunk: bytes) -> bool:
        raise NotImplementedError

    def end(self) -> None:
        """The last bytes came: Overstep when what was read does not end as its format must."""


class JsonReader(Reader):
    """A JSON answer: an array of items, or one document (an item, given whole to ``on_document``).
    ``first_only``: whether there is an item at all is all that is asked."""

    def __init__(self, limits: Limits, first_only: bool, on_item: OnItem | None, on_document: OnItem | None):
        self.limits = limits
        self.first_only = first_only
        self.on_item, self.on_document = on_item, on_document
        self._start = b""  # the answer until its first byte that is not whitespace
        self._structure: Structure | None = None
        self._document: list[bytes] | None = None
        self._document_size = 0
        self._values: _ArrayValues | None = None
        self._empty: bool | None = None  # an array: whether `]` follows its `[`
        self._fed = 0

    def feed(self, chunk: bytes) -> bool:
        self._fed += len(chunk)
        if self._structure is None and self._document is None:
            first = (self._start + chunk).lstrip(_WHITESPACE)
            self._start = b""
            if not first:
                return True
            return self._begin(first)
        if self._document is not None:
            return self._more_document(chunk)
        return self._array(chunk, chunk)

    def _begin(self, first: bytes) -> bool:
        """The answer's first bytes (from its first that is not whitespace) decide what it is."""
        if first[:1] == b"[":
            self.was_list = True
            self._structure = Structure(1, self.limits.max_depth)
            if self.on_item is not None:
                self._values = _ArrayValues(self.limits, self.on_item)
            return self._array(first, first[1:])
        self.document_type = _json_type(first[:1])
        if self.document_type is None:
            raise Overstep(f"the output is not valid JSON near byte {self._fed - len(first)}: it starts with "
                           f"{one_line(repr(first[:1])[1:])}")
        self.items = 1
        if self.first_only or self.on_document is None:
            return False  # a document is one item; nothing asks for its value
        self._document = []
        return self._more_document(first)

    def _more_document(self, chunk: bytes) -> bool:
        assert self._document is not None
        self._document_size += len(chunk)
        if self._document_size > self.limits.max_item_bytes:
            raise Overstep(f"the output is one JSON document of more than {self.limits.max_item_bytes} bytes "
                           f"(maxItemBytes): too large to check whole")
        self._document.append(chunk)
        return True

    def _array(self, chunk: bytes, after_open: bytes) -> bool:
        """``after_open``: what of the chunk may follow the array's `[` (whether `]` comes first)."""
        assert self._structure is not None
        if self._empty is None and (after := after_open.lstrip(_WHITESPACE)):
            self._empty = after[:1] == b"]"
            self.items = 0 if self._empty else 1
            if self.first_only:
                return False
        if not _scanned(self._structure, chunk, "the output"):
            raise Overstep(f"the output is not valid JSON: a bracket closes what was never opened "
                           f"(within the first {self._fed} bytes)")
        if self._structure.closed > 1 or (self._structure.closed and self._structure.depth):
            raise Overstep(f"the output is not valid JSON: more follows its array (within the first {self._fed} bytes)")
        if self._empty is False:
            self.items = self._structure.separators + 1
        if self._values is not None:
            self._values.feed(chunk)
        return True

    def end(self) -> None:
        if self._document is not None:
            document = decode(b"".join(self._document).decode("utf-8", "replace"), "the output")
            self._document = None
            if self.on_document is not None:
                self.on_document(document)
            return
        if self._structure is not None and (self._structure.depth or not self._structure.closed):
            raise Overstep(f"the output is not valid JSON: its array does not end (after {self._fed} bytes)")
        if self._values is not None:
            self._values.end()


def _scanned(structure: Structure, piece: bytes, what: str) -> bool:
    """``piece`` fed to ``structure``: False when a bracket closed what was never opened; Overstep when ``what``
    nests deeper than the limit."""
    try:
        structure.feed(piece)
    except TooDeep as deep:
        raise Overstep(f"{what} nests at least {deep.depth} levels deep, more than maxDepth "
                       f"{structure.max_depth}") from None
    except Unbalanced:
        return False
    return True


def _json_type(first: bytes) -> str | None:
    """What a JSON value is, from its first byte (None: no JSON value starts so)."""
    if first in b"-0123456789":
        return "number"
    return {b"{": "object", b'"': "string", b"t": "boolean", b"f": "boolean", b"n": "null"}.get(first)


class _ArrayValues:
    """The items of a JSON array decoded one by one, each once it is whole: a failed attempt on an item not yet
    whole is tried again only when twice as much has come, so the work stays linear in the item's size."""

    def __init__(self, limits: Limits, on_item: OnItem):
        self.limits = limits
        self.on_item = on_item
        self._text = codecs.getincrementaldecoder("utf-8")("replace")
        self._pieces: list[str] = []  # the text from the first item not yet decoded
        self._size = 0
        self._opened = False
        self._expect_item = True
        self._retry_at = 0
        self._index = 0

    def feed(self, chunk: bytes) -> None:
        self._add(self._text.decode(chunk), final=False)

    def end(self) -> None:
        self._add(self._text.decode(b"", final=True), final=True)

    def _add(self, text: str, final: bool) -> None:
        self._pieces.append(text)
        self._size += len(text)
        if self._size > self.limits.max_item_bytes:
            raise Overstep(f"item {self._index} is larger than maxItemBytes ({self.limits.max_item_bytes} bytes)")
        if final or self._size >= self._retry_at:
            rest = self._take("".join(self._pieces), final)
            self._pieces, self._size = [rest], len(rest)

    def _take(self, text: str, final: bool) -> str:
        """Decodes the whole items at the start of ``text``; returns what is left."""
        position, size = 0, len(text)
        if not self._opened:
            position = text.index("[") + 1
            self._opened = True
        while True:
            while position < size and text[position] in " \t\r\n":
                position += 1
            if position == size:
                return ""
            if not self._expect_item:
                if text[position] == "]":
                    return ""
                if text[position] != ",":
                    raise Overstep(f"item {self._index} is not valid JSON: {one_line(repr(text[position:][:20]))} "
                                   f"follows item {self._index - 1}")
                position += 1
                self._expect_item = True
                continue
            if text[position] == "]" and self._index == 0:
                return ""
            try:
                value, end = _DECODER.raw_decode(text, position)
            except RecursionError:
                raise Overstep(f"item {self._index} nests too deep to be checked (Python's recursion limit, "
                               f"{sys.getrecursionlimit()})") from None
            except ValueError as invalid:
                if final:
                    raise Overstep(f"item {self._index} is not valid JSON: {one_line(str(invalid))}") from None
                self._retry_at = 2 * (size - position)
                return text[position:]
            if not final and isinstance(value, (int, float)) and (end == size or text[end] in _NUMBER_GOES_ON):
                self._retry_at = 2 * (size - position)  # a number the next chunk may go on (`1` of `12`, `5e+`)
                return text[position:]
            self._retry_at = 0
            self._expect_item = False
            self._index += 1
            self.on_item(value)
            position = end


class JsonlReader(Reader):
    """One item per line with content. Counting looks at no line's content; values are decoded line by line."""

    def __init__(self, limits: Limits, first_only: bool, on_item: OnItem | None):
        self.limits = limits
        self.first_only = first_only
        self.on_item = on_item
        self._open_has_content = False  # the line that has not ended yet has a byte that is not whitespace
        self._line: list[bytes] = []
        self._line_size = 0
        self._structure = Structure(0, limits.max_depth) if on_item is not None else None

    def feed(self, chunk: bytes) -> bool:
        if self.first_only:
            if chunk.strip(_WHITESPACE):
                self.items = 1
                return False
            return True
        if self.on_item is None:
            self._count(chunk)
            return True
        lines = chunk.split(b"\n")
        for line in lines[:-1]:
            self._scan(line)
            self._line.append(line)
            self._value(b"".join(self._line))
            self._line, self._line_size = [], 0
            assert self._structure is not None
            self._structure.reset()  # the next line is a value of its own
        self._scan(lines[-1])
        self._line.append(lines[-1])
        self._line_size += len(lines[-1])
        if self._line_size > self.limits.max_item_bytes:
            raise Overstep(f"line {self.items + 1} is longer than maxItemBytes ({self.limits.max_item_bytes} bytes)")
        return True

    def _scan(self, piece: bytes) -> None:
        """How deep the line nests, known before it is decoded (its bytes so far)."""
        assert self._structure is not None
        if not _scanned(self._structure, piece, f"line {self.items + 1}"):
            self._structure.reset()  # the line's own decoding says what is wrong with it

    def end(self) -> None:
        if self.on_item is not None and any(self._line):
            self._value(b"".join(self._line))
        elif self.on_item is None and not self.first_only:
            self.items += self._open_has_content

    def _value(self, line: bytes) -> None:
        if not line.strip(_WHITESPACE):
            return
        if len(line) > self.limits.max_item_bytes:
            raise Overstep(f"line {self.items + 1} is longer than maxItemBytes ({self.limits.max_item_bytes} bytes)")
        value = decode(line.decode("utf-8", "replace"), f"line {self.items + 1}")
        self.items += 1
        assert self.on_item is not None
        self.on_item(value)

    def _count(self, chunk: bytes) -> None:
        """Lines with content, counted in C: whitespace but line ends dropped, runs of line ends made one."""
        kept = chunk.translate(None, b" \t\r")
        while b"\n\n" in kept:
            kept = kept.replace(b"\n\n", b"\n")
        if not kept:
            return
        ends = kept.count(b"\n")
        if kept[0] == 10 and not self._open_has_content:  # it ends a line with nothing on it
            ends -= 1
        self.items += ends
        self._open_has_content = kept[-1] != 10 or (ends == 0 and self._open_has_content)


class CsvReader(Reader):
    """Records as the `csv` module reads them; the header (unless the dataset skips it) is not an item. Lines
    are handed to a fresh `csv.reader` from the last record's end: a record not yet whole is read again only
    when its text has doubled, so a long quoted field costs linear time, and at most maxItemBytes of memory."""

    def __init__(self, limits: Limits, first_only: bool, header: bool, delimiter: str):
        self.limits = limits
        self.first_only = first_only
        self._header = header
        self._delimiter = delimiter
        self._text = codecs.getincrementaldecoder("utf-8")("replace")
        self._pending: list[str] = []  # the lines since the last whole record
        self._pending_size = 0
        self._open = ""  # the last line, not ended yet
        self._retry_at = 0
        self._records = 0
        import csv

        csv.field_size_limit(max(limits.max_item_bytes, csv.field_size_limit()))  # a field may be one whole item

    def feed(self, chunk: bytes) -> bool:
        text = self._open + self._text.decode(chunk)
        lines = text.split("\n")
        self._open = lines.pop()
        self._add([line + "\n" for line in lines], final=False)
        if self.first_only and self.items:
            return False
        if self._pending_size + len(self._open) > self.limits.max_item_bytes:
            raise Overstep(f"record {self._records + 1} is larger than maxItemBytes "
                           f"({self.limits.max_item_bytes} bytes)")
        return True

    def end(self) -> None:
        self._open += self._text.decode(b"", final=True)
        self._add([self._open] if self._open else [], final=True)

    def _add(self, lines: list[str], final: bool) -> None:
        self._pending += lines
        self._pending_size += sum(map(len, lines))
        if final or self._pending_size >= self._retry_at:
            self._read(final)
        if self.first_only and self._records >= self._header and not self.items:
            # a byte of the record after the header: enough for nonEmpty
            self.items = int(any(line.strip() for line in [*self._pending, self._open]))

    def _read(self, final: bool) -> None:
        import csv

        source = _Lines(self._pending, final)
        done = 0
        try:
            for record in csv.reader(source, delimiter=self._delimiter, strict=False):
                done = source.taken
                if record:  # a blank line is no record
                    self._records += 1
        except _NotWhole:
            pass
        except csv.Error as error:
            raise Overstep(f"record {self._records + 1} cannot be read as CSV: {one_line(str(error))}") from None
        self._pending = [] if final else self._pending[done:]
        self._pending_size = sum(map(len, self._pending))
        self._retry_at = 2 * self._pending_size
        self.items = max(self._records - self._header, 0)


class _NotWhole(Exception):
    """The lines given so far end inside a record."""


class _Lines:
    """The lines for one `csv.reader`; running out before the end raises, so a record cut by the chunk is read
    again, whole, with the next lines (the reader would return it cut)."""

    def __init__(self, lines: list[str], final: bool):
        self._lines, self._final = lines, final
        self.taken = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self.taken == len(self._lines):
            if self._final:
                raise StopIteration
            raise _NotWhole()
        self.taken += 1
        return self._lines[self.taken - 1]
