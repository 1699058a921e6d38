"""Webhook notifications: a thread and a bounded queue per webhook, retries, dedupe.

The sampling loop only calls :meth:`Notifier.submit`, which never blocks: it puts
messages on their webhook's bounded queue (a full queue drops the message and says so
in the log). Each webhook has its own daemon thread, which POSTs its messages in order,
retrying a failed attempt with exponential backoff (``backoff_s`` × 2^attempt): a
webhook that hangs or times out delays only its own messages. Redirects are never
followed (a 3xx is a failed delivery, not retried, logged with the status); at most
64 KiB of an answer's body is read, within ``timeout_s``. Each message has a key (webhook, episode, transition,
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
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd

from eventscope.analysis.rules import redact_webhook_url
from eventscope.files import write_atomically

log = logging.getLogger("eventscope.notify")

NOTIFIED = ("firing", "escalated", "resolved")
DELIVERED_FILE = "alerts-delivered.json"
KEEP_KEYS = 5000
#: the most of a webhook's answer body read (the rest is discarded with the connection)
MAX_BODY_BYTES = 64 * 1024


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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse every redirect: urllib then raises the 3xx as an ``HTTPError``. A webhook that
    answers with a redirect is misconfigured (or hostile); following it would POST the alert,
    and the token in the URL's path, to wherever it points."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


class _Target:
    """One webhook's queue and the thread that delivers it, in order."""

    def __init__(self, hook, queue_size: int):
        self.hook = hook
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.thread: threading.Thread | None = None


class Notifier:
    """Delivers alert transitions to webhooks, one background thread per webhook."""

    def __init__(self, webhooks: list, state_dir: str | os.PathLike | None = None, retries: int = 5,
                 backoff_s: float = 1.0, timeout_s: float = 5.0, queue_size: int = 1000):
        self.webhooks = list(webhooks)
        self.retries, self.backoff_s, self.timeout_s = retries, backoff_s, timeout_s
        self.path = Path(state_dir) / DELIVERED_FILE if state_dir else None
        self.delivered: list[str] = self._load()
        self._delivered_set = set(self.delivered)
        self._queued: set[str] = set()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0  # messages queued and not yet delivered or given up, over all targets
        self.stop_event = threading.Event()
        self.sent = 0
        self.failed = 0
        self.targets = [_Target(hook, queue_size) for hook in self.webhooks]
        for i, target in enumerate(self.targets):
            target.thread = threading.Thread(target=self._work, args=(target,),
                                             name=f"eventscope-notifier-{i}", daemon=True)
            target.thread.start()

    def submit(self, transitions) -> int:
        """Queue the notifiable transitions (never blocks); returns how many were queued."""
        queued = 0
        for t in transitions:
            if t["transition"] not in NOTIFIED:
                continue
            names = (t["subject"], *str(t["subject"]).replace(":", "/").split("/"))
            for target in self.targets:
                hook = target.hook
                if not hook.wants(t["severity"], names):
                    continue
                key = message_key(hook, t)
                with self._lock:
                    if key in self._delivered_set or key in self._queued:
                        continue
                    try:
                        target.queue.put_nowait((payload(hook, t), key))
                    except queue.Full:
                        log.warning("notification queue of webhook %s full: dropped %s %s",
                                    _shown(hook), t["transition"], t["rule"])
                        continue
                    self._queued.add(key)
                    self._pending += 1
                    queued += 1
        return queued

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until everything queued, for every webhook, is delivered or given up (tests,
        shutdown); False if ``timeout_s`` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout_s)

    def close(self) -> None:
        """Stop the threads (queued messages stay undelivered and are retried on restart; a
        request under way ends within ``timeout_s``, its thread being a daemon)."""
        self.stop_event.set()

    # -- the workers --------------------------------------------------------------------
    def _work(self, target: _Target) -> None:
        while not self.stop_event.is_set():
            try:
                body, key = target.queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self._deliver(target.hook, body, key)
            finally:
                with self._lock:
                    self._queued.discard(key)
                    self._pending -= 1
                    if self._pending == 0:
                        self._idle.notify_all()

    def _deliver(self, hook, body: dict, key: str) -> None:
        data = json.dumps(body, default=str).encode()
        for attempt in range(self.retries + 1):
            try:
                self._post(hook.url, data)
                self._mark(key)
                with self._lock:
                    self.sent += 1
                return
            except urllib.error.HTTPError as exc:
                exc.close()
                if 300 <= exc.code < 400:
                    where = exc.headers.get("Location") if exc.headers else None
                    log.warning("webhook %s answered HTTP %d, a redirect%s; redirects are not followed: "
                                "not delivered", _shown(hook), exc.code,
                                f" to {redact_webhook_url(where)}" if where else "")
                    break
                reason = exc.code
            except Exception as exc:  # any failure is retried, and logged without the URL's secrets
                reason = exc.__class__.__name__
            if attempt == self.retries:
                log.warning("webhook %s: gave up after %d attempts (last: %s)", _shown(hook),
                            self.retries + 1, reason)
                break
            delay = self.backoff_s * 2 ** attempt
            log.info("webhook %s failed (%s); retry in %.1f s", _shown(hook), reason, delay)
            if self.stop_event.wait(delay):
                return
        with self._lock:
            self.failed += 1

    def _post(self, url: str, data: bytes) -> None:
        """POST ``data``; returns on a 2xx answer, raises otherwise. Of the answer's body at most
        ``MAX_BODY_BYTES`` are read, for at most ``timeout_s`` seconds; the rest is discarded
        with the connection, so an endless or trickling body neither hangs nor fills memory."""
        request = urllib.request.Request(url, data=data, method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "User-Agent": "eventscope"})
        with _OPENER.open(request, timeout=self.timeout_s) as response:
            deadline = time.monotonic() + self.timeout_s
            read = 0
            try:
                while read < MAX_BODY_BYTES and time.monotonic() < deadline:
                    chunk = response.read1(min(16384, MAX_BODY_BYTES - read))
                    if not chunk:
                        break
                    read += len(chunk)
            except OSError:
                pass  # the status said delivered; a body cut short changes nothing

    def _mark(self, key: str) -> None:
        with self._lock:
            self._delivered_set.add(key)
            self.delivered.append(key)
            self.delivered = self.delivered[-KEEP_KEYS:]
            self._delivered_set = set(self.delivered)
            if self.path is None:
                return
            data = json.dumps(self.delivered).encode()
            try:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                write_atomically(self.path, lambda fh: fh.write(data))
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


def _shown(hook) -> str:
    """How logs name a webhook: its redacted URL, after its configured name if it has one."""
    return f"{hook.name} ({hook.shown})" if hook.name else hook.shown


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
    if pd.isna(ts):
        return None
    return pd.Timestamp(ts).isoformat().replace("+00:00", "Z")
