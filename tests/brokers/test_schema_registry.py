"""Payloads in the Confluent Schema Registry wire format, end to end.

Producers use confluent-kafka's own serializers (Avro, Protobuf, JSON Schema) against a
registry, write to the session Kafka, and ``eventscope collect --once`` reads them back: event
types, correlation IDs, traces and the graph's ``produces`` edges come out as for JSON.

No Confluent-compatible registry can be installed here: ``tests/registry_server.py`` serves
the part of its REST API the client uses (see its docstring), checking basic auth or a
bearer token.
"""
from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from eventscope.registry import SchemaRegistryConfig
from eventscope.registry_client import SchemaRegistryDecoder
from eventscope.secrets import Secret
from eventscope.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from registry_server import RegistryStandIn  # noqa: E402 - the tests' stand-in, beside conftest.py

USER, PASSWORD, TOKEN = "eventscope", "s3cret-pw-42", "tok-0123456789abcdef"
PREFIX = f"sr-{uuid.uuid4().hex[:6]}-"
ORDERS, PAYMENTS, SHIPMENTS = PREFIX + "orders", PREFIX + "payments", PREFIX + "shipments"
N = 4  # chains: order → payment → shipment, one correlation ID each
TRACE = "0af7651916cd43dd8448eb211c80319c"

AVRO_ORDER = json.dumps({
    "type": "record", "name": "OrderPlaced", "namespace": "shop.orders",
    "fields": [{"name": "event_id", "type": "string"}, {"name": "correlation_id", "type": "string"},
               {"name": "source", "type": "string"}, {"name": "traceparent", "type": ["null", "string"]},
               {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
               {"name": "email", "type": "string"},
               {"name": "placed_at", "type": {"type": "long", "logicalType": "timestamp-millis"}}]})
JSON_SHIPMENT = json.dumps({
    "title": "ShipmentSent", "type": "object",
    "properties": {"event_type": {"type": "string"}, "event_id": {"type": "string"},
                   "correlationId": {"type": "string"}, "source": {"type": "string"},
                   "carrier": {"type": "string"}}})


def payment_class():
    """A Protobuf message class built at run time (no generated code, as a user's would be)."""
    proto = descriptor_pb2.FileDescriptorProto(name="shop/payments.proto", package="shop.payments", syntax="proto3")
    message = proto.message_type.add(name="PaymentTaken")
    for number, name, kind in ((1, "event_type", 9), (2, "event_id", 9), (3, "correlation_id", 9),
                               (4, "source", 9), (5, "amount_cents", 3), (6, "card", 9)):
        message.field.add(name=name, number=number, type=kind, label=1)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.payments.PaymentTaken"))


@pytest.fixture(scope="module")
def registry():
    """The registry stand-in with basic auth (one per module: a few threads)."""
    server = RegistryStandIn(user=USER, password=PASSWORD)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def produced(registry, kafka_bootstrap, kafka_admin_module):
    """N chains written with the real serializers: Avro orders, Protobuf payments, JSON Schema shipments."""
    client = SchemaRegistryClient({"url": registry.url, "basic.auth.user.info": f"{USER}:{PASSWORD}"})
    avro = AvroSerializer(client, AVRO_ORDER)
    Payment = payment_class()
    proto = ProtobufSerializer(Payment, client, {"use.deprecated.format": False})
    shipment = JSONSerializer(JSON_SHIPMENT, client)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    import decimal, datetime  # noqa: E401 - values of the Avro logical types, here only
    for i in range(N):
        cid = f"{PREFIX}chain-{i}"
        order = {"event_id": f"o-{i}", "correlation_id": cid, "source": "order-service",
                 "traceparent": f"00-{TRACE[:-2]}{i:02d}-00f067aa0ba902b7-01",
                 "amount": decimal.Decimal("19.99"), "email": f"buyer{i}@example.com",
                 "placed_at": datetime.datetime(2026, 1, 1, 12, 0, i, tzinfo=datetime.timezone.utc)}
        producer.produce(ORDERS, avro(order, SerializationContext(ORDERS, MessageField.VALUE)))
        pay = Payment(event_type="PaymentTaken", event_id=f"p-{i}", correlation_id=cid, source="payment-service",
                      amount_cents=1999, card="4111 1111 1111 1111")
        producer.produce(PAYMENTS, proto(pay, SerializationContext(PAYMENTS, MessageField.VALUE)))
        ship = {"event_type": "ShipmentSent", "event_id": f"s-{i}", "correlationId": cid,
                "source": "shipping-service", "carrier": "DHL"}
        producer.produce(SHIPMENTS, shipment(ship, SerializationContext(SHIPMENTS, MessageField.VALUE)))
    # an ID the registry never gave, and bytes that are no Avro record of schema 1
    producer.produce(ORDERS, b"\x00\x00\x00\x03\xe7" + b"\x02x")
    producer.produce(ORDERS, b"\x00\x00\x00\x00\x01" + b"\xff\xff\xff")
    assert producer.flush(20) == 0
    return client


@pytest.fixture(scope="module")
def kafka_admin_module(kafka_bootstrap):
    from confluent_kafka.admin import AdminClient, NewTopic  # the topics of this module, made once
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in (ORDERS, PAYMENTS, SHIPMENTS)]).values():
        future.result(30)
    return admin


def collect(root: Path, kafka_bootstrap: str, registry_lines: str) -> tuple[Store, str]:
    config = root / "eventscope.toml"
    config.write_text(f"""
[kafka]
bootstrap = "{kafka_bootstrap}"
topics = '^{PREFIX}'
[store]
dir = "{root / 'store'}"
[traces]
lookback_s = 3600
[schema_registry]
{registry_lines}
""")
    done = subprocess.run([sys.executable, "-m", "eventscope", "--config", str(config), "collect", "--once"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return Store(root / "store"), str(config)


def cli_json(config: str, *args: str):
    done = subprocess.run([sys.executable, "-m", "eventscope", "--config", config, *args, "--json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def collected(tmp_path_factory, produced, registry, kafka_bootstrap):
    root = tmp_path_factory.mktemp("schema-registry")
    # the source's own registry (a clusters table); the section's own would be unreachable
    store, config = collect(root, kafka_bootstrap, f"""url = "http://127.0.0.1:9"
[[schema_registry.clusters]]
sources = ["kafka"]
url = "{registry.url}"
basic_auth_user = "{USER}"
basic_auth_password = "{PASSWORD}"
""")
    return store.read("events"), config


def test_registry_encoded_events_are_read_like_json_envelopes(collected):
    events, _ = collected
    good = events[events["decode_error"] == ""]
    by_type = {t: set(rows["topic"]) for t, rows in good.groupby("event_type")}
    # Avro: no type field, the record's full name names it; Protobuf and JSON Schema: the envelope field
    assert by_type == {"shop.orders.OrderPlaced": {ORDERS}, "PaymentTaken": {PAYMENTS},
                       "ShipmentSent": {SHIPMENTS}}, by_type
    assert good.groupby("event_type").size().to_dict() == {t: N for t in by_type}
    for topic, service in ((ORDERS, "order-service"), (PAYMENTS, "payment-service"),
                           (SHIPMENTS, "shipping-service")):
        rows = good[good["topic"] == topic]
        assert set(rows["service"]) == {service}
        assert sorted(rows["correlation_id"]) == [f"{PREFIX}chain-{i}" for i in range(N)]
    orders = good[good["topic"] == ORDERS].sort_values("event_id")
    assert list(orders["trace_id"]) == [f"{TRACE[:-2]}{i:02d}" for i in range(N)]
    # the registered schema is named where the envelope gives no version
    assert set(orders["schema_version"]) == {f"{ORDERS}-value v1 (id 1)"}
    # the payload is stored as masked JSON text: decimals and times as text, personal data masked
    payload = json.loads(orders["payload"].iloc[0])
    assert payload["amount"] == "19.99" and payload["placed_at"].startswith("2026-01-01T12:00:00")
    assert "example.com" not in orders["payload"].iloc[0] and "buyer0" not in orders["payload"].iloc[0]
    payments = good[good["topic"] == PAYMENTS]
    assert "4111" not in "".join(payments["payload"]) and set(payments["event_id"]) == {f"p-{i}" for i in range(N)}


def test_unknown_ids_and_bad_bytes_are_counted_with_the_reason(collected, registry):
    events, _ = collected
    bad = events[events["decode_error"] != ""]
    assert set(bad["event_type"]) == {"<undecodable>"} and len(bad) == 2
    errors = sorted(bad["decode_error"])
    assert errors[0].startswith("AVRO record with schema 1 unreadable"), errors
    assert errors[1] == f"schema registry {registry.url}: schema 999 not found", errors
    assert not any(PASSWORD in e for e in errors)


def test_traces_and_produces_edges_follow_the_decoded_envelopes(collected):
    _, config = collected
    trace = cli_json(config, "trace", f"{PREFIX}chain-2")
    hops = trace["events"] if isinstance(trace, dict) else trace
    assert sorted((h["event_type"], h["topic"]) for h in hops) == sorted([
        ("shop.orders.OrderPlaced", ORDERS), ("PaymentTaken", PAYMENTS), ("ShipmentSent", SHIPMENTS)]), trace
    graph = cli_json(config, "graph")
    produces = {(e["source"], e["target"]) for e in graph["edges"] if e["kind"] == "produces"}
    assert {(f"service:{s}", f"topic:kafka:{t}") for s, t in (
        ("order-service", ORDERS), ("payment-service", PAYMENTS), ("shipping-service", SHIPMENTS))} <= produces, produces


def test_a_cached_schema_costs_no_request_and_a_down_registry_is_backed_off(produced, registry, kafka_bootstrap):
    cfg = SchemaRegistryConfig(url=registry.url, basic_auth_user=USER, basic_auth_password=Secret(PASSWORD))
    now = [0.0]
    decoder = SchemaRegistryDecoder(cfg, clock=lambda: now[0])
    ctx = SerializationContext(ORDERS, MessageField.VALUE)
    # a record as the producer wrote it, read straight from the serializer's bytes
    import decimal  # noqa: E401 - the Avro decimal's value
    value = AvroSerializer(produced, AVRO_ORDER)({
        "event_id": "x", "correlation_id": "c", "source": "s", "traceparent": None,
        "amount": decimal.Decimal("1.00"), "email": "e", "placed_at": 0}, ctx)
    before = registry.count(r"^GET /schemas/ids/1$")
    for _ in range(3):
        record, error, info = decoder.decode(value)
        assert error is None and record["correlation_id"] == "c"
    assert registry.count(r"^GET /schemas/ids/1$") == before + 1  # fetched once, then cached
    registry.down = True
    try:
        calls = registry.count(r"/schemas/ids/2$")
        pay = b"\x00\x00\x00\x00\x02\x00" + b"\n\x0cPaymentTaken"
        record, error, _ = decoder.decode(pay)
        assert record is None and error.startswith(f"schema registry {registry.url}: schema 2: HTTP 503"), error
        for _ in range(5):  # within the backoff: not asked again, the reason kept
            assert decoder.decode(pay)[1].startswith(f"schema registry {registry.url}: schema 2: HTTP 503")
        assert registry.count(r"/schemas/ids/2$") - calls <= 2  # one try (the client may retry it once)
        assert decoder.decode(value)[1] is None  # a cached schema still decodes while the registry is down
        now[0] += 1.5
        decoder.decode(pay)
        assert registry.count(r"/schemas/ids/2$") - calls > 2  # after the backoff: tried again
    finally:
        registry.down = False
    now[0] += 120
    record, error, info = decoder.decode(pay)
    assert error is None and info["name"] == "shop.payments.PaymentTaken", error


def test_wrong_credentials_say_so_without_the_secret(produced, registry):
    wrong = "not-the-" + PASSWORD
    decoder = SchemaRegistryDecoder(SchemaRegistryConfig(
        url=registry.url, basic_auth_user=USER, basic_auth_password=Secret(wrong)))
    _, error, _ = decoder.decode(b"\x00\x00\x00\x00\x01\x02x")
    assert error.startswith(f"schema registry {registry.url}: schema 1: HTTP 401"), error
    assert "basic_auth_user/basic_auth_password" in error and wrong not in error and PASSWORD not in error


def test_bearer_token(produced, registry):
    server = RegistryStandIn(token=TOKEN)
    try:
        schema_id = server.register(f"{ORDERS}-value", {"schema": AVRO_ORDER})
        value = b"\x00" + schema_id.to_bytes(4, "big") + b"\x02x"
        good = SchemaRegistryDecoder(SchemaRegistryConfig(url=server.url, bearer_token=Secret(TOKEN)))
        _, error, info = good.decode(value)
        # the schema was had (the bytes are no whole record: the Avro reader says so, not the registry)
        assert info["type"] == "AVRO" and error.startswith(f"AVRO record with schema {schema_id} unreadable"), error
        bad = SchemaRegistryDecoder(SchemaRegistryConfig(url=server.url, bearer_token=Secret("tok-wrong")))
        _, error, _ = bad.decode(value)
        assert "HTTP 401" in error and "tok-wrong" not in error and TOKEN not in error, error
    finally:
        server.stop()


def test_local_schema_files_without_a_registry(tmp_path, produced, registry, kafka_bootstrap):
    """schema_dir alone: <id>.avsc and <id>.json are read; the registry is never asked."""
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "1.avsc").write_text(AVRO_ORDER)
    (schemas / "3.json").write_text(JSON_SHIPMENT)
    before = sum(registry.requests.values())
    store, _ = collect(tmp_path, kafka_bootstrap, f'schema_dir = "{schemas}"')
    events = store.read("events")
    assert sum(registry.requests.values()) == before
    typed = events[events["decode_error"] == ""].groupby("event_type").size().to_dict()
    assert typed == {"shop.orders.OrderPlaced": N, "ShipmentSent": N}, typed
    # Protobuf (schema 2) has no local file: undecodable, and why
    payments = events[events["topic"] == PAYMENTS]
    assert set(payments["decode_error"]) == {
        f"schema 2 is not in schema_dir {schemas} and no schema registry url is set"}
    assert set(events.loc[events["topic"] == ORDERS, "schema_version"].dropna()) == {"id 1"}
