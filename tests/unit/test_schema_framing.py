"""Confluent wire-format detection and what the decoder makes of framed payloads (no registry server)."""
from __future__ import annotations

import json

import pytest

from eventscope.decode import UNDECODABLE, Decoder
from eventscope.registry import SchemaRegistryConfig, check, framed_schema_id
from eventscope.registry_client import SchemaRegistryDecoder

AVRO = json.dumps({"type": "record", "name": "Ping", "namespace": "net",
                   "fields": [{"name": "correlation_id", "type": "string"}, {"name": "n", "type": "long"}]})


@pytest.mark.parametrize("value, expected", [
    (b"\x00\x00\x00\x00\x2a", 42),                   # the header alone: an Avro record of no fields
    (b"\x00\x00\x00\x01\x00\x02x", 256),             # big-endian ID
    (b"\x00\x00\x00", None),                         # magic 0 but too short for an ID
    (b"\x00", None),
    (b"", None),
    (None, None),
    (b'{"event_type": "X"}', None),                  # JSON never starts with a zero byte
    (b"\x01\x00\x00\x00\x2a", None),                 # another magic byte
    ("\x00\x00\x00\x00\x2a", None),                  # text, not bytes
])
def test_framed_schema_id(value, expected):
    assert framed_schema_id(value) == expected


def avro_record(cid: str, n: int) -> bytes:
    def zigzag(v):  # Avro long
        v = (v << 1) ^ (v >> 63)
        out = bytearray()
        while v > 0x7F:
            out.append((v & 0x7F) | 0x80)
            v >>= 7
        return bytes(out + bytes([v]))
    raw = cid.encode()
    return zigzag(len(raw)) + raw + zigzag(n)


@pytest.fixture
def local(tmp_path):
    (tmp_path / "7.avsc").write_text(AVRO)
    (tmp_path / "8.json").write_text(json.dumps({"title": "Pong", "type": "object"}))
    return Decoder(registry=SchemaRegistryDecoder(SchemaRegistryConfig(schema_dir=str(tmp_path))))


def test_a_framed_avro_record_is_an_envelope(local):
    value = b"\x00\x00\x00\x00\x07" + avro_record("c-1", 5)
    row = local.decode(value, {}, with_body=True)
    assert (row["event_type"], row["correlation_id"], row["schema_version"], row["decode_error"]) == (
        "net.Ping", "c-1", "id 7", "")
    assert row["_body"] == {"correlation_id": "c-1", "n": 5}
    # decode_many gives the same row, and the record as the body to mask
    columns, bodies = local.decode_many([value, b'{"event_type": "J"}'], [{}, {}])
    assert columns["event_type"] == ["net.Ping", "J"] and bodies[0] == {"correlation_id": "c-1", "n": 5}


def test_an_envelope_type_field_or_header_wins_over_the_record_name(local):
    value = b"\x00\x00\x00\x00\x08" + b'{"type": "PongSent", "correlation_id": "c-2"}'
    assert local.decode(value, {})["event_type"] == "PongSent"
    bare = b"\x00\x00\x00\x00\x08" + b'{"correlation_id": "c-3"}'
    assert local.decode(bare, {})["event_type"] == "Pong"
    assert local.decode(bare, {"event_type": b"FromHeader"})["event_type"] == "FromHeader"


def test_bad_framed_payloads_are_undecodable_with_the_reason(local, tmp_path):
    unknown = local.decode(b"\x00\x00\x00\x00\x09{}", {})
    assert unknown["event_type"] == UNDECODABLE
    assert unknown["decode_error"] == f"schema 9 is not in schema_dir {tmp_path} and no schema registry url is set"
    broken = local.decode(b"\x00\x00\x00\x00\x07\xff\xff", {})
    assert broken["event_type"] == UNDECODABLE and broken["decode_error"].startswith("AVRO record with schema 7 unreadable")
    array = local.decode(b"\x00\x00\x00\x00\x08[1, 2]", {})
    assert array["decode_error"] == "JSON record with schema 8 is not a record (object)"


def test_without_a_registry_a_framed_payload_says_what_is_missing():
    row = Decoder().decode(b"\x00\x00\x00\x00\x2a\x02x", {})
    assert row["event_type"] == UNDECODABLE
    assert row["decode_error"] == ("Confluent Schema Registry wire format (schema 42) but no [schema_registry] "
                                   "url or schema_dir is configured")
    # a short payload starting with a zero byte is no frame: it is not JSON either
    assert Decoder().decode(b"\x00{}", {})["decode_error"].startswith("not JSON")
    # decode_many agrees
    assert Decoder().decode_many([b"\x00\x00\x00\x00\x2a\x02x"], [{}])[0]["decode_error"] == [row["decode_error"]]


def test_config_problems_are_one_line_and_name_the_key(tmp_path):
    assert check(SchemaRegistryConfig(url="ftp://user:pw@host")) == [
        "schema_registry.url: 'ftp://user:***@host' is not an http:// or https:// URL"]
    assert check(SchemaRegistryConfig(schema_dir=str(tmp_path / "missing"))) == [
        f"schema_registry.schema_dir: {str(tmp_path / 'missing')!r} is not a directory"]
    assert check(SchemaRegistryConfig(url="http://127.0.0.1:1", cache_size=0)) == ["schema_registry.cache_size must be >= 1"]


def test_a_source_may_have_a_registry_of_its_own(tmp_path):
    from eventscope.config import ConfigError, load_config  # the config layer, for this test only
    from eventscope.runner import source_decoders  # the runner picks each source's decoder
    (tmp_path / "1.avsc").write_text(AVRO)
    path = tmp_path / "eventscope.toml"
    base = f"""
[schema_registry]
url = "http://sr-eu:8081"
[[sources]]
name = "prod-eu"
kind = "kafka"
bootstrap = "eu:9092"
[[sources]]
name = "prod-us"
kind = "kafka"
bootstrap = "us:9092"
"""
    path.write_text(base + f"""
[[schema_registry.clusters]]
sources = ["prod-us"]
schema_dir = "{tmp_path}"
bearer_token = "tok-secret-1"
url = "http://sr-us:8081"
""")
    config = load_config(str(path), env={})
    assert config.schema_registry.for_source("prod-us").schema_dir == str(tmp_path)
    assert config.schema_registry.for_source("prod-eu") is config.schema_registry
    assert "tok-secret-1" not in repr(config.schema_registry)
    decoders = source_decoders(config)
    assert decoders["prod-us"].registry.cfg.url == "http://sr-us:8081"
    assert decoders[None].registry.cfg.url == "http://sr-eu:8081" and "prod-eu" not in decoders
    # prod-us reads schema 1 from its own files
    row = decoders["prod-us"].decode(b"\x00\x00\x00\x00\x01" + avro_record("c-9", 1), {})
    assert (row["event_type"], row["correlation_id"]) == ("net.Ping", "c-9")
    for table, error in [
        ('sources = ["nope"]\nurl = "http://x:1"', "schema_registry.clusters[0].sources: no source is named 'nope'"),
        ('url = "http://x:1"', "schema_registry.clusters[0].sources: expected a list of the source names"),
        ('sources = ["prod-us"]', "schema_registry.clusters[0]: set url or schema_dir"),
        ('sources = ["prod-us"]\nurl = "http://x:1"\nbasic_auth_password = "pw-secret-2"',
         "schema_registry.clusters[0].basic_auth_password needs schema_registry.clusters[0].basic_auth_user"),
        ('sources = ["prod-us"]\nurl = "http://x:1"\ncolour = "red"', "unknown config key schema_registry.clusters[0].colour"),
    ]:
        path.write_text(base + "[[schema_registry.clusters]]\n" + table + "\n")
        with pytest.raises(ConfigError) as caught:
            load_config(str(path), env={})
        assert str(caught.value).startswith(error) and "secret" not in str(caught.value), str(caught.value)


def test_protobuf_from_a_local_descriptor_set(tmp_path):
    """A FileDescriptorSet (protoc --include_imports --descriptor_set_out) as <id>.desc; the message
    indexes pick the type, a nested one too."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2  # Protobuf, here only
    proto = descriptor_pb2.FileDescriptorProto(name="shop/pay.proto", package="shop", syntax="proto3",
                                               dependency=["google/protobuf/timestamp.proto"])
    proto.message_type.add(name="Unused").field.add(name="x", number=1, type=9, label=1)
    paid = proto.message_type.add(name="PaymentTaken")
    paid.field.add(name="correlation_id", number=1, type=9, label=1)
    paid.field.add(name="at", number=2, type=11, label=1, type_name=".google.protobuf.Timestamp")
    paid.nested_type.add(name="Refund").field.add(name="correlation_id", number=1, type=9, label=1)
    descriptors = descriptor_pb2.FileDescriptorSet(file=[
        descriptor_pb2.FileDescriptorProto.FromString(timestamp_pb2.DESCRIPTOR.serialized_pb), proto])
    (tmp_path / "5.desc").write_bytes(descriptors.SerializeToString())
    pool = descriptor_pool.DescriptorPool()
    for file in descriptors.file:
        pool.Add(file)
    Paid = message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.PaymentTaken"))
    Refund = message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.PaymentTaken.Refund"))
    decoder = Decoder(registry=SchemaRegistryDecoder(SchemaRegistryConfig(schema_dir=str(tmp_path))))
    message = Paid(correlation_id="c-5")
    message.at.FromJsonString("2026-01-01T00:00:00Z")
    # message indexes: a zigzag varint count, then each index zigzagged: [1] -> 02 02; [1, 0] -> 04 02 00
    row = decoder.decode(b"\x00\x00\x00\x00\x05\x02\x02" + message.SerializeToString(), {}, with_body=True)
    assert (row["event_type"], row["correlation_id"], row["decode_error"]) == ("shop.PaymentTaken", "c-5", "")
    assert row["_body"] == {"correlation_id": "c-5", "at": "2026-01-01T00:00:00Z"}
    nested = decoder.decode(b"\x00\x00\x00\x00\x05\x04\x02\x00" + Refund(correlation_id="c-6").SerializeToString(), {})
    assert (nested["event_type"], nested["correlation_id"]) == ("shop.PaymentTaken.Refund", "c-6")
    first = decoder.decode(b"\x00\x00\x00\x00\x05\x00" + b"\x0a\x01y", {})  # count 0: the first message type
    assert first["event_type"] == "shop.Unused" and first["decode_error"] == ""


def test_an_unreachable_registry_is_named_without_its_credentials():
    cfg = SchemaRegistryConfig(url="http://sr-user:pw-in-url@127.0.0.1:9", timeout_s=2.0)
    assert "pw-in-url" not in repr(cfg)
    row = Decoder(registry=SchemaRegistryDecoder(cfg)).decode(b"\x00\x00\x00\x00\x01\x02x", {})
    assert row["event_type"] == UNDECODABLE
    assert row["decode_error"].startswith("schema registry http://sr-user:***@127.0.0.1:9: schema 1: "), row
    assert "pw-in-url" not in row["decode_error"]
