"""Message shapes inferred from observed events: JSON Schema (genson) and the correlation ID's place.

Pure: events frame in, dictionaries out. Only a bounded sample of the newest payloads of
each (event type, schema version) is parsed, so a million stored events cost the same as
a few thousand. Payloads are the store's masked JSON text, so the schemas never carry
personal data; only shapes (property names and types) leave this module.
"""
from __future__ import annotations

from collections import Counter

import orjson
import pandas as pd
from genson import SchemaBuilder

UNDECODABLE = "<undecodable>"
SAMPLES = 200  # newest payloads parsed per (event type, schema version)
#: where envelopes keep the correlation ID, as JSON pointers into the payload
PAYLOAD_PATHS = (("correlation_id",), ("correlationId",), ("correlationid",),
                 ("metadata", "correlationId"), ("metadata", "correlation_id"))


def pointer(path) -> str:
    """A JSON pointer (RFC 6901) for ``path``: ``~`` and ``/`` escaped."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def samples(events: pd.DataFrame, per_type: int = SAMPLES) -> pd.DataFrame:
    """The newest ``per_type`` decodable, live events of each (event type, schema version)."""
    if events is None or events.empty:
        return pd.DataFrame(columns=["event_type", "schema_version", "payload", "headers",
                                     "correlation_id", "broker", "topic", "service"])
    live = events[(~events["dead_letter"].fillna(False).astype(bool)
                   & events["event_type"].notna()
                   & (events["event_type"] != UNDECODABLE)).to_numpy()]
    cols = [c for c in ("event_type", "schema_version", "payload", "headers", "correlation_id",
                        "broker", "topic", "service", "at") if c in live]
    live = live[cols].assign(schema_version=live["schema_version"].fillna("").astype(str)
                             if "schema_version" in live else "")
    return live.groupby(["event_type", "schema_version"], sort=False).tail(per_type)


def _parse(text) -> object | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _schema(objects: list) -> dict | None:
    if not objects:
        return None
    builder = SchemaBuilder()
    for obj in objects:
        builder.add_object(obj)
    schema = builder.to_schema()
    schema.pop("$schema", None)  # AsyncAPI documents carry their own schema format
    return schema


def correlation_location(payload, headers, correlation_id) -> str | None:
    """AsyncAPI runtime expression of where ``correlation_id`` sits in one message."""
    if not correlation_id:
        return None
    if isinstance(payload, dict):
        for path in PAYLOAD_PATHS:
            value = payload
            for part in path:
                value = value.get(part) if isinstance(value, dict) else None
            if value == correlation_id:
                return "$message.payload#" + pointer(path)
    if isinstance(headers, dict):
        for name, value in headers.items():
            if value == correlation_id:
                return "$message.header#" + pointer([name])
    return None


def message_shapes(events: pd.DataFrame, per_type: int = SAMPLES) -> dict[tuple[str, str], dict]:
    """Per (event type, schema version): ``payload`` and ``headers`` JSON Schemas (genson),
    the ``correlation_id`` location (most frequent in the sample, or None) and ``sampled``."""
    shapes = {}
    for (event_type, version), rows in samples(events, per_type).groupby(
            ["event_type", "schema_version"], sort=True):
        payloads = [_parse(p) for p in rows["payload"]] if "payload" in rows else [None] * len(rows)
        headers = [_parse(h) for h in rows["headers"]] if "headers" in rows else [None] * len(rows)
        places = Counter(loc for loc in (correlation_location(p, h, c) for p, h, c in zip(
            payloads, headers, rows["correlation_id"].fillna(""))) if loc)
        shapes[(str(event_type), str(version))] = {
            "payload": _schema([p for p in payloads if p is not None]),
            "headers": _schema([h for h in headers if isinstance(h, dict) and h]),
            "correlation_id": places.most_common(1)[0][0] if places else None,
            "sampled": len(rows),
        }
    return shapes


def schema_fields(schema: dict | None, prefix: str = "") -> list[dict]:
    """A JSON Schema flattened to rows ``{field, type, required}`` (``items[]`` for arrays)."""
    rows: list[dict] = []
    if not isinstance(schema, dict):
        return rows
    types = [s.get("type") for s in schema.get("anyOf", [])] if "anyOf" in schema else [schema.get("type")]
    flat = sorted({t for ts in types for t in (ts if isinstance(ts, list) else [ts]) if t})
    if prefix:
        rows.append({"field": prefix, "type": " | ".join(flat) or "any", "required": None})
    branches = schema.get("anyOf", [schema])
    for branch in branches:
        required = set(branch.get("required", []))
        for name, sub in branch.get("properties", {}).items():
            path = f"{prefix}.{name}" if prefix else str(name)
            nested = schema_fields(sub, path)
            if nested:
                nested[0]["required"] = name in required
            rows.extend(nested)
        if isinstance(branch.get("items"), dict):
            rows.extend(schema_fields(branch["items"], f"{prefix}[]"))
    seen, unique = set(), []
    for row in rows:  # a field met in two anyOf branches is listed once
        if row["field"] not in seen:
            seen.add(row["field"])
            unique.append(row)
    return unique
