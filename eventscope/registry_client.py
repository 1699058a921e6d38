"""Payloads in the Confluent Schema Registry wire format: Avro, Protobuf and JSON Schema.

A producer using Confluent's serializers writes a magic byte ``0``, the schema's ID (4 bytes,
big-endian), then the record: Avro binary, Protobuf (message-index varints, then the message)
or JSON text. :class:`SchemaRegistryDecoder` turns such a payload into a plain dict, which
:class:`eventscope.decode.Decoder` then reads exactly like a JSON envelope.

Schemas come from the registry (``[schema_registry] url``) or from local files
(``schema_dir``): ``<id>.avsc`` (Avro), ``<id>.json`` (JSON Schema), ``<id>.desc`` (Protobuf: a
``FileDescriptorSet``, as ``protoc --include_imports --descriptor_set_out`` writes it; the file
named last holds the message types). Protobuf's Python runtime cannot parse ``.proto`` text, so
a local Protobuf schema must be a descriptor set.

Avro and JSON Schema records are read by ``confluent_kafka.schema_registry``'s
``AvroDeserializer`` and ``JSONDeserializer``. Its ``ProtobufDeserializer`` only fills a
generated message class, so Protobuf is read generically: the registry's serialized
``FileDescriptorProto`` (``?format=serialized``, the form its serializer registers) goes into a
descriptor pool, the message type is picked by the payload's message indexes, and the message
becomes a dict (``MessageToDict``, field names as in the ``.proto``).

Schemas are cached by ID (an LRU of ``cache_size``): a cached schema costs no request, so
records keep decoding while the registry is down. A failed request (unreachable, 5xx, 401)
backs the registry off (1 s, doubling up to ``retry_s``): meanwhile an unknown ID is answered
from the last error without a request. An ID the registry does not know is not asked for again
for ``retry_s``. Nothing here raises on a payload: each failure is a one-line reason naming
the registry (its URL without credentials) and the schema ID, never a secret.
"""
from __future__ import annotations

import base64
import datetime
import decimal
import io
import json
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from cachetools import LRUCache
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.common.protobuf import _init_pool  # the well-known types a schema may import
from confluent_kafka.schema_registry.common.serde import SchemaId
from confluent_kafka.schema_registry.json_schema import JSONDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory, text_format

from eventscope.registry import SchemaRegistryConfig, framed_schema_id
from eventscope.secrets import redact_url

# JSONDeserializer insists on a context; with the TOPIC strategy and no use.latest.version it
# only names a subject no request is made for
_JSON_CONTEXT = SerializationContext("eventscope", MessageField.VALUE)
_LOCAL_SUFFIXES = {".avsc": "AVRO", ".json": "JSON", ".desc": "PROTOBUF"}


def client_config(cfg: SchemaRegistryConfig, timeout_s: float | None = None, retries: int = 1) -> dict:
    """``SchemaRegistryClient`` settings of ``cfg`` (holding its secrets: never shown)."""
    conf = {"url": cfg.url, "timeout": timeout_s or cfg.timeout_s, "cache.capacity": cfg.cache_size,
            "max.retries": retries, "retries.wait.ms": 200, "retries.max.wait.ms": 1000}
    if cfg.ca_location:
        conf["ssl.ca.location"] = cfg.ca_location
    if cfg.basic_auth_user:
        conf["basic.auth.user.info"] = f"{cfg.basic_auth_user}:{cfg.basic_auth_password.get() or ''}"
    if cfg.bearer_token:
        token, cluster = cfg.bearer_token, cfg.bearer_logical_cluster
        conf["bearer.auth.credentials.source"] = "CUSTOM"
        conf["bearer.auth.custom.provider.config"] = {}
        # read on each request: a token in a mounted file may be rotated
        conf["bearer.auth.custom.provider.function"] = lambda _config: {
            "bearer.auth.token": token.get() or "", "bearer.auth.logical.cluster": cluster}
    return conf


class RegistryUnavailable(Exception):
    """A schema could not be had: the one-line reason (no secret) is the message."""


class _Schemas:
    """Schemas by ID, as the deserializers ask a ``SchemaRegistryClient`` for them: local files
    first, then a bounded cache, then the registry (behind the backoff)."""

    def __init__(self, cfg: SchemaRegistryConfig, clock=time.monotonic):
        self.cfg = cfg
        self.where = f"schema registry {redact_url(cfg.url.split(',')[0].strip())}" if cfg.url else ""
        self.client = SchemaRegistryClient(client_config(cfg)) if cfg.url else None
        self.dir = Path(cfg.schema_dir) if cfg.schema_dir else None
        self.cache: LRUCache = LRUCache(maxsize=cfg.cache_size)
        self.missing: dict[int, float] = {}  # ID -> until when it is not asked for again
        self.clock = clock
        self.down_until = 0.0
        self.backoff = 0.0
        self.last_error = ""
        self.lock = threading.Lock()
        self.local_ids: set[int] = set()  # IDs whose schema is a local file
        url_passwords = [urlsplit(u.strip()).password for u in cfg.url.split(",")]
        self.secrets = [s for s in (cfg.basic_auth_password.get(), cfg.bearer_token.get(), *url_passwords) if s]

    # what the deserializers call
    def get_schema(self, schema_id: int, subject_name=None, fmt=None, reference_format=None) -> Schema:
        return self.schema(schema_id)

    def get_version(self, subject_name: str, version, deleted: bool = False, fmt=None):
        return self._remote(f"subject {subject_name} version {version}",
                            lambda: self.client.get_version(subject_name, version, deleted, fmt))

    def schema(self, schema_id: int) -> Schema:
        """The schema of ``schema_id``; :class:`RegistryUnavailable` with the reason otherwise."""
        with self.lock:
            found = self.cache.get(schema_id)
        if found is not None:
            return found
        found = self._local(schema_id)
        if found is None:
            until = self.missing.get(schema_id)
            if until is not None and self.clock() < until:
                raise RegistryUnavailable(self._not_found(schema_id))
            found = self._remote(f"schema {schema_id}", lambda: self.client.get_schema(schema_id), schema_id)
            if (found.schema_type or "").upper() == "PROTOBUF" and not _base64(found.schema_str):
                # .proto text: Python's protobuf cannot parse it; the registry's serialized form it can
                found = self._remote(f"schema {schema_id}", lambda: self.client.get_schema(
                    schema_id, None, "serialized"), schema_id)
        else:
            self.local_ids.add(schema_id)
        with self.lock:
            self.cache[schema_id] = found
        return found

    def _local(self, schema_id: int) -> Schema | None:
        if self.dir is None:
            return None
        for suffix, kind in _LOCAL_SUFFIXES.items():
            path = self.dir / f"{schema_id}{suffix}"
            if not path.is_file():
                continue
            try:
                if kind == "PROTOBUF":  # kept as bytes: a FileDescriptorSet, base64 like the registry's form
                    return Schema(base64.b64encode(path.read_bytes()).decode("ascii"), "PROTOBUF")
                return Schema(path.read_text(encoding="utf-8"), kind)
            except (OSError, UnicodeDecodeError) as exc:
                raise RegistryUnavailable(f"schema_dir: cannot read {path.name}: "
                                          f"{getattr(exc, 'strerror', None) or 'not UTF-8 text'}") from None
        return None

    def _not_found(self, schema_id: int) -> str:
        if self.client is None:
            return f"schema {schema_id} is not in schema_dir {self.cfg.schema_dir} and no schema registry url is set"
        return f"{self.where}: schema {schema_id} not found"

    def _remote(self, what: str, call, schema_id: int | None = None):
        if self.client is None:
            raise RegistryUnavailable(self._not_found(schema_id) if schema_id is not None
                                      else f"{what}: no schema registry url is set")
        now = self.clock()
        if now < self.down_until:
            raise RegistryUnavailable(f"{self.last_error} (not retried for {self.down_until - now:.0f} s)")
        try:
            found = call()
        except SchemaRegistryError as exc:
            status = exc.http_status_code
            if status == 404 and schema_id is not None:
                self.missing[schema_id] = now + self.cfg.retry_s
                if len(self.missing) > self.cfg.cache_size:
                    self.missing.pop(next(iter(self.missing)))
                raise RegistryUnavailable(self._not_found(schema_id)) from None
            reason = f"HTTP {status}" + (f" {self._scrub(exc.error_message)}" if exc.error_message else "")
            if status in (401, 403):
                reason += " (check basic_auth_user/basic_auth_password or bearer_token)"
            self._failed(f"{self.where}: {what}: {reason}", now, status not in range(400, 500) or status in (401, 403, 429))
            raise RegistryUnavailable(self.last_error) from None
        except Exception as exc:  # unreachable, TLS, timeout, a malformed answer: one line, backed off
            self._failed(f"{self.where}: {what}: {type(exc).__name__}: {self._scrub(str(exc))}", now, True)
            raise RegistryUnavailable(self.last_error) from None
        self.backoff = 0.0
        return found

    def _failed(self, message: str, now: float, back_off: bool) -> None:
        self.last_error = message[:400]
        if back_off:
            self.backoff = min(self.cfg.retry_s, max(1.0, self.backoff * 2))
            self.down_until = now + self.backoff

    def _scrub(self, message) -> str:
        message = " ".join(str(message).split())[:200]
        for secret in self.secrets:
            message = message.replace(secret, "***")
        return message


def _base64(text: str | None) -> bool:
    try:
        base64.b64decode((text or "").encode("ascii"), validate=True)
        return bool(text)
    except (ValueError, UnicodeEncodeError):
        return False


def _plain(value):
    """A deserialized record as JSON-able values: bytes as base64, times as ISO 8601, decimals
    and UUIDs as text."""
    kind = type(value)
    if kind in (str, int, float, bool) or value is None:
        return value
    if kind is dict:
        return {str(k): _plain(v) for k, v in value.items()}
    if kind in (list, tuple):
        return [_plain(v) for v in value]
    if kind in (bytes, bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    return str(value)


class SchemaRegistryDecoder:
    """Confluent-framed payloads to dicts (see the module's docstring); never raises on a payload.

    :meth:`decode` returns ``(record, error, info)``: the record as a dict (or None), the reason
    it could not be read (or None), and what is known of its schema: ``schema_id``, ``type``,
    ``name`` (the Avro record's or Protobuf message's full name, the JSON Schema's ``title``)
    and ``version`` (``<subject> v<version> (id <id>)`` when the registry names one, else
    ``id <id>``)."""

    def __init__(self, cfg: SchemaRegistryConfig, clock=time.monotonic):
        self.cfg = cfg
        self.schemas = _Schemas(cfg, clock)
        self.avro = AvroDeserializer(self.schemas)
        self.json = JSONDeserializer(None, schema_registry_client=self.schemas,
                                     conf={"validate": False, "subject.name.strategy.type": "TOPIC"})
        self.parsed: LRUCache = LRUCache(maxsize=cfg.cache_size)  # ID -> (name, Protobuf pool or None)
        self.versions: LRUCache = LRUCache(maxsize=cfg.cache_size)  # ID -> "subject vN (id ID)"

    def decode(self, value: bytes) -> tuple[dict | None, str | None, dict]:
        schema_id = framed_schema_id(value)
        info = {"schema_id": schema_id, "type": None, "name": None, "version": None}
        if schema_id is None:
            return None, "not in the Confluent wire format", info
        try:
            schema = self.schemas.schema(schema_id)
        except RegistryUnavailable as exc:
            return None, str(exc), info
        kind = (schema.schema_type or "AVRO").upper()
        info["type"] = kind
        info["version"] = self._version(schema_id)
        try:
            name, pool, plain = self._parsed(schema_id, schema, kind)
            info["name"] = name
            if kind == "AVRO":
                record = self.avro(value, None)
            elif kind == "JSON":
                record = self.json(value, _JSON_CONTEXT)
            elif kind == "PROTOBUF":
                record, info["name"] = self._protobuf(value, pool)
            else:
                return None, f"schema {schema_id}: unknown schema type {kind}", info
        except RegistryUnavailable as exc:
            return None, str(exc), info
        except Exception as exc:  # bytes that do not match the schema: the deserializers raise many kinds
            return None, f"{kind} record with schema {schema_id} unreadable: {type(exc).__name__}: " \
                         f"{' '.join(str(exc).split())[:160]}", info
        if not isinstance(record, dict):
            return None, f"{kind} record with schema {schema_id} is not a record (object)", info
        return (_plain(record) if plain else record), None, info

    def _version(self, schema_id: int) -> str:
        """``<subject> v<version> (id <id>)`` from the registry, asked once per ID; ``id <id>``
        when it cannot say (a local schema, a registry without the endpoint, a failure)."""
        found = self.versions.get(schema_id)
        if found is not None:
            return found
        found = f"id {schema_id}"
        if self.schemas.client is not None and schema_id not in self.schemas.local_ids:
            try:
                pairs = self.schemas._remote(f"versions of schema {schema_id}",
                                             lambda: self.schemas.client.get_schema_versions(schema_id))
                if pairs:
                    best = max(pairs, key=lambda p: p.version or 0)
                    found = f"{best.subject} v{best.version} (id {schema_id})"
            except RegistryUnavailable:
                if self.schemas.clock() < self.schemas.down_until:
                    return found  # the registry is down: asked again once it is back
        self.versions[schema_id] = found
        return found

    def _parsed(self, schema_id: int, schema: Schema, kind: str):
        found = self.parsed.get(schema_id)
        if found is None:
            # only an Avro schema with bytes, fixed or logical types gives values JSON has no
            # type for (MessageToDict and JSON already give JSON's): the others skip the walk
            text = schema.schema_str or ""
            plain = kind == "AVRO" and any(t in text for t in ('"bytes"', '"fixed"', "logicalType"))
            if kind == "PROTOBUF":
                found = (None, self._pool(schema), False)
            else:
                found = (_schema_name(text, kind), None, plain)
            self.parsed[schema_id] = found
        return found

    def _pool(self, schema: Schema):
        """(descriptor pool, the schema's own file) of a Protobuf schema and its references."""
        pool = descriptor_pool.DescriptorPool()
        _init_pool(pool)
        files = self._files(schema, set())
        for proto in files:
            try:
                pool.Add(proto)
            except Exception:  # already in the pool (a well-known type, a shared import)
                pass
        return pool, pool.FindFileByName(files[-1].name)

    def _files(self, schema: Schema, seen: set) -> list:
        """The FileDescriptorProtos of ``schema``, its references' first."""
        out = []
        for ref in schema.references or []:
            key = (ref.subject, ref.version)
            if key in seen:
                continue
            seen.add(key)
            out += self._files(self.schemas.get_version(ref.subject, ref.version, fmt="serialized").schema, seen)
        try:
            raw = base64.b64decode(schema.schema_str.encode("ascii"), validate=True)
        except Exception:
            raise ValueError("Protobuf schema is .proto text, not the serialized form eventscope reads "
                             "(registry: ?format=serialized; schema_dir: a .desc descriptor set)") from None
        descriptor_set = descriptor_pb2.FileDescriptorSet()
        try:
            descriptor_set.ParseFromString(raw)
            if not descriptor_set.file or not descriptor_set.file[-1].name:
                raise ValueError
            return out + list(descriptor_set.file)
        except Exception:  # the registry's form: one FileDescriptorProto
            proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
            proto.name = proto.name or f"schema-{id(schema)}.proto"
            return out + [proto]

    @staticmethod
    def _protobuf(value: bytes, pool_and_file) -> tuple[dict, str]:
        pool, file = pool_and_file
        schema_id = SchemaId("PROTOBUF")
        payload = schema_id.from_bytes(io.BytesIO(value))
        indexes = schema_id.message_indexes or [0]
        types = file.message_types_by_name
        desc = list(file.message_types_by_name.values())[indexes[0]] if types else None
        if desc is None:
            raise ValueError("schema has no message type")
        for index in indexes[1:]:
            desc = desc.nested_types[index]
        message = message_factory.GetMessageClass(pool.FindMessageTypeByName(desc.full_name))()
        message.ParseFromString(payload.read())
        return json_format.MessageToDict(message, preserving_proto_field_name=True), desc.full_name


def _schema_name(schema_str: str, kind: str) -> str | None:
    """The Avro record's full name, or the JSON Schema's ``title``."""
    try:
        parsed = json.loads(schema_str)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    if kind == "AVRO":
        name, namespace = parsed.get("name"), parsed.get("namespace")
        if not isinstance(name, str) or not name:
            return None
        return name if "." in name or not isinstance(namespace, str) or not namespace else f"{namespace}.{name}"
    title = parsed.get("title")
    return title if isinstance(title, str) and title else None




def describe(cfg: SchemaRegistryConfig, schema_id: int, timeout_s: float = 2.0) -> dict:
    """What the registry says of one schema, for a page: ``schema_id``, ``type``, ``schema``
    (its text), ``subject``, ``version``, ``versions`` (all of the subject's) and ``error``
    (one line, when something could not be had). One try each, ``timeout_s`` at most."""
    out = {"schema_id": schema_id, "type": None, "schema": None, "subject": None, "version": None,
           "versions": [], "error": None}
    local = _Schemas(SchemaRegistryConfig(schema_dir=cfg.schema_dir)) if cfg.schema_dir else None
    try:
        schema = local._local(schema_id) if local is not None else None
        if schema is not None:
            out.update(type=schema.schema_type or "AVRO", schema=_shown(schema), subject="(schema_dir)")
            return out
        if not cfg.url:
            out["error"] = f"schema {schema_id} is not in schema_dir and no schema registry url is set"
            return out
        client = SchemaRegistryClient(client_config(cfg, timeout_s=timeout_s, retries=0))
        schemas = _Schemas(cfg)
        schemas.client = client
        schema = schemas._remote(f"schema {schema_id}", lambda: client.get_schema(schema_id), schema_id)
        out.update(type=schema.schema_type or "AVRO", schema=_shown(schema))
        pairs = schemas._remote(f"versions of schema {schema_id}", lambda: client.get_schema_versions(schema_id))
        if pairs:
            best = max(pairs, key=lambda p: p.version or 0)
            out.update(subject=best.subject, version=best.version)
            out["versions"] = sorted(schemas._remote(f"versions of subject {best.subject}",
                                                     lambda: client.get_versions(best.subject)))
    except RegistryUnavailable as exc:
        out["error"] = str(exc)
    except Exception as exc:  # a malformed answer: shown, never raised into the page
        out["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    return out


def _shown(schema: Schema) -> str:
    """A schema's text for people: JSON pretty-printed; a Protobuf descriptor as its message names."""
    text = schema.schema_str or ""
    if (schema.schema_type or "AVRO").upper() in ("AVRO", "JSON"):
        try:
            return json.dumps(json.loads(text), indent=2)
        except ValueError:
            return text
    if _base64(text):  # a serialized FileDescriptorProto: its text form
        try:
            proto = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(text))
            return text_format.MessageToString(proto)
        except Exception:  # not a descriptor after all: shown as it came
            return text
    return text
