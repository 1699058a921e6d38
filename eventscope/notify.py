"""Webhook notifications: a background thread, a bounded queue, retries, dedupe.

The sampling loop only calls :meth:`Notifier.submit`, which never blocks: it puts
messages on a bounded queue (a full queue drops the message and says so in the log).
One daemon thread POSTs them, retrying a failed attempt with exponential backoff
(``backoff_s`` × 2^attempt). Each message has a key (webhook, episode, transition,
severity); keys of delivered messages are kept in ``alerts-delivered.json`` in the
store directory, so neither a retry nor a restart (which re-submits the recent
undelivered transitions) ever sends the same message twice.

Payloads: ``slack`` is ``{"text": ...}`` (Slack incoming webhooks and most chat
tools accept it); ``generic`` is one flat JSON object per transition. Webhook URLs
are only ever shown redacted.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
import urllib.request
from pathlib import Path

log = logging.getLogger("eventscope.notify")

NOTIFIED = ("firing", "escalated", "resolved")
DELIVERED_FILE = "alerts-delivered.json"
KEEP_KEYS = 5000


def message_key(webhook, t: dict) -> str:
    """Dedupe key of one transition for one webhook (the URL only as a hash)."""
    hook = hashlib.sha256(webhook.url.encode()).hexdigest()[:12]
    return f"{hook}|{t['episode']}|{t['transition']}|{t['severity']}"


def payload(webhook, t: dict) -> dict:
    """The JSON body for ``webhook``'s format."""
    doc = {"source": "eventscope", "status": t["transition"], "rule": t["rule"], "metric": t["metric"],
           "severity": t["severity"], "subject": t["subject"], "value": _plain(t.get("value")),
           "threshold": _plain(t.get("threshold")), "clear": _plain(t.get("clear")),
           "since": _iso(t.get("since")), "fired_at": _iso(t.get("fired_at")), "at": _iso(t.get("at")),
           "episode": t["episode"], "detail": t.get("detail") or ""}
    if webhook.format != "slack":
        return doc
    icon = {"firing": ":red_circle:" if t["severity"] == "critical" else ":large_orange_circle:",
            "escalated": ":red_circle:", "resolved": ":white_check_mark:"}.get(t["transition"], "")
    value = doc["value"] if doc["value"] is not None else doc["detail"]
    limit = "" if doc["threshold"] is None else f" (threshold {doc['threshold']:g})"
    text = (f"{icon} *{t['transition'].upper()}* [{t['severity']}] {_slack(t['rule'])} on "
            f"`{_slack(t['subject'])}`: {_slack(value)}{limit}, since {doc['since']}")
    if doc["detail"] and doc["value"] is not None:
        text += f" - {_slack(doc['detail'])}"
    return {"text": text}


class Notifier:
    """Delivers alert transitions to webhooks from a background thread."""

    def __init__(self, webhooks: list, state_dir: str | os.PathLike | None = None, retries: int = 5,
                 backoff_s: float = 1.0, timeout_s: float = 5.0, queue_size: int = 1000):
        self.webhooks = list(webhooks)
        self.retries, self.backoff_s, self.timeout_s = retries, backoff_s, timeout_s
        self.path = Path(state_dir) / DELIVERED_FILE if state_dir else None
        self.delivered: list[str] = self._load()
        self._delivered_set = set(self.delivered)
        self._queued: set[str] = set()
        self._lock = threading.Lock()
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.stop_event = threading.Event()
        self.sent = 0
        self.failed = 0
        self.thread = threading.Thread(target=self._work, name="eventscope-notifier", daemon=True)
        if self.webhooks:
            self.thread.start()

    def submit(self, transitions) -> int:
        """Queue the notifiable transitions (never blocks); returns how many were queued."""
        queued = 0
        for t in transitions:
            if t["transition"] not in NOTIFIED:
                continue
            names = (t["subject"], *str(t["subject"]).replace(":", "/").split("/"))
            for hook in self.webhooks:
                if not hook.wants(t["severity"], names):
                    continue
                key = message_key(hook, t)
                with self._lock:
                    if key in self._delivered_set or key in self._queued:
                        continue
                    try:
                        self.queue.put_nowait((hook, payload(hook, t), key))
                    except queue.Full:
                        log.warning("notification queue full: dropped %s %s for %s",
                                    t["transition"], t["rule"], hook.label)
                        continue
                    self._queued.add(key)
                    queued += 1
        return queued

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until everything queued is delivered or given up (tests, shutdown)."""
        done = threading.Event()

        def waiter():
            self.queue.join()
            done.set()
        threading.Thread(target=waiter, daemon=True).start()
        return done.wait(timeout_s)

    def close(self) -> None:
        """Stop the thread (queued messages stay undelivered and are retried on restart)."""
        self.stop_event.set()

    # -- the worker ---------------------------------------------------------------------
    def _work(self) -> None:
        while not self.stop_event.is_set():
            try:
                hook, body, key = self.queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self._deliver(hook, body, key)
            finally:
                with self._lock:
                    self._queued.discard(key)
                self.queue.task_done()

    def _deliver(self, hook, body: dict, key: str) -> None:
        data = json.dumps(body, default=str).encode()
        for attempt in range(self.retries + 1):
            try:
                request = urllib.request.Request(hook.url, data=data, method="POST",
                                                 headers={"Content-Type": "application/json",
                                                          "User-Agent": "eventscope"})
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    response.read()
                self._mark(key)
                self.sent += 1
                return
            except Exception as exc:  # any failure is retried, and logged without the URL
                reason = getattr(exc, "code", None) or exc.__class__.__name__
                delay = self.backoff_s * 2 ** attempt
                if attempt == self.retries:
                    break
                log.info("webhook %s failed (%s); retry in %.1f s", hook.label, reason, delay)
                if self.stop_event.wait(delay):
                    return
        self.failed += 1
        log.warning("webhook %s: gave up after %d attempts", hook.label, self.retries + 1)

    def _mark(self, key: str) -> None:
        with self._lock:
            self._delivered_set.add(key)
            self.delivered.append(key)
            self.delivered = self.delivered[-KEEP_KEYS:]
            self._delivered_set = set(self.delivered)
            if self.path is None:
                return
            tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_text(json.dumps(self.delivered))
                os.replace(tmp, self.path)
            except OSError as exc:
                log.warning("could not record delivered notifications: %s", exc)

    def _load(self) -> list[str]:
        if self.path is None:
            return []
        try:
            keys = json.loads(self.path.read_text())
            return [str(k) for k in keys][-KEEP_KEYS:] if isinstance(keys, list) else []
        except (OSError, ValueError):
            return []


def _slack(value) -> str:
    """Text safe inside a Slack message (its three control characters escaped)."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("`", "'")


def _plain(value):
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return None if number != number else number


def _iso(ts):
    if ts is None:
        return None
    import pandas as pd
    if pd.isna(ts):
        return None
    return pd.Timestamp(ts).isoformat().replace("+00:00", "Z")
