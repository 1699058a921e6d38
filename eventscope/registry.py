"""Payloads in the Confluent Schema Registry wire format: how to recognise them and the
``[schema_registry]`` settings. Reading them is :mod:`eventscope.registry_client`'s, imported
only where a registry or ``schema_dir`` is configured (it brings ``confluent_kafka.schema_registry``,
fastavro and protobuf)."""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

from eventscope.secrets import Secret, redact_url, redacted_repr

MAGIC = 0
HEADER = 5  # magic byte + 4-byte schema ID


def framed_schema_id(value) -> int | None:
    """The schema ID of a payload in the Confluent wire format, else None.

    Framed means: bytes, magic byte 0, and at least the 4-byte ID after it (a JSON text never
    starts with a zero byte, so no JSON payload is taken for one). An empty record after the
    ID is still framed (an Avro record of no fields is zero bytes)."""
    if type(value) is not bytes or len(value) < HEADER or value[0] != MAGIC:
        return None
    return struct.unpack_from(">I", value, 1)[0]


@dataclass(repr=False)
class SchemaRegistryConfig:
    """The ``[schema_registry]`` section: where the schemas of Confluent-framed payloads are."""

    SECRETS: ClassVar[tuple] = ("basic_auth_password", "bearer_token")

    url: str = ""
    basic_auth_user: str = ""
    basic_auth_password: Secret = field(default_factory=lambda: Secret(None))
    bearer_token: Secret = field(default_factory=lambda: Secret(None))
    # Confluent Cloud's registry ID (lsrc-...), sent as target-sr-cluster with the bearer token
    bearer_logical_cluster: str = ""
    ca_location: str = ""
    schema_dir: str = ""
    cache_size: int = 1000
    timeout_s: float = 5.0
    retry_s: float = 60.0
    # [[schema_registry.clusters]]: registries of their own for the sources they name (each table
    # has these keys and ``sources``); the section's own registry serves every other source
    clusters: list = field(default_factory=list)
    # a clusters table's registry also has ``sources``: the names of the sources it serves

    def __repr__(self) -> str:
        return redacted_repr(self, ("url",))

    def for_source(self, name: str) -> "SchemaRegistryConfig":
        """The registry settings of source ``name``: its cluster table's, else the section's own."""
        return next((c for c in self.clusters if name in getattr(c, "sources", ())), self)

    @property
    def configured(self) -> bool:
        return bool(self.url or self.schema_dir)


def check(cfg: SchemaRegistryConfig, where: str = "schema_registry") -> list[str]:
    """The section's problems, one line each."""
    problems = []
    for url in [u.strip() for u in cfg.url.split(",") if u.strip()]:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(f"{where}.url: {redact_url(url)!r} is not an http:// or https:// URL")
    if cfg.basic_auth_password and not cfg.basic_auth_user:
        problems.append(f"{where}.basic_auth_password needs {where}.basic_auth_user")
    if cfg.bearer_token and cfg.basic_auth_user:
        problems.append(f"{where}: set basic_auth_user/basic_auth_password or bearer_token, not both")
    if cfg.schema_dir and not Path(cfg.schema_dir).is_dir():
        problems.append(f"{where}.schema_dir: {cfg.schema_dir!r} is not a directory")
    if cfg.ca_location and not Path(cfg.ca_location).is_file():
        problems.append(f"{where}.ca_location: {cfg.ca_location!r} is not a file")
    if cfg.cache_size < 1:
        problems.append(f"{where}.cache_size must be >= 1")
    if cfg.timeout_s <= 0:
        problems.append(f"{where}.timeout_s must be > 0")
    if cfg.retry_s < 1:
        problems.append(f"{where}.retry_s must be >= 1")
    return problems


_VERSION_ID = re.compile(r"(?:^| \()id (\d{1,10})\)?$")


def version_schema_id(version) -> int | None:
    """The schema ID in a ``schema_version`` this module wrote (``orders-value v3 (id 42)``,
    ``id 42``), else None."""
    match = _VERSION_ID.search(version) if isinstance(version, str) else None
    return int(match.group(1)) if match else None
