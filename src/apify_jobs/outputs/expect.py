"""`expect:` checked on the output while it streams in, between the download and the commit: an output that
fails is never renamed over the last good one.

Items are counted and checked incrementally, so memory stays flat whatever the size: JSON arrays through
`ijson`'s C backend (one item at a time), JSONL line by line, CSV by counting the line ends outside quotes.
Formats that cannot be checked (xlsx, xml, html, rss) are refused by `validate` for `minItems`,
`maxItems` and `schema`; an answer of such a type at run time fails the check with a clear message.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

from apify_jobs.model import Expectations, Job

Reader = Generator[None, bytes, None]  # sent the output's bytes as they arrive, b"" at the end
SHOWN = 3  # violations named in the message; the rest are counted
WHOLE_DOCUMENT_LIMIT = 64 << 20  # a JSON document (not a list) checked against a schema is held whole: up to this
UNCHECKABLE = ("xlsx", "xml", "html", "rss")
_JSON_TYPES = ("application/json",)
_JSONL_TYPES = ("application/jsonl", "application/x-ndjson", "application/x-jsonlines")


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def kind_of(job: Job, content_type: str | None) -> str:
    """How the output's items are read: json, jsonl, csv, or opaque (no items to count)."""
    if job.dataset is not None:
        fmt = str(job.dataset.get("format", "json"))
        return fmt if fmt in ("json", "jsonl", "csv") else "opaque"
    media = media_type(content_type)
    if media in _JSON_TYPES or media.endswith("+json"):
        return "json"
    if media in _JSONL_TYPES:
        return "jsonl"
    if media in ("text/csv", "text/tab-separated-values"):
        return "csv"
    return "opaque"


@dataclass
class Verdict:
    violations: list[str] = field(default_factory=list)
    total: int = 0

    def add(self, message: str) -> None:
        self.total += 1
        if len(self.violations) < SHOWN:
            self.violations.append(message)

    @property
    def message(self) -> str:
        more = f" (and {self.total - len(self.violations)} more)" if self.total > len(self.violations) else ""
        return f"{self.total} expectation{'s' * (self.total != 1)} failed: " + "; ".join(self.violations) + more


class Check:
    """Feed it the output's bytes as they arrive; `finish()` says what failed, if anything."""

    def __init__(self, job: Job, content_type: str | None):
        self.expect: Expectations = job.expect
        self.content_type = content_type
        self.kind = kind_of(job, content_type)
        self.bytes = 0
        self.items = 0
        self.verdict = Verdict()
        self._validator = _validator(self.expect.schema) if self.expect.schema is not None else None
        self._counting = self.expect.min_items is not None or self.expect.max_items is not None
        self._needs_items = self._counting or self._validator is not None or self.expect.non_empty
        self._broken: str | None = None
        self.dataset = job.dataset is not None  # items endpoint: "empty" means no items
        self._was_list = False  # an OUTPUT record that is a JSON array: "empty" means no items too
        skip_header = job.dataset is not None and bool(job.dataset.get("skipHeaderRow"))
        self._feeder = self._start(skip_header)

    def feed(self, chunk: bytes) -> None:
        self.bytes += len(chunk)
        if self._feeder is not None and self._broken is None:
            try:
                self._feeder.send(chunk)
            except StopIteration:  # the reader is done: broken, or it has seen all it needs
                self._feeder = None
                return
            if self.items and not self._counting and self._validator is None:
                self._feeder = None  # nonEmpty alone needs one item: the rest of the output is not parsed

    def finish(self) -> Verdict | None:
        if self._feeder is not None and self._broken is None:
            try:
                self._feeder.send(b"")  # the end
            except StopIteration:
                pass
        expect, verdict = self.expect, self.verdict
        if expect.content_type and media_type(self.content_type) != expect.content_type.lower():
            verdict.add(f"the content type is {media_type(self.content_type) or 'not given'}, not "
                        f"{expect.content_type}")
        if self._broken is not None:
            verdict.add(self._broken)
        elif expect.non_empty and self.bytes == 0:
            verdict.add("the output is empty (no OUTPUT record, or no items)")
        elif expect.non_empty and self.items == 0 and (self.dataset or self._was_list):
            verdict.add("the output has no items")
        if self._counting and self._broken is None:
            if self.kind == "opaque":
                verdict.add(f"items cannot be counted in {media_type(self.content_type) or 'an untyped answer'}")
            elif expect.min_items is not None and self.items < expect.min_items:
                verdict.add(f"{self.items} item{'s' * (self.items != 1)}, fewer than minItems {expect.min_items}")
            elif expect.max_items is not None and self.items > expect.max_items:
                verdict.add(f"{self.items} items, more than maxItems {expect.max_items}")
        if self._validator is not None and self.kind not in ("json", "jsonl") and self._broken is None:
            verdict.add(f"a schema cannot be checked against {media_type(self.content_type) or 'an untyped answer'}")
        return verdict if verdict.total else None

    # --- the readers, one generator each: send bytes, b"" at the end ---------------------------------
    def _start(self, skip_header: bool) -> Reader | None:
        if not self._needs_items or self.kind == "opaque":
            return None
        reader = self._json() if self.kind == "json" else self._jsonl() if self.kind == "jsonl" else \
            self._csv(skip_header)
        next(reader)
        return reader

    def _item(self, item: Any) -> None:
        index = self.items
        self.items += 1
        if self._validator is not None:
            for error in self._validator.iter_errors(item):
                pointer = "".join(f"/{part}" for part in error.absolute_path) or "/"
                self.verdict.add(f"item {index} at {pointer}: {error.message[:200]}")

    def _json(self) -> Reader:
        first = b""
        while not first.strip():
            chunk = yield
            if not chunk:
                return
            first += chunk
        is_list = first.lstrip()[:1] == b"["
        if not self._counting and self._validator is None:  # nonEmpty alone: no parser needed
            yield from self._json_any_item(first, is_list)
            return
        if not is_list:  # one document, not a list of items
            yield from self._json_document(first)
            return
        import ijson  # type: ignore[import-untyped]  # only when every item is counted or checked (~40 ms)

        self._was_list = True
        found = ijson.sendable_list()
        parser = ijson.items_coro(found, "item", use_float=True)
        fed = 0
        chunk = first
        while True:
            try:
                parser.send(chunk) if chunk else parser.close()
            except ijson.JSONError as error:
                self._broken = f"the output is not valid JSON near byte {fed + len(chunk)}: {str(error)[:120]}"
                return
            fed += len(chunk)
            for item in found:
                self._item(item)
            del found[:]
            if not chunk:
                return
            chunk = yield

    def _json_any_item(self, first: bytes, is_list: bool) -> Reader:
        """Whether there is an item at all: a document is one; a list has one unless `]` follows its `[`."""
        if not is_list:
            self.items = 1
            return
        self._was_list = True
        rest = first.lstrip()[1:].lstrip()
        while not rest:
            chunk = yield
            if not chunk:
                return
            rest = chunk.lstrip()
        self.items = 0 if rest[:1] == b"]" else 1

    def _json_document(self, first: bytes) -> Reader:
        import json

        parts, size = [first], len(first)
        while chunk := (yield):
            size += len(chunk)
            if size <= WHOLE_DOCUMENT_LIMIT:
                parts.append(chunk)
        if size > WHOLE_DOCUMENT_LIMIT:
            if self._validator is not None:
                self._broken = f"the output is one JSON document of {size} bytes: too large to check against a schema"
            self.items = 1
            return
        try:
            document = json.loads(b"".join(parts))
        except ValueError as invalid:
            self._broken = f"the output is not valid JSON near byte {getattr(invalid, 'pos', '?')}: {invalid}"[:200]
            return
        self.items = 1
        if self._counting:
            self._broken = f"the output is a JSON {type(document).__name__}, not a list of items"
        if self._validator is not None:
            for error in self._validator.iter_errors(document):
                pointer = "".join(f"/{part}" for part in error.absolute_path) or "/"
                self.verdict.add(f"the document at {pointer}: {error.message[:200]}")

    def _jsonl(self) -> Reader:
        import json

        rest, offset = b"", 0
        while True:
            chunk = yield
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop() if chunk else b""
            for line in lines:
                if line.strip():
                    if self._validator is not None:
                        try:
                            item = json.loads(line)
                        except ValueError:
                            self._broken = f"line {self.items + 1} (byte {offset}) is not valid JSON"
                            return
                        self._item(item)
                    else:
                        self.items += 1
                offset += len(line) + 1
            if not chunk:
                return

    def _csv(self, skip_header: bool) -> Reader:
        """Rows are line ends outside quotes (a quoted field may hold line ends); the header is not an item."""
        quoted, rows, tail_has_data = False, 0, False
        while True:
            chunk = yield
            if not chunk:
                break
            parts = chunk.split(b'"')
            for index, part in enumerate(parts):
                if index:
                    quoted = not quoted
                if not quoted:
                    rows += part.count(b"\n")
            last_line = chunk.rsplit(b"\n", 1)[-1]
            tail_has_data = bool(last_line.strip()) if b"\n" in chunk else (tail_has_data or bool(chunk.strip()))
        rows += tail_has_data  # a last row without a line end
        self.items = max(rows - (0 if skip_header else 1), 0)


def _validator(schema: Any) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema)


def schema_problem(schema: Any) -> str | None:
    """Why ``schema`` cannot be used (not valid JSON Schema, or a `$ref` that would leave it), or None."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        return f"not a valid JSON Schema: {error.message[:200]}"
    for ref in _refs(schema):
        if not ref.startswith("#"):
            return f"$ref {ref!r} leaves the schema; only references inside it (#/...) are allowed, nothing is fetched"
    return None


def _refs(value: Any) -> Iterator[str]:
    stack = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            for key, item in current.items():
                if key in ("$ref", "$dynamicRef") and isinstance(item, str):
                    yield item
                else:
                    stack.append(item)
        elif isinstance(current, list):
            stack.extend(current)
