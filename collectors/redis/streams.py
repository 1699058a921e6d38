"""Redis Streams: stream lengths, group lag and observed entries, in few round trips.

Per sample: one SCAN walk (``TYPE stream``) unless streams are listed explicitly,
one pipeline of ``XINFO STREAM`` + ``XINFO GROUPS`` for every stream, and one
pipeline with, per stream, ``XRANGE`` for new entries and, per group, ``XRANGE``
for the first undelivered entry (its ID dates ``lag_seconds`` exactly),
``XINFO CONSUMERS`` and, when the group has pending entries, the extended
``XPENDING`` of its oldest ones, from which *stuck* entries (delivered at least
``stuck_min_deliveries`` times, or idle ``stuck_idle_s``) are listed. Only read commands are used: no XREADGROUP, XACK,
XCLAIM or XGROUP, so groups and pending lists are left exactly as found.

Lag comes from Redis 7's ``entries-read`` / ``lag``. Redis reports ``lag`` as null
when it cannot know it (a group created at ``$`` that never read, entries deleted
from the middle of the stream); such rows keep ``lag = <NA>`` rather than guessing.
"""
from __future__ import annotations

import re
import time

import pandas as pd
import redis

from eventscope.collectors.events_common import (DeadLetterBook, EventBatch, RecordOrigins, gc_paused,
                                                 glob_filter, reading_rows, restore_reading)
from eventscope import schemas

MIN_READ = 50  # entries read of a stream at least, when it is read at all


def entry_ms(entry_id: str | bytes) -> int | None:
    """The millisecond part of a stream entry ID (epoch milliseconds); None when it is not one."""
    if isinstance(entry_id, bytes):
        entry_id = entry_id.decode()
    try:
        return int(str(entry_id).split("-")[0])
    except ValueError:
        return None


def entry_time(entry_id: str | bytes) -> pd.Timestamp | None:
    """The millisecond part of a stream entry ID, as a UTC timestamp."""
    ms = entry_ms(entry_id)
    try:
        return None if ms is None else pd.Timestamp(ms, unit="ms", tz="UTC")
    except (ValueError, OverflowError):  # an ID set by hand beyond what a timestamp holds
        return None


class RedisStreamsCollector:
    """Streams, groups and entries from one Redis server."""

    name = "redis.streams"
    kind = "redis"

    def __init__(self, client: redis.Redis, source: str = "redis", pattern: str = "*",
                 streams: list[str] | None = None, dlq_pattern: str = r"(\.dlq|:dlq)$",
                 max_events: int = 5000, backlog: int = 5000, stuck_min_deliveries: int = 3,
                 stuck_idle_s: float = 60.0, stuck_scan: int = 100, lookback_s: float | None = None,
                 globs: list | None = None, sample_ratio: float = 1.0, decoder=None,
                 payload_max_chars: int = 4000, dlq_read_max: int = 10_000, explain=None):
        self.client = client
        self.explain = explain  # exception -> one line in the settings' terms, or None
        self.source = self.broker = source
        self.pattern = pattern
        self.explicit = list(streams or [])
        self.dlq_filter = re.compile(dlq_pattern)
        self.max_events = max_events
        self.backlog = backlog
        self._turn = 0  # where the next sample's share of busy streams starts
        self.stuck_min_deliveries = stuck_min_deliveries
        self.stuck_idle_ms = int(stuck_idle_s * 1000)
        self.stuck_scan = stuck_scan
        self.lookback_s = lookback_s
        self.glob = glob_filter(globs)  # which streams' entries are read as events
        self.sample_ratio = sample_ratio
        self.decoder = decoder
        self.payload_max_chars = payload_max_chars
        self.positions: dict[str, str] = {}
        self.first_unread_cache: dict[tuple[str, str], tuple[str, pd.Timestamp | None]] = {}
        self.books: dict[str, DeadLetterBook] = {}
        self.dlq_read_max = dlq_read_max  # a DLQ stream seen for the first time: read this much of it
        self.origins = RecordOrigins()  # a DLQ without fields naming its source: its entries' bytes do
        self._raw: dict[str, bytes] = {}  # shown name -> key bytes, for keys that are not UTF-8
        self.sampled = False  # a full sample has succeeded: the event reader knows what to tail

    def discover(self) -> list[str]:
        """Stream keys to watch."""
        if self.explicit:
            return self.explicit
        keys = self.client.scan_iter(match=self.pattern, count=1000, _type="stream")
        return sorted(self._name(k) for k in keys)

    def _name(self, key) -> str:
        """A stream key as text. A key that is not UTF-8 (Redis keys are bytes) is shown with
        its odd bytes escaped (``bad\\xffkey``) and reached under its own bytes (:meth:`_k`),
        so one such key neither stops the sample nor hides its stream."""
        if not isinstance(key, bytes):
            return key
        try:
            return key.decode()
        except UnicodeDecodeError:
            name = key.decode("utf-8", "backslashreplace")
            self._raw[name] = key
            return name

    def _k(self, name: str):
        """What to send Redis for the stream shown as ``name``."""
        return self._raw.get(name, name)

    def collect(self) -> dict[str, pd.DataFrame]:
        return self._explained(self._collect)

    def _explained(self, sample):
        """``sample()``, a failure raised again as one line that names the setting to look at
        (wrong password, untrusted certificate, a cluster node or the Sentinels unreachable)."""
        try:
            return sample()
        except (redis.RedisError, redis.exceptions.RedisClusterException, OSError) as exc:
            line = self.explain(exc) if self.explain else None
            if line is None:
                raise
            raise ConnectionError(line) from exc

    def _collect(self) -> dict[str, pd.DataFrame]:
        keys = self.discover()
        now = pd.Timestamp.now(tz="UTC")
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.xinfo_stream(self._k(key))
            pipe.xinfo_groups(self._k(key))
        replies = pipe.execute(raise_on_error=False) if keys else []
        infos = {}
        for i, key in enumerate(keys):
            info, groups = replies[2 * i], replies[2 * i + 1]
            if _gone(info):
                continue  # the key vanished or changed type between SCAN and XINFO
            infos[key] = (info, groups if not _gone(groups) else [])
        pipe = self.client.pipeline(transaction=False)
        reads = []
        first_unread_known: dict = {}
        positions_asked: dict = {}
        fresh = [k for k, (info, _) in infos.items()
                 if _s(info.get("last-generated-id")) != self.positions.get(k) and self.glob.match(k)]
        fresh, per_stream = self._share(fresh)
        for key in fresh:
            pipe.xrange(self._k(key), min=self._start_id(key, infos[key][0]), max="+", count=per_stream)
            reads.append(("events", key, None))
        for key, (info, groups) in infos.items():
            for group in groups:
                name = _s(group.get("name"))
                last = _s(group.get("last-delivered-id")) or "0-0"
                if group.get("lag") != 0:  # lag 0 needs no dating
                    cached = self.first_unread_cache.get((key, name))
                    if cached is not None and cached[0] == last and cached[1] is not None:
                        # same delivery position as last sample: same oldest undelivered entry
                        first_unread_known[(key, name)] = cached[1]
                    else:
                        pipe.xrange(self._k(key), min="(" + last, max="+", count=1)
                        reads.append(("first_unread", key, name))
                        positions_asked[(key, name)] = last
                if group.get("consumers"):
                    pipe.xinfo_consumers(self._k(key), name)
                    reads.append(("consumers", key, name))
                if group.get("pending"):
                    # the oldest pending entries are the ones that can be stuck
                    pipe.xpending_range(self._k(key), name, min="-", max="+", count=self.stuck_scan)
                    reads.append(("pending", key, name))
        replies = pipe.execute(raise_on_error=False) if reads else []
        first_unread, consumers, stuck = dict(first_unread_known), [], []
        batch = self._batch()
        for (kind, key, group), reply in zip(reads, replies):
            if _gone(reply):
                continue  # key or group deleted mid-sample: the other keys still count
            if kind == "first_unread":
                first_unread[(key, group)] = entry_time(reply[0][0]) if reply else None
                self.first_unread_cache[(key, group)] = (positions_asked[(key, group)],
                                                         first_unread[(key, group)])
            elif kind == "consumers":
                consumers.extend({"sampled_at": now, "source": self.source, "broker": self.broker,
                                  "group": group, "topic": key, "consumer": _s(c.get("name")),
                                  "host": "", "assignment": "", "pending": c.get("pending"),
                                  "idle_ms": c.get("idle")} for c in reply)
            elif kind == "pending":
                stuck.extend({"sampled_at": now, "source": self.source, "broker": self.broker, "topic": key,
                              "group": group, "entry_id": _s(p["message_id"]), "consumer": _s(p["consumer"]),
                              "idle_ms": p["time_since_delivered"], "deliveries": p["times_delivered"]}
                             for p in reply
                             if p["times_delivered"] >= self.stuck_min_deliveries
                             or p["time_since_delivered"] >= self.stuck_idle_ms)
            else:
                self._add_entries(batch, key, reply)
        events = batch.frame(now, self.books)  # before the DLQ rows: it counts the dead letters
        active = {}
        for row in consumers:
            idle = row.get("idle_ms")
            fresh = idle is not None and idle < self.stuck_idle_ms
            active[(row["topic"], row["group"])] = active.get((row["topic"], row["group"]), 0) + fresh
        lag, topics, dlq = [], [], []
        for key, (info, groups) in infos.items():
            added = info.get("entries-added")
            topics.append({"sampled_at": now, "source": self.source, "broker": self.broker,
                           "topic": key, "partition": 0, "start": info.get("length"), "end": added})
            for group in groups:
                lag.append(self._lag_row(now, key, group, added, first_unread, active))
            if self.dlq_filter.search(key) or key in self.books:
                first = info.get("first-entry")
                oldest = entry_time(first[0]) if first else None
                book = self.books.setdefault(key, DeadLetterBook())
                # what the first read left unread is held while the oldest entry predates its start
                until = book.unread_until.get(0)
                unread = book.unread if until and first and _older(_s(first[0]), until) else 0
                dlq.append(book.row(now, self.source, self.broker, key, int(info.get("length") or 0), oldest,
                                    unread))
        self._forget(infos)
        self.sampled = True
        return {"lag": schemas.conform("lag", lag), "topics": schemas.conform("topics", topics),
                "events": events, "dlq": schemas.conform("dlq", dlq),
                "consumers": schemas.conform("consumers", consumers),
                "stuck": schemas.conform("stuck", stuck)}

    def _forget(self, infos: dict) -> None:
        """Per-stream state of streams (and groups) that no longer exist goes: a Redis where
        streams come and go (one per job, per tenant, per day) must not grow this process."""
        live_groups = {(key, _s(g.get("name"))) for key, (_, groups) in infos.items() for g in groups}
        self.positions = {k: v for k, v in self.positions.items() if k in infos}
        self.books = {k: v for k, v in self.books.items() if k in infos}
        self.first_unread_cache = {k: v for k, v in self.first_unread_cache.items() if k in live_groups}
        self._raw = {k: v for k, v in self._raw.items() if k in infos}

    def collect_events(self) -> dict[str, pd.DataFrame]:
        """Only the new entries of the streams already being tailed (:meth:`_collect_events`)."""
        return self._explained(self._collect_events)

    def _collect_events(self) -> dict[str, pd.DataFrame]:
        """Only the new entries of the streams already being tailed (one pipelined XRANGE each).

        The full :meth:`collect` finds new streams and samples lag; this runs between
        those samples, so an event is findable soon after it is produced.
        """
        keys = [k for k in self.positions if self.glob.match(k)]
        if not keys:
            if not self.sampled:  # it has asked Redis nothing: not a success to report
                raise ConnectionError("no stream to read yet: the server has not been sampled successfully")
            return {"events": schemas.empty("events")}
        now = pd.Timestamp.now(tz="UTC")
        keys, per_stream = self._share(keys)
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.xrange(self._k(key), min="(" + self.positions[key], max="+", count=per_stream)
        batch = self._batch()
        for key, reply in zip(keys, pipe.execute(raise_on_error=False)):
            if not _gone(reply):  # a deleted key: the next full sample notices
                self._add_entries(batch, key, reply)
        return {"events": batch.frame(now, self.books)}

    def _share(self, keys: list[str]) -> tuple[list[str], int]:
        """The streams to read this sample and how many entries of each: one budget of
        ``max_events`` per sample, at least ``MIN_READ`` entries a stream. When more streams
        have news than that allows, they take turns (the rest stays for the next samples),
        so 2,000 busy streams never make one sample read 100,000 entries."""
        per_stream = max(MIN_READ, self.max_events // max(1, len(keys)))
        if len(keys) * per_stream <= self.max_events:
            return keys, per_stream
        count = max(1, self.max_events // per_stream)
        start = self._turn % len(keys)
        self._turn += count
        return (keys[start:] + keys[:start])[:count], per_stream

    def _start_id(self, key: str, info: dict) -> str:
        if key in self.positions:
            return "(" + self.positions[key]
        if self.dlq_filter.search(key):
            return self._dlq_start(key, int(info.get("length") or 0))
        if self.lookback_s is not None:  # entry IDs are times: start at now - lookback
            return f"{max(0, int((time.time() - self.lookback_s) * 1000))}-0"
        length = int(info.get("length") or 0)
        if length <= self.backlog:
            return "-"
        # Start a bounded tail before the end: the entry ``backlog`` from the end.
        tail = self.client.xrevrange(self._k(key), max="+", min="-", count=self.backlog)
        return _s(tail[-1][0]) if tail else "-"

    def reading_state(self, now) -> list[dict]:
        """``reading_state`` rows: the last entry ID read of every stream, and the DLQ books."""
        return reading_rows(now, self.source, self.broker, {(key, 0): entry for key, entry in self.positions.items()},
                            self.books)

    def restore(self, rows: pd.DataFrame, events: pd.DataFrame | None = None) -> None:
        """Go on from saved ``reading_state`` rows (and the ``events`` stored after them)."""
        positions, books = restore_reading(rows, events, "redis")
        self.positions.update({key: entry for (key, _), entry in positions.items()})
        self.books.update(books)

    def rewind(self, rows: pd.DataFrame, events: pd.DataFrame | None = None) -> None:
        """Back to what the store holds (its last store failed), as after a restart."""
        self.positions.clear()
        self.books = {}
        self.restore(rows, events)

    def _dlq_start(self, key: str, length: int) -> str:
        """A DLQ stream seen for the first time is read from its oldest entry, up to
        ``dlq_read_max`` entries: past that, from the newest, and the book notes the rest."""
        if length <= self.dlq_read_max:
            return "-"
        tail = self.client.xrevrange(self._k(key), max="+", min="-", count=max(1, self.dlq_read_max))
        if not tail:
            return "-"
        start = _s(tail[-1][0])
        book = self.books.setdefault(key, DeadLetterBook())
        book.unread_until = {0: start}
        book.unread = length - len(tail)
        return start

    def _batch(self) -> EventBatch:
        return EventBatch(self.source, self.broker, decoder=self.decoder, sample_ratio=self.sample_ratio,
                          origins=self.origins,
                          payload_max_chars=self.payload_max_chars)

    def _add_entries(self, batch: EventBatch, key: str, entries) -> None:
        """Add one XRANGE reply's entries to ``batch`` (the fields are the headers; the payload is
        the ``envelope``/``payload`` field) and move the stream's position past them."""
        dead = bool(self.dlq_filter.search(key))
        with gc_paused():  # thousands of small objects per reply, none in a cycle
            for entry_id, fields in entries:
                entry_id = _s(entry_id)
                headers = {(_s(k) or "").lower(): v if isinstance(v, bytes) else str(v).encode()
                           for k, v in fields.items()}
                batch.add(key, 0, entry_id, entry_ms(entry_id), None, headers, dead)
                self.positions[key] = entry_id

    def _lag_row(self, now, key: str, group: dict, added, first_unread, active: dict) -> dict:
        name = _s(group.get("name"))
        entries_read = group.get("entries-read")
        lag = group.get("lag")
        if lag is not None and lag < 0:
            lag = None
        first = first_unread.get((key, name)) if lag != 0 else None
        if first is not None:
            # exact: the millisecond part of the oldest undelivered entry's ID
            lag_s = (now - first).total_seconds()
        elif lag is None and (key, name) in first_unread:
            # Redis could not count (group made at "$", entries deleted), but nothing
            # lies beyond the group's last-delivered ID: it is caught up.
            lag, lag_s = 0, 0.0
        else:
            lag_s = 0.0 if lag == 0 else float("nan")
        return {"sampled_at": now, "source": self.source, "broker": self.broker, "group": name,
                "topic": key, "partition": 0, "committed": entries_read, "end": added,
                "lag": lag, "lag_seconds": max(0.0, lag_s) if lag_s == lag_s else lag_s,
                # Redis has no heartbeat: a consumer counts as a member while it has
                # touched the group within stuck_idle_s (so a group nobody reads is STOP)
                "group_state": "n/a", "members": active.get((key, name), 0),
                "pending": group.get("pending")}

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


def _older(entry: str, than: str) -> bool:
    """True when Redis entry ID ``entry`` comes before ``than``."""
    def key(value):
        ms, _, seq = value.partition("-")
        return int(ms), int(seq or 0)
    return key(entry) < key(than)


def _s(value) -> str | None:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


_GONE = ("no such key", "wrongtype", "nogroup")


def _gone(reply) -> bool:
    """True when a pipelined reply says its key or group went away (or changed type) since
    it was listed: that stream is skipped this sample. Any other error (a command the ACL
    user may not run, a lost connection) is raised: the sample fails and says why, rather
    than leaving the stream out with every health row ok."""
    if not isinstance(reply, Exception):
        return False
    if isinstance(reply, redis.ResponseError) and not isinstance(reply, redis.exceptions.NoPermissionError) \
            and str(reply).lower().startswith(_GONE):
        return True
    raise reply
