"""Configuration: a TOML file plus ``EVENTSCOPE_*`` environment overrides.

Every key is documented in ``eventscope.example.toml`` with its env name. Unknown
keys are errors that name the key; a bad value names the key and what was
expected. Secrets (``kafka.sasl_password``, ``redis.password``) are kept in a
:class:`Secret` whose ``repr``/``str`` never show the value.

Env names: ``EVENTSCOPE_<SECTION>_<KEY>`` (e.g. ``EVENTSCOPE_COLLECT_INTERVAL_S``),
plus the short forms of the CLI contract: ``EVENTSCOPE_KAFKA_BOOTSTRAP``,
``EVENTSCOPE_REDIS_URL`` and ``EVENTSCOPE_STORE``.
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from eventscope import sample_data


class ConfigError(ValueError):
    """A configuration problem, with a one-line message naming the key."""


class Secret:
    """A string that never prints itself."""

    def __init__(self, value: str | None):
        self._value = value or None

    def get(self) -> str | None:
        """The secret value, for handing to a client library only."""
        return self._value

    def __bool__(self) -> bool:
        return self._value is not None

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret(None)"

    __str__ = __repr__

    def __eq__(self, other) -> bool:
        return isinstance(other, Secret) and other._value == self._value


@dataclass
class KafkaConfig:
    bootstrap: str | None = None
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret = field(default_factory=lambda: Secret(None))
    topics: str = r"^(?!__).*"
    dlq_pattern: str = r"(\.DLT|-dlt|\.dlq|-dlq|\.dead-letter)$|^dlq[.-]|^__connect\.errors|^dlq$"
    dlq_topics: list = field(default_factory=list)
    dlq_read_max: int = 10_000
    # Kafka Connect workers' REST URLs: their connectors' DLQs and the topics those read
    connect_urls: list = field(default_factory=list)
    max_events_per_sample: int = 5000
    timeout_s: float = 10.0


@dataclass(repr=False)
class RedisConfig:
    url: str | None = None
    password: Secret = field(default_factory=lambda: Secret(None))
    stream_pattern: str = "*"
    streams: list = field(default_factory=list)
    dlq_pattern: str = r"(\.dlq|:dlq|\.DLT|-dlt|-dlq|\.dead-letter)$|^dlq[.:-]"
    dlq_streams: list = field(default_factory=list)
    dlq_read_max: int = 10_000
    max_events_per_sample: int = 5000
    timeout_s: float = 5.0
    stuck_min_deliveries: int = 3
    stuck_idle_s: float = 60.0

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.name != "url")
        url = redact_url(self.url) if self.url else None
        return f"RedisConfig(url={url!r}, {shown})"


@dataclass
class CollectConfig:
    interval_s: float = 5.0
    max_backoff_s: float = 60.0
    payload_max_chars: int = 4000


@dataclass
class StoreConfig:
    dir: str = ".eventscope"
    retention_hours: float = 6.0
    max_rows: int = 2_000_000
    raw_window_s: float = 900.0


@dataclass
class ReplayConfig:
    data_dir: str = ""
    speed: float = 1.0
    loop: bool = True


@dataclass
class DashboardConfig:
    refresh_s: int = 5
    collect: str = "auto"


@dataclass(repr=False)
class AlertsConfig:
    lag_seconds_warn: float = 60.0
    lag_seconds_crit: float = 300.0
    dlq_depth_warn: int = 1
    dlq_depth_crit: int = 100
    webhook_url: str | None = None
    for_s: float = 60.0
    clear_ratio: float = 0.8
    stall_after_s: float = 60.0
    defaults: bool = True
    rules: list = field(default_factory=list)
    webhooks: list = field(default_factory=list)
    notify_retries: int = 5
    notify_backoff_s: float = 1.0
    notify_timeout_s: float = 5.0

    def all_rules(self) -> list:
        """Built-in rules (unless ``defaults = false``) then ``[[alerts.rules]]``."""
        from eventscope.analysis.rules import effective_rules
        return effective_rules(self)

    def all_webhooks(self) -> list:
        """``[[alerts.webhooks]]`` plus the single ``webhook_url``, if set."""
        from eventscope.analysis.rules import parse_webhook
        extra = [parse_webhook(self.webhook_url, "alerts.webhook_url")] if self.webhook_url else []
        return list(self.webhooks) + extra

    def __repr__(self) -> str:
        from eventscope.analysis.rules import redact_webhook_url
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
                          if f.name != "webhook_url")
        url = redact_webhook_url(self.webhook_url) if self.webhook_url else None
        return f"AlertsConfig(webhook_url={url!r}, {shown})"


@dataclass
class DecodeConfig:
    """Where decoding looks for each field: dotted JSON paths first, then headers (first hit wins)."""

    correlation_id: list = field(default_factory=lambda: [
        "correlation_id", "correlationId", "metadata.correlationId", "metadata.correlation_id",
        "correlationid"])
    correlation_id_headers: list = field(default_factory=lambda: [
        "correlation-id", "x-correlation-id", "correlation_id", "correlationid", "ce_correlationid"])
    event_type: list = field(default_factory=lambda: ["event_type", "type", "eventType"])
    event_type_headers: list = field(default_factory=lambda: ["ce_type", "event_type"])
    event_id: list = field(default_factory=lambda: ["event_id", "eventId", "metadata.eventId", "id"])
    event_id_headers: list = field(default_factory=lambda: ["ce_id"])
    source: list = field(default_factory=lambda: ["source", "metadata.source"])
    source_headers: list = field(default_factory=lambda: ["ce_source"])
    timestamp: list = field(default_factory=lambda: ["timestamp", "metadata.timestamp", "time"])
    timestamp_headers: list = field(default_factory=lambda: ["ce_time"])
    traceparent: list = field(default_factory=lambda: ["traceparent", "metadata.traceparent"])
    traceparent_headers: list = field(default_factory=lambda: ["traceparent"])
    payload_fields: list = field(default_factory=lambda: ["payload", "envelope"])


@dataclass
class MaskConfig:
    enabled: bool = True
    fields: list = field(default_factory=list)


@dataclass
class TracesConfig:
    lookback_s: float = 300.0
    kafka_topics: list = field(default_factory=lambda: ["*"])
    redis_streams: list = field(default_factory=lambda: ["*"])
    sample_ratio: float = 1.0
    quiet_s: float = 30.0
    interval_s: float = 1.0
    # OTLP JSON Lines files (paths or glob patterns) of OpenTelemetry spans: which consumed
    # message each produced one was made from
    otlp_files: list = field(default_factory=list)


SECTIONS = {
    "kafka": KafkaConfig, "redis": RedisConfig, "collect": CollectConfig,
    "store": StoreConfig, "replay": ReplayConfig, "dashboard": DashboardConfig,
    "alerts": AlertsConfig, "decode": DecodeConfig, "mask": MaskConfig, "traces": TracesConfig,
}
SHORT_ENV = {
    "EVENTSCOPE_KAFKA_BOOTSTRAP": ("kafka", "bootstrap"),
    "EVENTSCOPE_REDIS_URL": ("redis", "url"),
    "EVENTSCOPE_STORE": ("store", "dir"),
}
SECRETS = {("kafka", "sasl_password"), ("redis", "password")}
# keys holding arrays of tables (TOML) or a JSON array (env)
TABLES = {("alerts", "rules"), ("alerts", "webhooks")}


def dlq_regex(pattern: str, names: list) -> str:
    """The DLQ pattern widened by an explicit list of names."""
    exact = "|".join(f"^{re.escape(n)}$" for n in names)
    return f"{pattern}|{exact}" if exact else pattern


@dataclass
class Config:
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    collect: CollectConfig = field(default_factory=CollectConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    traces: TracesConfig = field(default_factory=TracesConfig)

    @property
    def store_dir(self) -> Path:
        return Path(self.store.dir)

    @property
    def live(self) -> bool:
        """True when at least one broker is configured (else: sample-data replay)."""
        return bool(self.kafka.bootstrap or self.redis.url)

    def replay_dir(self) -> Path:
        """Where the sample recording lives."""
        if self.replay.data_dir:
            return Path(self.replay.data_dir)
        return Path(next(iter(sample_data.__path__)))

    def sources_summary(self) -> list[dict]:
        """The configured sources, safe to show (no secrets, no URL passwords)."""
        out = []
        if self.kafka.bootstrap:
            out.append({"source": "kafka", "broker": "kafka", "address": self.kafka.bootstrap})
        if self.redis.url:
            out.append({"source": "redis", "broker": "redis", "address": redact_url(self.redis.url)})
        if not out:
            out.append({"source": "replay", "broker": "replay", "address": str(self.replay_dir())})
        return out


_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|key|auth|cred", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``redis://user:pw@host`` → ``redis://user:***@host``; a query parameter named like a
    secret (``?password=``, ``?token=``) → ``***`` too."""
    parts = urlsplit(url)
    if parts.query:
        query = "&".join(f"{k}=***" if _SECRET_PARAM.search(k) else (f"{k}={v}" if sep else k)
                         for k, sep, v in (p.partition("=") for p in parts.query.split("&")))
        url = url.replace("?" + parts.query, "?" + query, 1)
        parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


# Environment variables of ours that are not settings: the config file itself, and where
# the local brokers' jars are cached (eventscope.localbrokers).
NOT_SETTINGS_ENV = {"EVENTSCOPE_CONFIG", "EVENTSCOPE_CACHE_DIR"}


def load_config(path: str | os.PathLike | None = None, env=None) -> Config:
    """Read ``path`` (TOML, optional) then apply ``EVENTSCOPE_*`` overrides."""
    env = os.environ if env is None else env
    path = path or env.get("EVENTSCOPE_CONFIG")
    raw: dict = {}
    if path:
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    cfg = Config()
    for section, values in raw.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown config section [{section}]")
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] must be a table")
        for key, value in values.items():
            _set(cfg, section, key, value, origin=f"{section}.{key}")
    for name, value in env.items():
        if not name.startswith("EVENTSCOPE_") or name in NOT_SETTINGS_ENV:
            continue
        if name in SHORT_ENV:
            section, key = SHORT_ENV[name]
        else:
            section, key = _split_env(name)
        _set(cfg, section, key, value, origin=name, from_env=True)
    _validate(cfg)
    return cfg


def _split_env(name: str) -> tuple[str, str]:
    rest = name[len("EVENTSCOPE_"):].lower()
    for section in SECTIONS:
        if rest.startswith(section + "_"):
            return section, rest[len(section) + 1:]
    raise ConfigError(f"unknown environment variable {name}")


def _set(cfg: Config, section: str, key: str, value, origin: str, from_env: bool = False) -> None:
    obj = getattr(cfg, section)
    known = {f.name: f for f in fields(obj)}
    if key not in known:
        raise ConfigError(f"unknown config key {origin}")
    current = getattr(obj, key)
    if (section, key) in SECRETS:
        setattr(obj, key, Secret(str(value)))
        return
    if (section, key) in TABLES:
        setattr(obj, key, _tables(value, origin, from_env))
        return
    setattr(obj, key, _coerce(value, current, known[key].type, origin, from_env))


def _tables(value, origin: str, from_env: bool) -> list:
    """``[[alerts.rules]]`` / ``[[alerts.webhooks]]`` kept raw; parsed in :func:`_validate`."""
    if from_env:
        import json
        try:
            value = json.loads(value)
        except ValueError:
            raise ConfigError(f"{origin}: expected a JSON array of objects") from None
    if not isinstance(value, list):
        raise ConfigError(f"{origin}: expected an array of tables ([[...]])")
    return list(value)


def _coerce(value, current, annotation: str, origin: str, from_env: bool):
    kind = type(current) if current is not None else str
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if from_env and str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if from_env and str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is list:
            if isinstance(value, list):
                return [str(v) for v in value]
            if from_env:
                return [v.strip() for v in str(value).split(",") if v.strip()]
            raise ValueError
        if kind in (int, float):
            if isinstance(value, bool) or (not from_env and not isinstance(value, (int, float))):
                raise ValueError
            return kind(value)
        if value in ("", None) and "None" in str(annotation):
            return None
        if not isinstance(value, str):
            raise ValueError
        return value
    except (TypeError, ValueError):
        shown = value if len(str(value)) < 60 else str(value)[:57] + "..."
        raise ConfigError(f"{origin}: expected {kind.__name__}, got {shown!r}") from None


def _validate(cfg: Config) -> None:
    checks = [
        (cfg.collect.interval_s > 0, "collect.interval_s must be > 0"),
        (cfg.collect.max_backoff_s >= cfg.collect.interval_s, "collect.max_backoff_s must be >= collect.interval_s"),
        (cfg.store.retention_hours > 0, "store.retention_hours must be > 0"),
        (cfg.store.max_rows > 0, "store.max_rows must be > 0"),
        (cfg.store.raw_window_s >= 300, "store.raw_window_s must be >= 300 (the lag verdict looks back 5 minutes)"),
        (cfg.replay.speed > 0, "replay.speed must be > 0"),
        (cfg.dashboard.refresh_s >= 1, "dashboard.refresh_s must be >= 1"),
        (cfg.dashboard.collect in ("auto", "off"), "dashboard.collect must be 'auto' or 'off'"),
        (cfg.kafka.security_protocol in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
         "kafka.security_protocol must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
        (cfg.alerts.lag_seconds_crit >= cfg.alerts.lag_seconds_warn,
         "alerts.lag_seconds_crit must be >= alerts.lag_seconds_warn"),
        (cfg.collect.payload_max_chars >= 0, "collect.payload_max_chars must be >= 0"),
        (cfg.kafka.dlq_read_max >= 0, "kafka.dlq_read_max must be >= 0"),
        (cfg.redis.dlq_read_max >= 0, "redis.dlq_read_max must be >= 0"),
        (0 < cfg.traces.sample_ratio <= 1, "traces.sample_ratio must be > 0 and <= 1"),
        (cfg.traces.lookback_s >= 0, "traces.lookback_s must be >= 0"),
        (cfg.traces.quiet_s >= 0, "traces.quiet_s must be >= 0"),
        (cfg.traces.interval_s > 0, "traces.interval_s must be > 0"),
        (cfg.alerts.for_s >= 0, "alerts.for_s must be >= 0"),
        (0 <= cfg.alerts.clear_ratio <= 1, "alerts.clear_ratio must be within 0..1"),
        (cfg.alerts.stall_after_s > 0, "alerts.stall_after_s must be > 0"),
        (cfg.alerts.notify_retries >= 0, "alerts.notify_retries must be >= 0"),
        (cfg.alerts.notify_backoff_s >= 0, "alerts.notify_backoff_s must be >= 0"),
        (cfg.alerts.notify_timeout_s > 0, "alerts.notify_timeout_s must be > 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    _parse_alerts(cfg.alerts)
    if cfg.redis.url and urlsplit(cfg.redis.url).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError("redis.url must start with redis://, rediss:// or unix://")
    for url in cfg.kafka.connect_urls:
        if urlsplit(str(url)).scheme not in ("http", "https") or not urlsplit(str(url)).hostname:
            raise ConfigError(f"kafka.connect_urls: {redact_url(str(url))!r} is not an http:// or https:// URL")
    for key, pattern in (("kafka.topics", cfg.kafka.topics), ("kafka.dlq_pattern", cfg.kafka.dlq_pattern),
                         ("redis.dlq_pattern", cfg.redis.dlq_pattern)):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"{key}: invalid regular expression: {exc}") from None


def _parse_alerts(alerts: AlertsConfig) -> None:
    """Turn raw rule and webhook tables into Rule/Webhook objects (one-line errors)."""
    from eventscope.analysis.rules import Rule, RuleError, Webhook, parse_rule, parse_webhook
    try:
        alerts.rules = [r if isinstance(r, Rule) else
                        parse_rule(r, f"alerts.rules[{i}]", alerts.for_s, alerts.clear_ratio)
                        for i, r in enumerate(alerts.rules)]
        alerts.webhooks = [w if isinstance(w, Webhook) else parse_webhook(w, f"alerts.webhooks[{i}]")
                           for i, w in enumerate(alerts.webhooks)]
        alerts.all_rules()
        alerts.all_webhooks()
    except RuleError as exc:
        raise ConfigError(str(exc)) from None
