"""The ``[redis]`` section: one Redis deployment's settings (and the defaults of every
``[[sources]]`` entry with ``kind = "redis"``): a standalone server, a Redis Cluster or a
master found through Redis Sentinel, with an ACL user and TLS."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar
from urllib.parse import urlsplit

from eventscope.collectors import regex_problems
from eventscope.dlq_names import REDIS_DLQ_PATTERN
from eventscope.secrets import Secret, redact_url

MODES = ("standalone", "cluster", "sentinel")
CERT_REQS = ("required", "optional", "none")


@dataclass(repr=False)
class RedisConfig:
    SECRETS: ClassVar[tuple] = ("password", "sentinel_password")

    url: str | None = None
    mode: str = "standalone"
    username: str = ""
    password: Secret = field(default_factory=lambda: Secret(None))
    ssl: bool = False
    ssl_ca_certs: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    ssl_cert_reqs: str = "required"
    ssl_check_hostname: bool = True
    cluster_nodes: list = field(default_factory=list)
    sentinels: list = field(default_factory=list)
    sentinel_master: str = ""
    sentinel_username: str = ""
    sentinel_password: Secret = field(default_factory=lambda: Secret(None))
    stream_pattern: str = "*"
    streams: list = field(default_factory=list)
    dlq_pattern: str = REDIS_DLQ_PATTERN
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

    def tls(self) -> bool:
        """Whether connections use TLS: ``ssl = true`` or a ``rediss://`` URL."""
        return bool(self.ssl) or bool(self.url and urlsplit(self.url).scheme == "rediss")


def configured(cfg: RedisConfig) -> bool:
    """A source is described: its URL, or (Sentinel) the Sentinels' addresses."""
    return bool(cfg.url) or bool(cfg.sentinels)


def address(cfg: RedisConfig) -> str:
    """Where the source is, without secrets."""
    if cfg.mode == "sentinel" or (cfg.sentinels and not cfg.url):
        return f"sentinel {','.join(cfg.sentinels)} master {cfg.sentinel_master}"
    text = redact_url(cfg.url) if cfg.url else ""
    return f"cluster {text}" if cfg.mode == "cluster" else text


def check(cfg: RedisConfig, where: str) -> list[str]:
    """The settings' problems, one line each (never a secret)."""
    problems = []
    scheme = urlsplit(cfg.url).scheme if cfg.url else ""
    if cfg.url and "sentinel" in scheme:
        problems.append(f"{where}.url: a Sentinel setup takes mode = \"sentinel\", {where}.sentinels and "
                        f"{where}.sentinel_master instead of a URL")
    elif cfg.url and scheme not in ("redis", "rediss", "unix"):
        problems.append(f"{where}.url must start with redis://, rediss:// or unix://")
    if cfg.mode not in MODES:
        problems.append(f"{where}.mode must be one of {', '.join(MODES)}")
    if cfg.ssl_cert_reqs not in CERT_REQS:
        problems.append(f"{where}.ssl_cert_reqs must be one of {', '.join(CERT_REQS)}")
    if bool(cfg.ssl_certfile) != bool(cfg.ssl_keyfile):
        problems.append(f"{where}.ssl_certfile and {where}.ssl_keyfile go together (a client certificate and its key)")
    if (cfg.ssl_ca_certs or cfg.ssl_certfile) and not cfg.tls():
        problems.append(f"{where}.ssl_* files are set but TLS is off: use a rediss:// URL or {where}.ssl = true")
    if cfg.ssl and scheme == "unix":
        problems.append(f"{where}.ssl does not apply to a unix:// socket")
    if cfg.url and scheme in ("redis", "rediss"):
        try:
            urlsplit(cfg.url).port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            problems.append(f"{where}.url has an invalid port")
    if cfg.mode == "cluster":
        if not cfg.url:
            problems.append(f"{where}.mode = \"cluster\" needs {where}.url (any node of the cluster)")
        elif scheme == "unix":
            problems.append(f"{where}.mode = \"cluster\" needs a redis:// or rediss:// URL")
        elif urlsplit(cfg.url).path.strip("/") not in ("", "0"):
            problems.append(f"{where}.url: a Redis Cluster has database 0 only")
        problems += _address_problems(cfg.cluster_nodes, f"{where}.cluster_nodes", 6379)
    elif cfg.cluster_nodes:
        problems.append(f"{where}.cluster_nodes is set but {where}.mode is not \"cluster\"")
    if cfg.mode == "sentinel":
        if cfg.url:
            problems.append(f"{where}.url and {where}.mode = \"sentinel\": the master's address comes from "
                            f"the Sentinels ({where}.sentinels); unset {where}.url")
        if not cfg.sentinels:
            problems.append(f"{where}.mode = \"sentinel\" needs {where}.sentinels (host:port of each Sentinel)")
        if not cfg.sentinel_master:
            problems.append(f"{where}.mode = \"sentinel\" needs {where}.sentinel_master (the master's name)")
        problems += _address_problems(cfg.sentinels, f"{where}.sentinels", 26379)
    elif cfg.sentinels or cfg.sentinel_master or cfg.sentinel_username or cfg.sentinel_password:
        problems.append(f"{where}.sentinel* keys are set but {where}.mode is not \"sentinel\"")
    if cfg.dlq_read_max < 0:
        problems.append(f"{where}.dlq_read_max must be >= 0")
    if cfg.timeout_s <= 0:
        problems.append(f"{where}.timeout_s must be > 0")
    return problems + regex_problems(cfg, ("dlq_pattern",), where)


def _address_problems(values: list, where: str, default_port: int) -> list[str]:
    bad = [str(v) for v in values if parse_address(v, default_port) is None]
    return [f"{where}: not host:port: {', '.join(bad)}"] if bad else []


def parse_address(text, default_port: int) -> tuple[str, int] | None:
    """``host:port`` (``[v6]:port``, or a bare host with ``default_port``); None if it is not one."""
    text = str(text).strip()
    if not text or any(c in text for c in "/@?#"):
        return None
    try:
        parts = urlsplit("//" + text)
        port = parts.port
    except ValueError:
        return None
    return (parts.hostname, port or default_port) if parts.hostname else None
