"""OpenTelemetry spans from OTLP JSON files: what links one message to the message it was made from.

A message's ``traceparent`` names only its own send span. Which consumed message a service
was processing when it sent it is in the spans around it: with the OpenTelemetry Kafka
instrumentation the send span is a child of the consumer's *process* span, and that span
*links* to the send span of the message it processes (usually in another trace). The spans
come from files in the OTLP JSON encoding, one export request per line: what the
OpenTelemetry Collector's ``file`` exporter and the SDKs' file exporters write.

Each file is read from where the last run stopped (its inode and byte offset, saved in
``reading_state`` like a partition's offset); a file seen for the first time from at most
``first_read_bytes`` before its end; a rotated or truncated file from its start. Only whole
lines are read. A line that is not an OTLP export is skipped and counted (``skipped``), never
fatal. Nothing is written anywhere but the store.
"""
from __future__ import annotations

import base64
import binascii
import glob
import os

import logging

import orjson
import pandas as pd

from eventscope import schemas

log = logging.getLogger(__name__)
KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


def _hex_id(value, size: int) -> str | None:
    """An OTLP JSON ID as lowercase hex: hex as the OTLP spec says, or base64 (protobuf's own
    JSON mapping of bytes, which some encoders use); None when it is neither or all zeros."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().lower()
    if len(text) != size * 2 or any(c not in "0123456789abcdef" for c in text):
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
        if len(raw) != size:
            return None
        text = raw.hex()
    return None if text == "0" * (size * 2) else text


def _kind(value) -> str:
    if isinstance(value, int):
        return KINDS.get(value, "UNSPECIFIED")
    text = str(value or "").upper().removeprefix("SPAN_KIND_")
    return text if text in KINDS.values() else "UNSPECIFIED"


def _service(resource) -> str | None:
    for attribute in (resource or {}).get("attributes") or []:
        if isinstance(attribute, dict) and attribute.get("key") == "service.name":
            value = attribute.get("value") or {}
            return str(value.get("stringValue")) if isinstance(value, dict) and value.get("stringValue") else None
    return None


def _start(value) -> pd.Timestamp | None:
    try:
        nanos = int(value)
    except (TypeError, ValueError):
        return None
    return pd.Timestamp(nanos, unit="ns", tz="UTC") if 0 < nanos < 2 ** 63 else None


def spans_of(request: dict) -> list[dict]:
    """The spans of one OTLP ``ExportTraceServiceRequest`` (JSON), as ``spans`` rows without
    ``observed_at``/``source``. Spans without a valid trace or span ID are left out."""
    rows = []
    for resource_spans in request.get("resourceSpans") or []:
        if not isinstance(resource_spans, dict):
            continue
        service = _service(resource_spans.get("resource"))
        for scope_spans in resource_spans.get("scopeSpans") or resource_spans.get("instrumentationLibrarySpans") or []:
            for span in (scope_spans or {}).get("spans") or []:
                if not isinstance(span, dict):
                    continue
                trace_id, span_id = _hex_id(span.get("traceId"), 16), _hex_id(span.get("spanId"), 8)
                if trace_id is None or span_id is None:
                    continue
                links = [_hex_id(link.get("spanId"), 8) for link in span.get("links") or [] if isinstance(link, dict)]
                rows.append({"trace_id": trace_id, "span_id": span_id,
                             "parent_span_id": _hex_id(span.get("parentSpanId"), 8),
                             "links": " ".join(link for link in links if link) or None,
                             "name": str(span.get("name") or "")[:200], "kind": _kind(span.get("kind")),
                             "service": service, "start_at": _start(span.get("startTimeUnixNano"))})
    return rows


class OtlpFilesCollector:
    """Spans from OTLP JSON Lines files (paths or glob patterns)."""

    name = "otel.spans"
    broker = "otel"

    def __init__(self, paths: list[str], source: str = "otel", max_bytes_per_run: int = 32 * 1024 * 1024,
                 first_read_bytes: int = 64 * 1024 * 1024):
        self.paths = list(paths)
        self.source = source
        self.max_bytes_per_run = max_bytes_per_run
        self.first_read_bytes = first_read_bytes
        self.positions: dict[str, tuple[int, int]] = {}  # path -> (inode, next byte to read)
        self.skipped = 0  # lines that were not OTLP exports, since start

    def files(self) -> list[str]:
        found = set()
        for pattern in self.paths:
            found.update(p for p in glob.glob(os.path.expanduser(pattern)) if os.path.isfile(p))
        return sorted(found)

    def collect(self) -> dict[str, pd.DataFrame]:
        rows = []
        skipped = self.skipped
        budget = self.max_bytes_per_run
        for path in self.files():
            if budget <= 0:
                break
            read, new_rows = self._read(path, budget)
            budget -= read
            rows += new_rows
        if self.skipped > skipped:
            log.warning("skipped %d line(s) of OTLP files that are not OTLP JSON trace exports",
                        self.skipped - skipped)
        now = pd.Timestamp.now(tz="UTC")
        for row in rows:
            row["observed_at"], row["source"] = now, self.source
        return {"spans": schemas.conform("spans", rows)}

    def _read(self, path: str, budget: int) -> tuple[int, list[dict]]:
        try:
            handle = open(path, "rb")
        except OSError:
            return 0, []  # gone between the glob and the open: the next run looks again
        with handle:
            stat = os.fstat(handle.fileno())
            inode, offset = self.positions.get(path, (None, None))
            if inode != stat.st_ino or offset is None or offset > stat.st_size:
                # new, rotated (another inode) or truncated: from its start, or its last part
                offset = 0 if inode is not None else max(0, stat.st_size - self.first_read_bytes)
                if offset:
                    handle.seek(offset - 1)
                    if handle.read(1) != b"\n":
                        handle.readline()  # into the middle of a line: from the next one
                    offset = handle.tell()
            handle.seek(offset)
            data = handle.read(min(budget, stat.st_size - offset))
        end = data.rfind(b"\n") + 1  # whole lines only: a line still being written waits
        if end == 0 and len(data) >= budget:
            # a line longer than a run may read: skipped (its rest fails to parse next run),
            # not waited for forever
            self.skipped += 1
            self.positions[path] = (stat.st_ino, offset + len(data))
            return len(data), []
        rows = []
        for line in data[:end].splitlines():
            if not line.strip():
                continue
            try:
                request = orjson.loads(line)
                rows += spans_of(request) if isinstance(request, dict) else []
            except orjson.JSONDecodeError:
                self.skipped += 1
        self.positions[path] = (stat.st_ino, offset + end)
        return end, rows

    # -- reading state, as the event readers keep theirs ----------------------------
    def reading_state(self, now) -> list[dict]:
        return [{"saved_at": now, "source": self.source, "broker": self.broker, "topic": path, "partition": 0,
                 "position": f"{inode}:{offset}"} for path, (inode, offset) in self.positions.items()]

    def restore(self, rows: pd.DataFrame, events: pd.DataFrame | None = None) -> None:
        for row in rows.itertuples(index=False):
            inode, _, offset = str(row.position).partition(":")
            try:
                self.positions[str(row.topic)] = (int(inode), int(offset))
            except ValueError:
                continue  # not ours to understand: the file is read as new

    def rewind(self, rows: pd.DataFrame, events: pd.DataFrame | None = None) -> None:
        """Back to the saved positions (its last store failed): the spans read since are read again."""
        self.positions.clear()
        self.restore(rows, events)

    def close(self) -> None:
        pass
