"""Configuration: a TOML file plus ``EVENTSCOPE_*`` environment overrides.

Every key is documented in ``eventscope.example.toml`` with its env name. Unknown
keys are errors that name the key; a bad value names the key and what was
expected. Secrets (``kafka.sasl_password``, ``redis.password``) are kept in a
:class:`Secret` whose ``repr``/``str`` never show the value; each may instead be read from a
file (``redis.password_file``, ``kafka.sasl_password_file``: a Kubernetes secret mount).

Env names: ``EVENTSCOPE_<SECTION>_<KEY>`` (e.g. ``EVENTSCOPE_COLLECT_INTERVAL_S``),
plus the short forms of the CLI contract: ``EVENTSCOPE_KAFKA_BOOTSTRAP``,
``EVENTSCOPE_REDIS_URL`` and ``EVENTSCOPE_STORE``.
"""
from __future__ import annotations

import copy
import json
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from eventscope import sample_data
from eventscope.analysis.rules import (Rule, RuleError, Webhook, effective_rules, parse_rule, parse_webhook,
                                       redact_webhook_url)
from eventscope.collectors import SourceKind, kinds
from eventscope.collectors.kafka.config import KafkaConfig  # noqa: F401 - the built-in kinds' sections
from eventscope.collectors.redis.config import RedisConfig  # noqa: F401
from eventscope.decode import DecodeConfig  # the [decode] section, kept beside the decoder that reads it
from eventscope.dlq_names import dlq_regex  # noqa: F401 - re-exported
from eventscope.registry import SchemaRegistryConfig, check as registry_problems
from eventscope.secrets import Secret


class ConfigError(ValueError):
    """A configuration problem, with a one-line message naming the key."""


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


@dataclass
class ExporterConfig:
    """``eventscope exporter``: where ``/metrics`` listens, and when ``/healthz`` fails."""

    host: str = "127.0.0.1"
    port: int = 10087
    timeout_s: float = 10.0
    stale_after_s: float = 120.0


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
        return effective_rules(self)

    def all_webhooks(self) -> list:
        """``[[alerts.webhooks]]`` plus the single ``webhook_url``, if set."""
        extra = [parse_webhook(self.webhook_url, "alerts.webhook_url")] if self.webhook_url else []
        return list(self.webhooks) + extra

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
                          if f.name != "webhook_url")
        url = redact_webhook_url(self.webhook_url) if self.webhook_url else None
        return f"AlertsConfig(webhook_url={url!r}, {shown})"


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
    "collect": CollectConfig, "store": StoreConfig, "replay": ReplayConfig, "dashboard": DashboardConfig,
    "alerts": AlertsConfig, "exporter": ExporterConfig, "decode": DecodeConfig, "mask": MaskConfig, "traces": TracesConfig,
    "schema_registry": SchemaRegistryConfig,
    # and one section per broker kind (``[kafka]``, ``[redis]``, ``[rabbitmq]``): see sections()
}
SHORT_ENV = {"EVENTSCOPE_STORE": ("store", "dir")}  # plus each kind's env_shortcuts
# keys holding arrays of tables (TOML) or a JSON array (env)
TABLES = {("alerts", "rules"), ("alerts", "webhooks"), ("schema_registry", "clusters")}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
RESERVED_NAMES = {"replay", "otel"}  # the sample-data replay's and the OTLP reader's source names


def sections() -> dict[str, type]:
    """Every config section: the general ones and one per registered broker kind."""
    return {**{name: kind.settings for name, kind in kinds().items()}, **SECTIONS}


def short_env() -> dict[str, tuple[str, str]]:
    """Environment shortcuts (the CLI contract's ``EVENTSCOPE_KAFKA_BOOTSTRAP``, ...)."""
    out = dict(SHORT_ENV)
    for name, kind in kinds().items():
        out.update({env: (name, key) for env, key in kind.env_shortcuts.items()})
    return out


@dataclass
class Source:
    """One watched cluster: its name (the ``broker`` of its rows), its kind, its settings."""

    name: str
    kind: str
    settings: object

    def address(self) -> str:
        """Where it is, safe to show (no secret, no URL password)."""
        return kinds()[self.kind].address(self.settings)


@dataclass
class Config:
    """Every setting. A broker kind's section is ``config.<kind>`` (``config.kafka``): a
    single cluster when its address is set, and the defaults of ``[[sources]]`` of its kind."""

    kinds: dict = field(default_factory=lambda: {name: kind.settings() for name, kind in kinds().items()})
    sources: list = field(default_factory=list)  # [[sources]]: Source objects
    collect: CollectConfig = field(default_factory=CollectConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    exporter: ExporterConfig = field(default_factory=ExporterConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    traces: TracesConfig = field(default_factory=TracesConfig)
    schema_registry: SchemaRegistryConfig = field(default_factory=SchemaRegistryConfig)

    def __getattr__(self, name: str):
        section = self.__dict__.get("kinds", {}).get(name)
        if section is None:
            raise AttributeError(name)
        return section

    def all_sources(self) -> list[Source]:
        """Every watched cluster: a kind's own section when its address is set (named after the
        kind), then each ``[[sources]]`` entry."""
        registered = kinds()
        implicit = [Source(name, name, section) for name, section in self.kinds.items()
                    if name in registered and registered[name].configured(section)]
        return implicit + list(self.sources)

    @property
    def store_dir(self) -> Path:
        return Path(self.store.dir)

    @property
    def live(self) -> bool:
        """True when at least one broker is configured (else: sample-data replay)."""
        return bool(self.all_sources())

    def replay_dir(self) -> Path:
        """Where the sample recording lives."""
        if self.replay.data_dir:
            return Path(self.replay.data_dir)
        return Path(next(iter(sample_data.__path__)))

    def sources_summary(self) -> list[dict]:
        """The configured sources, safe to show (no secrets, no URL passwords)."""
        out = [{"source": s.name, "broker": s.name, "kind": s.kind, "address": s.address()}
               for s in self.all_sources()]
        if not out:
            out.append({"source": "replay", "broker": "replay", "kind": "replay", "address": str(self.replay_dir())})
        return out


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
    known = sections()
    shortcuts = short_env()
    sources, sources_origin = raw.pop("sources", []), "sources"
    for section, values in raw.items():
        if section not in known:
            raise ConfigError(f"unknown config section [{section}]")
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] must be a table")
        for key, value in values.items():
            _set(cfg, section, key, value, origin=f"{section}.{key}")
    for name, value in env.items():
        if not name.startswith("EVENTSCOPE_") or name in NOT_SETTINGS_ENV:
            continue
        if name == "EVENTSCOPE_SOURCES":
            sources, sources_origin = _tables(value, name, from_env=True), name
            continue
        if name in shortcuts:
            section, key = shortcuts[name]
        else:
            section, key = _split_env(name, known)
        _set(cfg, section, key, value, origin=name, from_env=True)
    cfg.sources = _sources(cfg, _tables(sources, sources_origin, from_env=False), sources_origin)
    _validate(cfg)
    return cfg


def _sources(cfg: Config, tables: list, origin: str) -> list[Source]:
    """``[[sources]]``: each a table with ``name``, ``kind`` and that kind's keys, which
    default to the kind's own section (all but its address)."""
    registered = kinds()
    taken = {name for name, section in cfg.kinds.items()
             if name in registered and registered[name].configured(section)}
    out = []
    for i, table in enumerate(tables):
        where = f"{origin}[{i}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: expected a table with name, kind and the kind's keys")
        table = dict(table)
        name, kind_name = table.pop("name", None), table.pop("kind", None)
        if kind_name not in registered:
            raise ConfigError(f"{where}.kind: expected one of {', '.join(sorted(registered))}, got {kind_name!r}")
        if not isinstance(name, str) or not NAME.fullmatch(name) or name in RESERVED_NAMES:
            raise ConfigError(f"{where}.name: expected 1-63 letters, digits, '.', '_' or '-' (not "
                              f"{', '.join(sorted(RESERVED_NAMES))}), got {name!r}")
        if name in taken:
            raise ConfigError(f"{where}.name: {name!r} names two sources")
        taken.add(name)
        kind: SourceKind = registered[kind_name]
        settings = copy.deepcopy(cfg.kinds[kind_name])
        for key in kind.env_shortcuts.values():  # a source's address is its own
            setattr(settings, key, getattr(kind.settings(), key))
        for key, value in table.items():
            _set_field(settings, key, value, f"{where}.{key}", from_env=False)
        if not kind.configured(settings):
            keys = " or ".join(kind.env_shortcuts.values()) or "its address"
            raise ConfigError(f"{where} ({name}): set {keys}")
        out.append(Source(name, kind_name, settings))
    return out


def _split_env(name: str, known: dict) -> tuple[str, str]:
    rest = name[len("EVENTSCOPE_"):].lower()
    for section in known:
        if rest.startswith(section + "_"):
            return section, rest[len(section) + 1:]
    raise ConfigError(f"unknown environment variable {name}")


def _set(cfg: Config, section: str, key: str, value, origin: str, from_env: bool = False) -> None:
    obj = getattr(cfg, section)
    if (section, key) in TABLES and key in {f.name for f in fields(obj)}:
        setattr(obj, key, _tables(value, origin, from_env))
        return
    _set_field(obj, key, value, origin, from_env)


def _set_field(obj, key: str, value, origin: str, from_env: bool) -> None:
    """One key of one section (or source), coerced to the type of its default. A secret's
    key with ``_file`` appended (``password_file``) names a file that holds it."""
    known = {f.name: f for f in fields(obj)}
    secret = key.removesuffix("_file")
    if key != secret and secret in getattr(obj, "SECRETS", ()):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{origin}: expected the path of a file holding {secret}")
        try:
            setattr(obj, secret, Secret.from_file(value))
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise ConfigError(f"{origin}: cannot read {value!r}: {reason}") from None
        return
    if key not in known:
        raise ConfigError(f"unknown config key {origin}")
    current = getattr(obj, key)
    if key in getattr(obj, "SECRETS", ()):
        setattr(obj, key, Secret(str(value)))
        return
    setattr(obj, key, _coerce(value, current, known[key].type, origin, from_env))


def _tables(value, origin: str, from_env: bool) -> list:
    """``[[alerts.rules]]`` / ``[[alerts.webhooks]]`` kept raw; parsed in :func:`_validate`."""
    if from_env:
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
        if kind is dict:  # a table (``[kafka.properties]``), or a JSON object in the environment
            if from_env:
                value = json.loads(value)
            if not isinstance(value, dict):
                raise ValueError
            return _dotted(value)
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
        if kind is dict:  # its values may be secrets: never shown
            raise ConfigError(f"{origin}: expected a table (in the environment: a JSON object)") from None
        shown = value if len(str(value)) < 60 else str(value)[:57] + "..."
        raise ConfigError(f"{origin}: expected {kind.__name__}, got {shown!r}") from None


def _dotted(table: dict, prefix: str = "") -> dict:
    """A table with its nested tables' keys joined by dots: TOML reads ``client.rack = "a"``,
    unquoted, as ``{"client": {"rack": "a"}}``, which means ``{"client.rack": "a"}``."""
    out = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(_dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _validate(cfg: Config) -> None:
    checks = [
        (cfg.collect.interval_s > 0, "collect.interval_s must be > 0"),
        (cfg.collect.max_backoff_s >= cfg.collect.interval_s, "collect.max_backoff_s must be >= collect.interval_s"),
        (cfg.store.retention_hours > 0, "store.retention_hours must be > 0"),
        (cfg.store.max_rows > 0, "store.max_rows must be > 0"),
        (cfg.store.raw_window_s >= 300, "store.raw_window_s must be >= 300 (the lag verdict looks back 5 minutes)"),
        (cfg.replay.speed > 0, "replay.speed must be > 0"),
        (cfg.dashboard.refresh_s >= 1, "dashboard.refresh_s must be >= 1"),
        (0 <= cfg.exporter.port <= 65535, "exporter.port must be between 0 and 65535"),
        (cfg.exporter.timeout_s > 0, "exporter.timeout_s must be > 0"),
        (cfg.exporter.stale_after_s > 0, "exporter.stale_after_s must be > 0"),
        (cfg.dashboard.collect in ("auto", "off"), "dashboard.collect must be 'auto' or 'off'"),
        (cfg.alerts.lag_seconds_crit >= cfg.alerts.lag_seconds_warn,
         "alerts.lag_seconds_crit must be >= alerts.lag_seconds_warn"),
        (cfg.collect.payload_max_chars >= 0, "collect.payload_max_chars must be >= 0"),
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
    _parse_registries(cfg)
    registered = kinds()
    for name, section in cfg.kinds.items():
        problems = registered[name].check(section, name) if name in registered else []
        if problems:
            raise ConfigError(problems[0])
    for i, source in enumerate(cfg.sources):
        problems = registered[source.kind].check(source.settings, f"sources[{i}]")
        if problems:
            raise ConfigError(f"{problems[0]} ({source.name})")
    _parse_alerts(cfg.alerts)


def _parse_registries(cfg: Config) -> None:
    """``[schema_registry]`` and its ``[[schema_registry.clusters]]``: each a registry with the
    section's keys, for the ``sources`` it names (one-line errors naming the key)."""
    section = cfg.schema_registry
    problems = registry_problems(section)
    names = {source.name for source in cfg.all_sources()}
    claimed: set = set()
    parsed = []
    for i, table in enumerate(section.clusters):
        where = f"schema_registry.clusters[{i}]"
        if isinstance(table, SchemaRegistryConfig):
            parsed.append(table)
            continue
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: expected a table with sources and a registry's keys")
        cluster = SchemaRegistryConfig()
        table = dict(table)
        sources = table.pop("sources", None)
        for key, value in table.items():
            if key == "clusters":
                raise ConfigError(f"unknown config key {where}.{key}")
            _set_field(cluster, key, value, f"{where}.{key}", from_env=False)
        if not isinstance(sources, list) or not sources or not all(isinstance(n, str) for n in sources):
            raise ConfigError(f"{where}.sources: expected a list of the source names this registry serves")
        cluster.sources = list(sources)
        for name in cluster.sources:
            if name not in names:
                raise ConfigError(f"{where}.sources: no source is named {name!r}")
            if name in claimed:
                raise ConfigError(f"{where}.sources: {name!r} has a registry already")
            claimed.add(name)
        if not cluster.configured:
            raise ConfigError(f"{where}: set url or schema_dir")
        problems += registry_problems(cluster, where)
        parsed.append(cluster)
    if problems:
        raise ConfigError(problems[0])
    section.clusters = parsed


def _parse_alerts(alerts: AlertsConfig) -> None:
    """Turn raw rule and webhook tables into Rule/Webhook objects (one-line errors)."""
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
