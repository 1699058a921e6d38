"""RabbitMQ: queues, consumers, bindings and dead-letter queues, from the management API.

Per sample, a handful of ``GET`` requests to the management HTTP API, as a user with
the ``monitoring`` tag (it sees every vhost's queues, consumers, exchanges and
bindings; it needs no AMQP permission at all): ``/api/queues`` (paged),
``/api/exchanges``, ``/api/bindings`` and ``/api/consumers``, each per vhost when
``vhosts`` is given. Nothing is declared, published, consumed, acknowledged or
requeued, and no other method than ``GET`` is ever sent.

RabbitMQ is not a log. A classic or quorum queue has no offsets: what a consumer has
not taken is ``messages_ready``, what it holds without having acknowledged it is
``messages_unacknowledged``, and a message cannot be looked at without taking it
off the queue (``basic.get`` with a requeue still redelivers it and marks it
redelivered). So:

* ``lag`` has one row per queue: group and topic are the queue (competing consumers
  share it), ``lag`` = ready, ``pending`` = unacked, ``members`` = consumers,
  ``committed``/``end`` = <NA>. ``lag_seconds`` is the age of the head message from
  ``head_message_timestamp`` (classic queues, when publishers set the ``timestamp``
  property), 0 when nothing is ready, else NaN: never guessed. A stream keeps its
  messages for every reader and the API shows no reader's offset, so its ``lag`` is
  <NA>. The verdict for queues is :func:`eventscope.analysis.queues.queue_status`.
* there is no ``events`` frame: a queue's messages cannot be read without consuming.
* a DLQ is a queue bound to an exchange that some queue names as its dead-letter
  exchange (its ``x-dead-letter-exchange`` argument, or a policy's
  ``dead-letter-exchange``, as ``effective_policy_definition`` shows), or a queue named
  like a DLQ (``dlq_pattern``). Its reasons are known only for a **stream** DLQ, and
  only when ``amqp_address`` is given: a stream is read from an offset by an AMQP
  consumer, which removes nothing (a prefetch-bounded read, never acknowledged, then
  cancelled), and each dead letter's ``x-death`` (or ``x-first-death-*``) headers give
  its reason and source queue. That read needs ``read`` permission on those stream
  queues and on nothing else. A classic or quorum DLQ keeps ``reasons = {}`` and
  ``unread = depth``: its reasons cannot be known without consuming it.
  Nothing of these reads is saved in the store: a restarted collector counts a stream DLQ
  again from its first offset (the stream still holds its messages, up to its retention),
  so none is counted twice.
"""
from __future__ import annotations

import base64
import http.client
import json
import math
import re
import socket
import time
import urllib.error
import urllib.request
from collections import defaultdict
from urllib.parse import quote, urlencode, urlsplit

import pandas as pd
import pika

from eventscope import schemas
from eventscope.dlq_names import RABBITMQ_DLQ_PATTERN
from eventscope.collectors.events_common import DeadLetterBook


PAGE_SIZE = 500  # queues per /api/queues page
# a head message stamped later than this ahead of our clock has a timestamp we cannot read
CLOCK_SKEW = pd.Timedelta(minutes=5)
STREAM_READ_MAX = 1000  # dead letters read from one stream DLQ per sample (the prefetch)
QUEUE_COLUMNS = ",".join([
    "name", "vhost", "type", "state", "messages", "messages_ready", "messages_unacknowledged", "consumers",
    "consumer_utilisation", "message_stats", "head_message_timestamp", "arguments",
    "effective_policy_definition", "policy", "operator_policy"])


class RabbitMQError(RuntimeError):
    """The management API could not be read; the message is one line and names no secret."""


class _NotFound(RabbitMQError):
    """404: a listed vhost that does not exist (its queues are none, not an error)."""


def queue_key(vhost: str, queue: str) -> str:
    """The lag frame's group/topic for a queue: its name in the default vhost, else ``vhost/name``."""
    return queue if vhost == "/" else f"{vhost}/{queue}"


class RabbitMQCollector:
    """Queues, consumers, bindings and DLQs of one RabbitMQ cluster, through its management API.

    ``api_url`` is the management API's base URL (``http://host:15672``); ``vhosts`` limits
    the sample to those vhosts (default: every vhost the user has a permission entry on);
    ``queues_pattern`` (a regex searched in the name) to those queues; ``amqp_address``
    (``host:port``) turns on the reading of stream DLQs with the same credentials.
    """

    name = "rabbitmq.queues"
    kind = "rabbitmq"

    def __init__(self, api_url: str, username: str, password: str, source: str = "rabbitmq",
                 vhosts: list[str] | None = None, queues_pattern: str | None = None, timeout_s: float = 10.0,
                 dlq_pattern: str = RABBITMQ_DLQ_PATTERN, amqp_address: str | None = None,
                 stream_read_max: int = STREAM_READ_MAX, opener: urllib.request.OpenerDirector | None = None):
        self.api_url = api_url.rstrip("/")
        self.username = username
        self._auth = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.source = self.broker = source
        self.vhosts = list(vhosts) if vhosts else None
        self.queues_filter = re.compile(queues_pattern) if queues_pattern else None
        self.timeout_s = timeout_s
        self.dlq_filter = re.compile(dlq_pattern)
        self.amqp_address = amqp_address
        self._password = password  # for the stream reads only; never logged or shown
        self.stream_read_max = max(1, int(stream_read_max))
        self.opener = opener or urllib.request.build_opener()
        self.books: dict[tuple[str, str], DeadLetterBook] = {}  # stream DLQ -> what was read of it
        self.positions: dict[tuple[str, str], int] = {}  # stream DLQ -> next offset to read
        self.counters = RateWindow()

    # -- the management API --------------------------------------------------------------
    def _get(self, path: str, query: dict | None = None):
        """One GET, decoded; any failure is a :class:`RabbitMQError` with a one-line message."""
        url = self.api_url + path + ("?" + urlencode(query) if query else "")
        request = urllib.request.Request(url, method="GET", headers={"authorization": self._auth,
                                                                      "accept": "application/json"})
        where = f"RabbitMQ management API at {_safe_url(self.api_url)}"
        try:
            with self.opener.open(request, timeout=self.timeout_s) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 401 and "virtual host" in _reason(exc):
                raise RabbitMQError(f"{where}: user {self.username!r} may not see the vhost of {path} "
                                    "(401: give it a permission entry there, even configure/write/read "
                                    "'^$')") from None
            if exc.code == 401:
                raise RabbitMQError(f"{where}: user {self.username!r} was refused (401: wrong "
                                    "user or password)") from None
            if exc.code == 403:
                raise RabbitMQError(f"{where}: user {self.username!r} may not read {path} (403: "
                                    "give it the `monitoring` tag)") from None
            if exc.code == 404:
                raise _NotFound(f"{where}: no {path}") from None
            raise RabbitMQError(f"{where}: HTTP {exc.code} on GET {path}") from None
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError,
                http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise RabbitMQError(f"{where} unreachable: {_one_line(reason)}") from None
        except ValueError as exc:
            raise RabbitMQError(f"{where}: not JSON on GET {path}: {_one_line(exc)}") from None

    def _per_vhost(self, kind: str, query: dict | None = None) -> list[dict]:
        if self.vhosts is None:
            return self._get(f"/api/{kind}", query)
        rows = []
        for vhost in self.vhosts:
            try:
                rows.extend(self._get(f"/api/{kind}/{quote(vhost, safe='')}", query))
            except _NotFound:
                continue
        return rows

    def _queues(self) -> list[dict]:
        """Every queue, a page of :data:`PAGE_SIZE` at a time (a big cluster's list in one
        answer is megabytes)."""
        queues = []
        for base in (["/api/queues"] if self.vhosts is None
                     else [f"/api/queues/{quote(v, safe='')}" for v in self.vhosts]):
            page = 1
            while True:
                try:
                    answer = self._get(base, {"page": page, "page_size": PAGE_SIZE, "columns": QUEUE_COLUMNS})
                except _NotFound:
                    break
                queues.extend(answer.get("items", []))
                if page >= int(answer.get("page_count") or 0):
                    break
                page += 1
        return queues

    # -- one sample ----------------------------------------------------------------------
    def collect(self) -> dict[str, pd.DataFrame]:
        every = self._queues()  # dead-letter routes are found among all, rows kept for the watched
        queues = every if self.queues_filter is None else [
            q for q in every if self.queues_filter.search(q.get("name", ""))]
        exchanges = {(e.get("vhost"), e.get("name")): e.get("type") or ""
                     for e in self._per_vhost("exchanges", {"columns": "name,vhost,type"})}
        bindings = [b for b in self._per_vhost("bindings") if b.get("destination_type") == "queue"]
        consumers = self._per_vhost("consumers")
        now = pd.Timestamp.now(tz="UTC")
        watched = {(q.get("vhost"), q.get("name")) for q in queues}
        routes = dead_letter_routes(every)
        dlqs = {k: v for k, v in dead_letter_queues(every, bindings, routes, self.dlq_filter, exchanges).items()
                if k in watched}
        stream_dlqs = [q for q in queues if (q.get("vhost"), q.get("name")) in dlqs and q.get("type") == "stream"]
        if self.amqp_address and stream_dlqs:
            self._read_streams(stream_dlqs)
        queue_rows, lag_rows, topic_rows, dlq_rows = [], [], [], []
        for q in queues:
            vhost, name = q.get("vhost"), q.get("name")
            row = queue_row(now, self.source, q, is_dlq=(vhost, name) in dlqs)
            row.update(self.counters.rates((vhost, name), now, q.get("message_stats")) or {})
            queue_rows.append(row)
            lag_rows.append(lag_row(now, self.source, q, row))
            topic_rows.append({"sampled_at": now, "source": self.source, "broker": self.broker,
                               "topic": queue_key(vhost, name), "partition": 0, "start": pd.NA,
                               "end": q.get("messages")})
            if (vhost, name) in dlqs:
                dlq_rows.append(self._dlq_row(now, q, row, sorted(queue_key(vhost, s) for s in dlqs[(vhost, name)])))
        binding_rows = [{"sampled_at": now, "source": self.source, "broker": self.broker, "vhost": b.get("vhost"),
                         "exchange": b.get("source"), "exchange_type": exchanges.get((b.get("vhost"), b.get("source")), ""),
                         "queue": b.get("destination"), "routing_key": b.get("routing_key") or "", "route": "binding"}
                        for b in bindings
                        if b.get("source") and (b.get("vhost"), b.get("destination")) in watched]
        binding_rows += [{"sampled_at": now, "source": self.source, "broker": self.broker, "vhost": vhost,
                          "exchange": exchange, "exchange_type": exchanges.get((vhost, exchange), ""),
                          "queue": name, "routing_key": key or "", "route": "dlx"}
                         for (vhost, name), (exchange, key) in sorted(routes.items()) if (vhost, name) in watched]
        consumer_rows = [consumer_row(now, self.source, c) for c in consumers
                         if (c.get("queue", {}).get("vhost"), c.get("queue", {}).get("name")) in watched]
        self._forget(set(dlqs))
        self.counters.keep(watched)
        return {"lag": schemas.conform("lag", lag_rows), "topics": schemas.conform("topics", topic_rows),
                "queues": schemas.conform("queues", queue_rows), "dlq": schemas.conform("dlq", dlq_rows),
                "bindings": schemas.conform("bindings", binding_rows),
                "consumers": schemas.conform("consumers", consumer_rows)}

    def _dlq_row(self, now, q: dict, row: dict, sources: list[str]) -> dict:
        vhost, name = q.get("vhost"), q.get("name")
        depth = int(q.get("messages") or 0)
        book = self.books.get((vhost, name))
        head = row["head_at"]
        if book is None:  # cannot be read without consuming: every message held is unread
            return DeadLetterBook().row(now, self.source, self.broker, queue_key(vhost, name), depth,
                                        head, unread=depth, declared=sources)
        counted = sum(book.reasons.values())
        return book.row(now, self.source, self.broker, queue_key(vhost, name), depth, head,
                        unread=max(0, depth - counted), declared=sources)

    def _forget(self, dlqs: set) -> None:
        """Books and positions of stream DLQs that are gone go with them."""
        self.books = {k: v for k, v in self.books.items() if k in dlqs}
        self.positions = {k: v for k, v in self.positions.items() if k in dlqs}

    # -- stream DLQs: x-death without consuming ----------------------------------------------
    def _read_streams(self, streams: list[dict]) -> None:
        """Read the dead letters added to each stream DLQ since the last sample (from its first
        offset the first time), at most ``stream_read_max`` each, and count their reasons.

        A stream that cannot be read (no ``read`` permission on it, the AMQP port unreachable)
        keeps the counts it had: its messages not counted are ``unread``, never a failed sample."""
        host, _, port = self.amqp_address.rpartition(":")
        by_vhost = defaultdict(list)
        for q in streams:
            by_vhost[q.get("vhost")].append(q.get("name"))
        for vhost, names in by_vhost.items():
            params = pika.ConnectionParameters(
                host=host, port=int(port), virtual_host=vhost,
                credentials=pika.PlainCredentials(self.username, self._password),
                connection_attempts=1, socket_timeout=self.timeout_s, blocked_connection_timeout=self.timeout_s,
                client_properties={"connection_name": "eventscope (read-only stream reader)"})
            try:
                connection = pika.BlockingConnection(params)
            except pika.exceptions.AMQPError:
                continue
            try:
                for name in names:
                    self._read_stream(connection, vhost, name)
            except pika.exceptions.AMQPError:
                pass  # the connection broke mid-read: what was counted stands, the rest waits
            finally:
                if connection.is_open:
                    connection.close()

    def _read_stream(self, connection, vhost: str, name: str) -> None:
        """Count the reasons of one stream DLQ's new dead letters. The consumer takes nothing
        off the stream (a stream is a log: readers only move their own offset), acknowledges
        nothing (the prefetch bounds the read) and is cancelled at once."""
        key = (vhost, name)
        start = self.positions.get(key, "first")
        received = []
        channel = connection.channel()
        try:
            channel.basic_qos(prefetch_count=self.stream_read_max)
            tag = channel.basic_consume(name, lambda _ch, _method, props, _body: received.append(props),
                                        auto_ack=False, arguments={"x-stream-offset": start})
            deadline = time.monotonic() + self.timeout_s
            while len(received) < self.stream_read_max and time.monotonic() < deadline:
                before = len(received)
                connection.process_data_events(time_limit=0.25)
                if len(received) == before:
                    break  # quiet for a quarter second: all there is has arrived
            channel.basic_cancel(tag)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 403:  # not granted read on this stream: its reasons are unknown
                self.books.pop(key, None)
                self.positions.pop(key, None)
            return
        finally:
            if channel.is_open:
                channel.close()
        book = self.books.setdefault(key, DeadLetterBook())
        for props in received[:self.stream_read_max]:
            headers = props.headers or {}
            offset = headers.get("x-stream-offset")
            if isinstance(offset, int):
                if isinstance(start, int) and offset < start:
                    continue  # a stream delivers from the start of the chunk holding the offset
                self.positions[key] = max(self.positions.get(key, 0), offset + 1)
            reason, origin = death_reason(headers)
            seen = epoch_seconds(props.timestamp)
            book.count(reason, queue_key(vhost, origin) if origin else None, seen)

    def close(self) -> None:
        """Nothing held between samples (each sample opens its own requests)."""


class RateWindow:
    """Publish, deliver and ack rates of each queue from the management API's message counters
    over the collector's last ``window_s`` seconds.

    The API's own ``rate`` compares its two newest statistics samples, and a queue's counters
    there move in steps every few seconds: between steps a busy queue reads 0.0 msg/s, which
    would judge it stalled. The counters' difference over the window does not. Until a queue
    has been sampled ``min_span_s`` apart (or after its counters went back: a re-declared
    queue) the API's rate stands."""

    COUNTERS = {"publish_rate": "publish", "deliver_rate": "deliver_get", "ack_rate": "ack"}

    def __init__(self, window_s: float = 30.0, min_span_s: float = 8.0):
        self.window_s, self.min_span_s = window_s, min_span_s
        self.seen: dict[tuple[str, str], list[tuple[pd.Timestamp, dict]]] = {}

    def rates(self, key: tuple[str, str], now: pd.Timestamp, stats: dict | None) -> dict | None:
        """The rates of queue ``key`` now (None: keep the API's), noting this sample's counters."""
        if not stats:
            self.seen.pop(key, None)
            return None
        counts = {column: int(stats.get(counter) or 0) for column, counter in self.COUNTERS.items()}
        history = [(at, c) for at, c in self.seen.get(key, [])
                   if (now - at).total_seconds() <= self.window_s
                   and all(c[k] <= counts[k] for k in counts)]  # a counter going back: start over
        history.append((now, counts))
        self.seen[key] = history
        then, before = history[0]
        span = (now - then).total_seconds()
        if span < self.min_span_s:
            return None
        return {column: (counts[column] - before[column]) / span for column in counts}

    def keep(self, keys: set) -> None:
        """Forget the queues no longer watched."""
        for key in set(self.seen) - set(keys):
            del self.seen[key]


# -- rows -----------------------------------------------------------------------------------
def _rate(stats: dict | None, key: str) -> float:
    """A management rate (msg/s): NaN when the queue has no ``message_stats`` at all (rates
    off, or never any traffic); 0.0 when it has stats but this counter never moved."""
    if not stats:
        return math.nan
    details = stats.get(f"{key}_details") or {}
    return float(details.get("rate", 0.0))


def epoch_seconds(value) -> pd.Timestamp | None:
    """An AMQP ``timestamp`` (seconds since the epoch, set by the publisher) as a UTC time;
    None when absent or not a time pandas can hold (a publisher that wrote milliseconds
    there gives a date ages ahead, which :func:`lag_row` treats as unknown)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    try:
        return pd.Timestamp(value, unit="s", tz="UTC")
    except (OverflowError, ValueError, pd.errors.OutOfBoundsDatetime):
        return None


def dead_letter_target(q: dict) -> tuple[str | None, str | None]:
    """A queue's dead-letter exchange and routing key: its arguments first (they win over a
    policy, as in RabbitMQ), else its effective policy."""
    args = q.get("arguments") or {}
    policy = q.get("effective_policy_definition") or {}
    if not isinstance(policy, dict):  # an empty definition comes back as [] from some versions
        policy = {}
    exchange = args.get("x-dead-letter-exchange", policy.get("dead-letter-exchange"))
    key = args.get("x-dead-letter-routing-key", policy.get("dead-letter-routing-key"))
    return exchange, key


def dead_letter_routes(queues: list[dict]) -> dict[tuple[str, str], tuple[str, str | None]]:
    """(vhost, queue) -> (dead-letter exchange, routing key) of every queue that has one."""
    routes = {}
    for q in queues:
        exchange, key = dead_letter_target(q)
        if exchange is not None:
            routes[(q.get("vhost"), q.get("name"))] = (exchange, key)
    return routes


def dead_letter_queues(queues: list[dict], bindings: list[dict], routes: dict,
                       dlq_filter: re.Pattern, exchange_types: dict | None = None) -> dict[tuple[str, str], set[str]]:
    """(vhost, queue) of every DLQ -> the queues whose dead letters can reach it.

    A queue bound to a dead-letter exchange receives what every queue naming that exchange
    dead-letters (on a ``direct`` exchange, ``exchange_types`` ((vhost, name) -> type) given,
    only what a dead-letter routing key equal to the binding's sends; elsewhere the route is
    what the topology allows). With
    the default exchange (``""``) the routing key names the DLQ itself. A queue named like a
    DLQ counts too, with no known source."""
    by_exchange = defaultdict(dict)
    for (vhost, name), (exchange, key) in routes.items():
        by_exchange[(vhost, exchange)][name] = key
    dlqs: dict[tuple[str, str], set[str]] = defaultdict(set)
    for b in bindings:
        senders = by_exchange.get((b.get("vhost"), b.get("source")))
        if senders and b.get("source"):
            direct = (exchange_types or {}).get((b.get("vhost"), b.get("source"))) == "direct"
            # a direct exchange routes a dead-letter routing key only to the queues bound with it
            dlqs[(b.get("vhost"), b.get("destination"))].update(
                name for name, key in senders.items() if not direct or key is None or key == b.get("routing_key"))
    for (vhost, name), (exchange, key) in routes.items():
        if exchange == "" and key:
            dlqs[(vhost, key)].add(name)
    names = {(q.get("vhost"), q.get("name")) for q in queues}
    for vhost, name in names:
        if dlq_filter.search(name or ""):
            dlqs[(vhost, name)]
    return {k: v - {k[1]} for k, v in dlqs.items() if k in names}


def queue_row(now, source: str, q: dict, is_dlq: bool) -> dict:
    """The ``queues`` row of one queue object of the API."""
    stats = q.get("message_stats")
    exchange, key = dead_letter_target(q)
    utilisation = q.get("consumer_utilisation")
    head = q.get("head_message_timestamp")
    return {"sampled_at": now, "source": source, "broker": source, "vhost": q.get("vhost"),
            "queue": q.get("name"), "type": q.get("type") or "classic", "state": q.get("state"),
            "ready": q.get("messages_ready"), "unacked": q.get("messages_unacknowledged"),
            "messages": q.get("messages"), "consumers": q.get("consumers"),
            "consumer_utilisation": math.nan if utilisation is None else float(utilisation),
            "publish_rate": _rate(stats, "publish"), "deliver_rate": _rate(stats, "deliver_get"),
            "ack_rate": _rate(stats, "ack"),
            "head_at": epoch_seconds(head),
            "dead_letter_exchange": exchange or "", "dead_letter_routing_key": key or "",
            "policy": q.get("policy") or "", "is_dlq": is_dlq}


def lag_row(now, source: str, q: dict, row: dict) -> dict:
    """The ``lag`` row of one queue (see the module docstring)."""
    stream = row["type"] == "stream"
    ready = None if stream else row["ready"]
    if ready is None:
        lag_s = math.nan
    elif ready == 0:
        lag_s = 0.0
    elif row["head_at"] is not None and row["head_at"] <= now + CLOCK_SKEW:
        lag_s = max(0.0, (now - row["head_at"]).total_seconds())
    else:
        lag_s = math.nan
    key = queue_key(row["vhost"], row["queue"])
    return {"sampled_at": now, "source": source, "broker": source, "group": key, "topic": key,
            "partition": 0, "committed": None, "end": None, "lag": ready, "lag_seconds": lag_s,
            "group_state": row["state"] or "", "members": row["consumers"],
            "pending": None if stream else row["unacked"]}


def consumer_row(now, source: str, c: dict) -> dict:
    """The ``consumers`` row of one consumer object of the API."""
    queue = c.get("queue") or {}
    key = queue_key(queue.get("vhost"), queue.get("name"))
    channel = c.get("channel_details") or {}
    return {"sampled_at": now, "source": source, "broker": source, "group": key, "topic": key,
            "consumer": c.get("consumer_tag"), "host": channel.get("peer_host") or "", "assignment": "",
            "pending": None, "idle_ms": None}


def death_reason(headers: dict) -> tuple[str, str | None]:
    """A dead letter's reason (``rejected``, ``expired``, ``maxlen``, ``delivery_limit``) and
    the queue it died in: the newest ``x-death`` entry, else the ``x-first-death-*`` headers."""
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        death = deaths[0]
        return _text(death.get("reason")) or "unknown", _text(death.get("queue"))
    reason = _text(headers.get("x-first-death-reason"))
    return reason or "unknown", _text(headers.get("x-first-death-queue"))


def _text(value) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return None if value is None else str(value)


def _safe_url(url: str) -> str:
    """The URL without any user:password part."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{':' + str(parts.port) if parts.port else ''}{parts.path}"


def _reason(exc: urllib.error.HTTPError) -> str:
    """The ``reason`` of an API error answer (``{"error": ..., "reason": ...}``); empty if none."""
    try:
        return str(json.loads(exc.read(2000)).get("reason", ""))
    except (ValueError, AttributeError, OSError):
        return ""


def _one_line(value) -> str:
    return " ".join(str(value).split())[:200]
