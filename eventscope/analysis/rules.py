"""Alert rules and webhooks as data: parsing, validation, built-in defaults, matching.

A rule watches one ``metric`` for every subject it ``match``es (glob patterns tried
on the subject and on each of its names: group, topic/stream, DLQ, collector). It
is ``warning`` and/or ``critical`` when the value reaches that threshold, after it
has held for ``for_s`` seconds; once firing it resolves only when the value falls
below ``clear`` (hysteresis; default ``clear_ratio`` × the lowest threshold), so a
value hovering at the line does not flap.

Overrides: the built-in rules come first, then ``[[alerts.rules]]`` in file order;
for each metric and subject the *last* matching rule applies. A rule with neither
threshold silences the subjects it matches.

No pandas here: the config loader imports this module.
"""
from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

#: metric -> (what a subject is, unit, meaning)
METRICS = {
    "lag": ("group/topic", "messages", "offset lag summed over the topic's partitions"),
    "lag_seconds": ("group/topic", "seconds", "age of the oldest unconsumed message"),
    "lag_status": ("group/topic", "status", "worst partition status (OK, WARN, ERR, STALL, STOP, REWIND)"),
    "dlq_depth": ("DLQ", "messages", "messages held in the dead-letter queue"),
    "dlq_growth_per_min": ("DLQ", "messages/min", "DLQ depth growth over the last 5 minutes"),
    "stuck_entries": ("group/stream", "entries", "Redis pending entries that look stuck"),
    "collector_stale_s": ("collector", "seconds", "time since the collector last succeeded"),
}
STATUSES = ("OK", "WARN", "ERR", "STOP", "STALL", "REWIND", "UNKNOWN")
SEVERITIES = ("warning", "critical")
RULE_KEYS = {"name", "metric", "match", "warning", "critical", "for_s", "clear"}
WEBHOOK_KEYS = {"url", "format", "name", "min_severity", "match"}


class RuleError(ValueError):
    """A rule or webhook that cannot be used; a one-line message naming the key."""


@dataclass(frozen=True)
class Rule:
    """One alert rule (thresholds are floats, or status names for ``lag_status``)."""

    name: str
    metric: str
    match: tuple[str, ...] = ("*",)
    warning: float | tuple[str, ...] | None = None
    critical: float | tuple[str, ...] | None = None
    for_s: float = 60.0
    clear: float | None = None

    @property
    def silent(self) -> bool:
        """True when the rule has no threshold (it silences what it matches)."""
        return self.warning is None and self.critical is None

    def matches(self, names) -> bool:
        """True if any glob matches any of ``names``."""
        return any(fnmatch.fnmatchcase(str(n), g) for g in self.match for n in names if n is not None)

    def level(self, value: float | None, status: str | None = None) -> str | None:
        """``critical``, ``warning`` or None for a value (or status) at this moment."""
        if self.metric == "lag_status":
            for sev in ("critical", "warning"):
                if status and status in (getattr(self, sev) or ()):
                    return sev
            return None
        if value is None or value != value:  # unknown never fires
            return None
        for sev in ("critical", "warning"):
            threshold = getattr(self, sev)
            if threshold is not None and value >= threshold:
                return sev
        return None

    def cleared(self, value: float | None, status: str | None = None) -> bool:
        """True once the value has crossed back below ``clear`` (unknown is not clear)."""
        if self.metric == "lag_status":
            return bool(status) and self.level(None, status) is None
        if value is None or value != value:
            return False
        return value < self.clear_threshold

    @property
    def clear_threshold(self) -> float | None:
        """The value below which a firing alert resolves."""
        if self.metric == "lag_status":
            return None
        if self.clear is not None:
            return self.clear
        lows = [t for t in (self.warning, self.critical) if t is not None]
        return min(lows) if lows else None

    def threshold(self, severity: str):
        """The threshold of ``severity`` as shown to people (statuses joined by commas)."""
        value = getattr(self, severity, None)
        return ",".join(value) if isinstance(value, tuple) else value

    def to_toml(self) -> str:
        """This rule as a ``[[alerts.rules]]`` table."""
        q = json.dumps  # a JSON string is a valid TOML basic string (quotes, backslashes escaped)
        lines = ["[[alerts.rules]]", f"name = {q(self.name)}", f"metric = {q(self.metric)}",
                 "match = [" + ", ".join(q(g) for g in self.match) + "]"]
        for sev in SEVERITIES:
            value = getattr(self, sev)
            if isinstance(value, tuple):
                lines.append(f"{sev} = [" + ", ".join(q(s) for s in value) + "]")
            elif value is not None:
                lines.append(f"{sev} = {value:g}")
        lines.append(f"for_s = {self.for_s:g}")
        if self.clear is not None and self.metric != "lag_status":
            lines.append(f"clear = {self.clear:g}")
        return "\n".join(lines)


@dataclass(frozen=True, repr=False)
class Webhook:
    """Where notifications go: ``slack`` (``{"text": ...}``) or ``generic`` JSON."""

    url: str
    format: str = "generic"
    name: str = ""
    min_severity: str = "warning"
    match: tuple[str, ...] = ("*",)

    @property
    def shown(self) -> str:
        """The URL with its secret parts (token path, query, password) redacted."""
        return redact_webhook_url(self.url)

    @property
    def label(self) -> str:
        """A name safe to show: the configured name, else the redacted URL."""
        return self.name or self.shown

    def wants(self, severity: str, names) -> bool:
        """True if this webhook takes notifications of ``severity`` about ``names``."""
        if SEVERITIES.index(severity) < SEVERITIES.index(self.min_severity):
            return False
        return any(fnmatch.fnmatchcase(str(n), g) for g in self.match for n in names if n is not None)

    def __repr__(self) -> str:
        return f"Webhook(url={self.shown!r}, format={self.format!r}, name={self.name!r})"


def redact_webhook_url(url: str) -> str:
    """``https://hooks.slack.com/services/T/B/x`` → ``https://hooks.slack.com/services/***``.

    Webhook URLs carry their credential in the path (Slack, Discord, Teams), the query
    string (``?token=``) or the userinfo, so everything after the first path segment,
    the whole query and any password are replaced.
    """
    try:
        parts = urlsplit(str(url))
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "***"
    userinfo = "***@" if parts.username or parts.password else ""
    segments = [s for s in parts.path.split("/") if s]
    path = ""
    if segments:
        path = "/" + segments[0] + ("/***" if len(segments) > 1 else "")
    query = "***" if parts.query else ""
    return urlunsplit((parts.scheme, f"{userinfo}{host}{port}", path, query, ""))


def _number(value, origin: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RuleError(f"{origin}: expected a number, got {value!r}")
    return float(value)


def _globs(value, origin: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise RuleError(f"{origin}: expected a glob or a list of globs")
    return tuple(value)


def parse_rule(raw: dict, origin: str, default_for_s: float, clear_ratio: float) -> Rule:
    """One ``[[alerts.rules]]`` table as a :class:`Rule` (raises :class:`RuleError`)."""
    if not isinstance(raw, dict):
        raise RuleError(f"{origin}: must be a table")
    for key in raw:
        if key not in RULE_KEYS:
            raise RuleError(f"unknown config key {origin}.{key}")
    metric = raw.get("metric")
    if metric not in METRICS:
        raise RuleError(f"{origin}.metric: expected one of {', '.join(METRICS)}, got {metric!r}")
    thresholds = {}
    for sev in SEVERITIES:
        value = raw.get(sev)
        if value is None:
            thresholds[sev] = None
        elif metric == "lag_status":
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, list) or any(v not in STATUSES for v in value):
                raise RuleError(f"{origin}.{sev}: expected statuses from {', '.join(STATUSES)}")
            thresholds[sev] = tuple(value)
        else:
            thresholds[sev] = _number(value, f"{origin}.{sev}")
            if thresholds[sev] <= 0:
                raise RuleError(f"{origin}.{sev} must be > 0")
    for_s = _number(raw.get("for_s", default_for_s), f"{origin}.for_s")
    if for_s < 0:
        raise RuleError(f"{origin}.for_s must be >= 0")
    warning, critical = thresholds["warning"], thresholds["critical"]
    if metric != "lag_status" and warning is not None and critical is not None and critical < warning:
        raise RuleError(f"{origin}.critical must be >= {origin}.warning")
    lows = [t for t in (warning, critical) if t is not None and not isinstance(t, tuple)]
    clear = raw.get("clear")
    if clear is not None:
        clear = _number(clear, f"{origin}.clear")
        if lows and not 0 <= clear <= min(lows):
            raise RuleError(f"{origin}.clear must be between 0 and the lowest threshold")
    elif lows:
        clear = round(min(lows) * clear_ratio, 6)
    name = raw.get("name", metric)
    if not isinstance(name, str) or not name:
        raise RuleError(f"{origin}.name: expected a non-empty string")
    return Rule(name=name, metric=metric, match=_globs(raw.get("match", "*"), f"{origin}.match"),
                warning=warning, critical=critical, for_s=for_s,
                clear=None if metric == "lag_status" else clear)


def parse_webhook(raw, origin: str) -> Webhook:
    """One ``[[alerts.webhooks]]`` table (or a bare URL) as a :class:`Webhook`."""
    if isinstance(raw, str):
        raw = {"url": raw}
    if not isinstance(raw, dict):
        raise RuleError(f"{origin}: must be a table")
    for key in raw:
        if key not in WEBHOOK_KEYS:
            raise RuleError(f"unknown config key {origin}.{key}")
    url = raw.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise RuleError(f"{origin}.url must start with http:// or https://")
    fmt = raw.get("format") or ("slack" if "hooks.slack.com" in url else "generic")
    if fmt not in ("slack", "generic"):
        raise RuleError(f"{origin}.format must be 'slack' or 'generic'")
    severity = raw.get("min_severity", "warning")
    if severity not in SEVERITIES:
        raise RuleError(f"{origin}.min_severity must be 'warning' or 'critical'")
    name = raw.get("name", "")
    if not isinstance(name, str):
        raise RuleError(f"{origin}.name: expected a string")
    return Webhook(url=url, format=fmt, name=name, min_severity=severity,
                   match=_globs(raw.get("match", "*"), f"{origin}.match"))


def default_rules(cfg) -> list[Rule]:
    """The built-in rules (``cfg`` is an AlertsConfig: its legacy thresholds feed them)."""
    raw = [
        {"name": "lag_seconds", "metric": "lag_seconds", "warning": cfg.lag_seconds_warn,
         "critical": cfg.lag_seconds_crit},
        {"name": "group_stall", "metric": "lag_status", "critical": ["STALL", "STOP"]},
        {"name": "lag_messages", "metric": "lag"},
        {"name": "dlq_depth", "metric": "dlq_depth", "warning": cfg.dlq_depth_warn,
         "critical": cfg.dlq_depth_crit},
        {"name": "dlq_growth", "metric": "dlq_growth_per_min", "warning": 10, "critical": 100},
        {"name": "stuck_entries", "metric": "stuck_entries", "warning": 1, "critical": 100},
        {"name": "collector_stale", "metric": "collector_stale_s", "warning": 120, "critical": 600},
    ]
    return [parse_rule({k: v for k, v in r.items() if v is not None}, f"alerts.defaults.{r['name']}",
                       cfg.for_s, cfg.clear_ratio) for r in raw]


def effective_rules(cfg) -> list[Rule]:
    """Built-in rules (unless ``alerts.defaults = false``), then the configured ones."""
    return (default_rules(cfg) if cfg.defaults else []) + list(cfg.rules)


def select(rules: list[Rule], metric: str, names) -> Rule | None:
    """The rule that applies to a subject: the last one of ``metric`` matching ``names``."""
    chosen = None
    for rule in rules:
        if rule.metric == metric and rule.matches(names):
            chosen = rule
    return chosen


class Selector:
    """:func:`select` over fixed ``rules``, remembered per (metric, names): a big cluster's
    16,000 observations ask the same questions every sample, and the glob matching behind
    each answer cost more than the rest of an alert evaluation."""

    MAX_ENTRIES = 200_000  # forgotten all at once beyond this (subjects come and go)

    def __init__(self, rules: list[Rule]):
        self.rules = list(rules)
        self._chosen: dict = {}

    def __call__(self, metric: str, names) -> Rule | None:
        key = (metric, names)
        try:
            return self._chosen[key]
        except KeyError:
            pass
        except TypeError:  # names that cannot be a key (a list): asked each time
            return select(self.rules, metric, names)
        if len(self._chosen) >= self.MAX_ENTRIES:
            self._chosen.clear()
        chosen = self._chosen[key] = select(self.rules, metric, names)
        return chosen
