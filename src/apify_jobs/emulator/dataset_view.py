"""A dataset's items as the items endpoints give them: the query's selection (offset, limit, desc, fields,
omit, clean, unwind, flatten) and format (json, jsonl, csv, html, xml, rss), so that a job's `dataset`
parameters mean on the emulator what they mean on the platform."""

from __future__ import annotations

import codecs
import csv
import io
import json
from typing import Any
from xml.sax.saxutils import escape

CONTENT_TYPES = {"json": "application/json; charset=utf-8", "jsonl": "application/jsonl; charset=utf-8",
                 "csv": "text/csv; charset=utf-8", "html": "text/html; charset=utf-8",
                 "xml": "application/xml; charset=utf-8", "rss": "application/rss+xml; charset=utf-8",
                 "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
DEFAULT_ITEMS = 20  # the default dataset: enough for a first `expect: {minItems: …}` to pass


class UnsupportedFormat(ValueError):
    """A format the emulator does not write (xlsx): said, not answered as something else."""


def product(index: int) -> dict[str, Any]:
    """One item of the default dataset: what a shop scraper's item looks like."""
    return {"url": f"https://shop.example.com/p/{index:04d}", "title": f"Product {index}",
            "price": round(9.99 + index, 2), "currency": "USD", "inStock": index % 3 != 0}


def default_items() -> list[Any]:
    return [product(i) for i in range(1, DEFAULT_ITEMS + 1)]


def _names(value: str | None) -> list[str]:
    return [name for name in (value or "").split(",") if name]


def _true(query: dict[str, str], key: str) -> bool:
    return query.get(key, "").lower() in ("true", "1")


def _flatten(item: dict[str, Any], field: str) -> dict[str, Any]:
    value = item.get(field)
    if not isinstance(value, dict):
        return item
    flat = {k: v for k, v in item.items() if k != field}
    flat.update({f"{field}.{key}": inner for key, inner in value.items()})
    return flat


def _unwind(items: list[Any], field: str) -> list[Any]:
    out: list[Any] = []
    for item in items:
        value = item.get(field) if isinstance(item, dict) else None
        rest = {k: v for k, v in item.items() if k != field} if isinstance(item, dict) else item
        if isinstance(value, list):
            out += [{**rest, **inner} if isinstance(inner, dict) else {**rest, field: inner} for inner in value]
        elif isinstance(value, dict):
            out.append({**rest, **value})
        else:
            out.append(item)
    return out


def select(items: list[Any], query: dict[str, str]) -> list[Any]:
    """The items the query selects, in the order the platform gives them."""
    chosen = list(reversed(items)) if _true(query, "desc") else list(items)
    for field in _names(query.get("unwind")):
        chosen = _unwind(chosen, field)
    offset = int(query.get("offset") or 0)
    limit = int(query["limit"]) if query.get("limit") else None
    chosen = chosen[offset:None if limit is None else offset + limit]
    fields = _names(query.get("fields") or query.get("outputFields"))
    omit = set(_names(query.get("omit")))
    hidden = _true(query, "clean") or _true(query, "skipHidden")
    out = []
    for item in chosen:
        if isinstance(item, dict):
            for field in _names(query.get("flatten")):
                item = _flatten(item, field)
            if fields:
                item = {name: item[name] for name in fields if name in item}
            item = {k: v for k, v in item.items() if k not in omit and not (hidden and k.startswith("#"))}
            if (_true(query, "clean") or _true(query, "skipEmpty")) and not item:
                continue
        out.append(item)
    return out


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _columns(items: list[Any], query: dict[str, str]) -> list[str]:
    return _names(query.get("fields") or query.get("outputFields")) or list(
        dict.fromkeys(key for item in items if isinstance(item, dict) for key in item))


def _csv(items: list[Any], query: dict[str, str]) -> str:
    text = io.StringIO()
    writer = csv.writer(text, delimiter=query.get("delimiter") or ",", lineterminator="\n")
    columns = _columns(items, query)
    if not _true(query, "skipHeaderRow"):
        writer.writerow(columns)
    for item in items:
        row = item if isinstance(item, dict) else {}
        writer.writerow([_text(row[c]) if c in row else "" for c in columns])
    return text.getvalue()


def _xml(items: list[Any], root: str, row: str) -> str:
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', f"<{root}>"]
    for item in items:
        fields = item.items() if isinstance(item, dict) else [("value", item)]
        inner = "".join(f"<{k}>{escape(_text(v))}</{k}>" for k, v in fields if k.replace("_", "").isalnum())
        lines.append(f"  <{row}>{inner}</{row}>")
    lines.append(f"</{root}>")
    return "\n".join(lines) + "\n"


def _html(items: list[Any], query: dict[str, str]) -> str:
    columns = _columns(items, query)
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    rows = "".join("<tr>" + "".join(f"<td>{escape(_text(item.get(c, '')))}</td>" for c in columns) + "</tr>"
                   for item in items if isinstance(item, dict))
    return f"<!DOCTYPE html><html><body><table><tr>{head}</tr>{rows}</table></body></html>\n"


def render(items: list[Any], query: dict[str, str]) -> tuple[bytes, str]:
    """The selected items in the query's format, with its Content-Type."""
    format_ = query.get("format", "json")
    chosen = select(items, query)
    if format_ == "csv":
        text = _csv(chosen, query)
    elif format_ == "jsonl":
        text = "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in chosen)
    elif format_ == "xml":
        text = _xml(chosen, query.get("xmlRoot") or "items", query.get("xmlRow") or "item")
    elif format_ == "rss":
        text = _xml(chosen, "rss", "item")
    elif format_ == "html":
        text = _html(chosen, query)
    elif format_ == "xlsx":
        raise UnsupportedFormat("the emulator does not write xlsx: try format csv on the emulator")
    else:
        text, format_ = json.dumps(chosen, ensure_ascii=False), "json"
    # a byte-order mark starts CSV unless `bom` says no, and any other format when `bom` says so (the API's rule)
    mark = query.get("bom", "true" if format_ == "csv" else "false").lower() in ("true", "1")
    return (codecs.BOM_UTF8 if mark else b"") + text.encode("utf-8"), CONTENT_TYPES[format_]
