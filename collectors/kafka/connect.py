"""Kafka Connect's own account of its dead-letter queues, from the workers' REST API.

A sink connector with ``errors.tolerance=all`` writes the records it cannot take to the
topic named by ``errors.deadletterqueue.topic.name``. With context headers off (Connect's
default) those records say nothing of where they came from, and the topic may be named
anything (``sink-errors``). The connector's configuration says both: which topic is its DLQ
and which topics it consumes (``topics`` or ``topics.regex``), through the consumer group
``connect-<name>`` (or ``consumer.override.group.id``).

Only ``GET`` requests are made (``/connectors?expand=info``), every ``interval_s``; what the
last successful answer said is kept while a worker is unreachable, and the failure is this
collector's health. It writes no frame of its own: :class:`~eventscope.collectors.kafka.events.KafkaEventsCollector`
reads its DLQs and their sources.
"""
from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import pandas as pd

DLQ_KEY = "errors.deadletterqueue.topic.name"
ANSWER_MAX_BYTES = 16 * 1024 * 1024  # a worker with thousands of connectors answers a few MB


@dataclass(frozen=True)
class ConnectorDLQ:
    """One sink connector's DLQ: the connector, the topics it reads, its consumer group."""

    connector: str
    dlq: str
    topics: tuple[str, ...] = ()
    topics_regex: str | None = None
    group: str | None = None

    def sources(self, known_topics) -> list[str]:
        """The topics this connector reads: its list, or those of ``known_topics`` its regex matches."""
        if self.topics:
            return list(self.topics)
        if self.topics_regex:
            try:
                pattern = re.compile(self.topics_regex)
            except re.error:
                return []
            return sorted(t for t in known_topics if pattern.fullmatch(t) and t != self.dlq)
        return []


def connectors_from(answer: dict) -> list[ConnectorDLQ]:
    """The sink connectors with a DLQ in a ``GET /connectors?expand=info`` answer."""
    found = []
    for name, entry in sorted((answer or {}).items()):
        info = entry.get("info") if isinstance(entry, dict) else None
        config = info.get("config") if isinstance(info, dict) else None
        if not isinstance(config, dict) or not str(config.get(DLQ_KEY) or "").strip():
            continue
        topics = tuple(t.strip() for t in str(config.get("topics") or "").split(",") if t.strip())
        group = config.get("consumer.override.group.id") or f"connect-{name}"
        found.append(ConnectorDLQ(str(name), str(config[DLQ_KEY]).strip(), topics,
                                  str(config.get("topics.regex") or "") or None, str(group)))
    return found


def _request(url: str) -> urllib.request.Request:
    """A GET for ``url``, its ``user:password@`` moved into a Basic Authorization header."""
    parts = urlsplit(url)
    if parts.username is None:
        return urllib.request.Request(url, headers={"Accept": "application/json"})
    bare = urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")))
    token = base64.b64encode(f"{parts.username}:{parts.password or ''}".encode()).decode()
    return urllib.request.Request(bare, headers={"Accept": "application/json", "Authorization": f"Basic {token}"})


def _shown(url: str) -> str:
    """``url`` without its credentials, for messages."""
    parts = urlsplit(url)
    if parts.username is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")))


class ConnectDirectory:
    """The DLQs Kafka Connect workers are configured with, refreshed every ``interval_s``."""

    name = "kafka.connect"
    kind = "kafka"

    def __init__(self, urls: list[str], timeout_s: float = 5.0, interval_s: float = 60.0, source: str = "kafka"):
        self.source = self.broker = source
        self.urls = [u.rstrip("/") for u in urls if u.strip()]
        self.timeout_s = timeout_s
        self.interval_s = interval_s
        self.connectors: dict[str, ConnectorDLQ] = {}  # by DLQ topic
        self._known: dict[str, list[ConnectorDLQ]] = {}  # what each worker said last time

    def collect(self) -> dict[str, pd.DataFrame]:
        """Ask every worker; a worker that cannot be asked keeps its last answer and fails
        this run (after the others were asked) with one line naming it."""
        failed = []
        for url in self.urls:
            try:
                self._known[url] = connectors_from(self._get(url + "/connectors?expand=info"))
            except Exception as exc:  # unreachable, refused, not JSON: said once, per worker
                failed.append(f"{_shown(url)}: {_reason(exc)}")
        self.connectors = {c.dlq: c for found in self._known.values() for c in found}
        if failed:
            raise ConnectionError("Kafka Connect not readable at " + "; ".join(failed))
        return {}

    def _get(self, url: str):
        with urllib.request.urlopen(_request(url), timeout=self.timeout_s) as answer:
            body = answer.read(ANSWER_MAX_BYTES + 1)
        if len(body) > ANSWER_MAX_BYTES:
            raise ValueError(f"answer larger than {ANSWER_MAX_BYTES >> 20} MB")
        return json.loads(body)

    def is_dlq(self, topic: str) -> bool:
        return topic in self.connectors

    def sources(self, dlq: str, known_topics) -> list[str]:
        """The topics whose records the connector behind ``dlq`` dead-letters into it."""
        connector = self.connectors.get(dlq)
        return connector.sources(known_topics) if connector is not None else []

    def close(self) -> None:
        pass


def _reason(exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    if isinstance(exc, json.JSONDecodeError):
        return "the answer is not JSON"
    return " ".join(str(exc).split())[:200] or exc.__class__.__name__
