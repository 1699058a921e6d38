"""The contract of ``eventscope.collectors`` (its docstring), tested against every registered
broker kind on a real broker of that kind.

Parametrized over :func:`eventscope.collectors.kinds`, so a new kind is tested as soon as it
registers: it fails here until a :class:`World` below says how to start its broker, seed it
and read its state. For each kind, as a read-only identity:

* what its collectors return are frames the kind declares, conformed exactly to
  :mod:`eventscope.schemas`, every row naming the configured source (``source``/``broker``)
  and, once through the runner, its kind;
* a source nobody listens for, or one given a wrong password, is a failed ``health`` row
  with one line naming no secret, and the other sources of the same run go on;
* nothing is denied and nothing changes on the broker (the broker's own refusal logs:
  Redis's ``ACL LOG``, the Kafka authorizer's log; RabbitMQ's queue counters);
* a topic, stream or queue (or group) with quotes, ``<script>``, unicode and control
  characters in its name is collected and stored under its literal name.
"""
from __future__ import annotations

import json
import time
import uuid
from urllib.parse import quote, urlsplit, urlunsplit

import pandas as pd
import pytest
import redis
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from eventscope import schemas
from eventscope.collectors import kinds
from eventscope.config import load_config
from eventscope.localbrokers import NO_RIGHTS, RABBITMQ_ADMIN, free_port, rabbitmq_api
from eventscope.runner import Runner, build_collectors
from eventscope.store import Store
from test_read_only import acl_log_of, denied_log_lines, kafka_state, redis_state

pytestmark = pytest.mark.broker

# quotes, markup, unicode and control characters: what a name may hold where the broker allows it
HOSTILE = "q\"'<script>alert(1)</script> ünïcødé 注文 \x1b[31m\x07\t"
SECRET_WRONG = "wrong-" + uuid.uuid4().hex  # a password no broker knows


def one_line_without(text: str, *secrets: str) -> bool:
    return bool(text) and "\n" not in text and not any(s and s in text for s in secrets)


class World:
    """A real broker of one kind, as the contract tests need it."""

    kind: str
    #: the read-only identity's password (it must never show)
    password: str

    def source(self, tag: str) -> dict:
        """The ``[[sources]]`` keys of a source watching only what ``seed(tag)`` made, as the
        read-only identity."""
        raise NotImplementedError

    def unreachable(self, tag: str) -> dict:
        """The same source, at an address where nothing listens."""
        raise NotImplementedError

    def wrong_password(self, tag: str) -> dict:
        """The same source, with a password the broker refuses (``SECRET_WRONG``)."""
        raise NotImplementedError

    def seed(self, tag: str) -> dict:
        """Make a topic/stream/queue with a group and messages, and one with a hostile name;
        return ``{column: names}`` the stored ``topics``/``lag`` frames must hold literally."""
        raise NotImplementedError

    def state(self, tag: str):
        """Everything a write would change, for comparing before and after."""
        raise NotImplementedError

    def mark(self):
        """Where the broker's log of refusals stands now."""
        return None

    def refused(self, mark) -> list:
        """What the broker refused the read-only identity since ``mark``."""
        return []

    def close(self, tag: str) -> None:
        pass


class KafkaWorld(World):
    kind = "kafka"

    def __init__(self, request):
        self.broker = request.getfixturevalue("kafka_broker")
        self.ro = request.getfixturevalue("kafka_ro_env")
        self.password = self.ro["EVENTSCOPE_KAFKA_SASL_PASSWORD"]
        self.admin = AdminClient({"bootstrap.servers": self.broker.address})

    def source(self, tag):
        return {"bootstrap": self.ro["EVENTSCOPE_KAFKA_BOOTSTRAP"], "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN", "sasl_username": self.ro["EVENTSCOPE_KAFKA_SASL_USERNAME"],
                "sasl_password": self.password, "topics": f"^{tag}", "timeout_s": 5.0}

    def unreachable(self, tag):
        return {**self.source(tag), "bootstrap": f"127.0.0.1:{free_port()}", "timeout_s": 2.0}

    def wrong_password(self, tag):
        return {**self.source(tag), "sasl_password": SECRET_WRONG, "timeout_s": 2.0}

    def seed(self, tag):
        # Kafka allows only [A-Za-z0-9._-] in a topic name (the most awkward of those here);
        # a group's ID may be anything
        orders, odd = f"{tag}.orders", f"{tag}..-_odd.-_DLT"
        for future in self.admin.create_topics([NewTopic(orders, 2, 1), NewTopic(odd, 1, 1)]).values():
            future.result(timeout=30)
        producer = Producer({"bootstrap.servers": self.broker.address})
        for i in range(6):
            producer.produce(orders, json.dumps({"event_type": "OrderPlaced", "correlation_id": f"c{i}"}).encode(),
                             partition=i % 2)
        producer.produce(odd, b"{}", headers=[("kafka_dlt-exception-message", HOSTILE.encode())])
        assert producer.flush(30) == 0
        for group, topic in ((f"{tag}-billing", orders), (HOSTILE + tag, odd)):
            committer = Consumer({"bootstrap.servers": self.broker.address, "group.id": group})
            committer.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
            committer.close()
        return {"topic": {orders, odd}, "group": {f"{tag}-billing", HOSTILE + tag}}

    def state(self, tag):
        return kafka_state(self.admin, tag)

    def mark(self):
        return self.broker.log_path.stat().st_size

    def refused(self, mark):
        return denied_log_lines(self.broker, "User:" + self.ro["EVENTSCOPE_KAFKA_SASL_USERNAME"], mark)


class RedisWorld(World):
    kind = "redis"

    def __init__(self, request):
        self.url = request.getfixturevalue("redis_url")
        self.ro_url = request.getfixturevalue("redis_ro_url")
        self.user, self.password = urlsplit(self.ro_url).username, urlsplit(self.ro_url).password
        self.client = redis.Redis.from_url(self.url, decode_responses=True)

    def source(self, tag):
        return {"url": self.ro_url, "stream_pattern": f"{tag}*", "timeout_s": 2.0}

    def unreachable(self, tag):
        return {**self.source(tag), "url": self.ro_url.replace(str(urlsplit(self.ro_url).port), str(free_port()))}

    def wrong_password(self, tag):
        parts = urlsplit(self.ro_url)
        netloc = f"{self.user}:{SECRET_WRONG}@{parts.hostname}:{parts.port}"
        return {**self.source(tag), "url": urlunsplit(parts._replace(netloc=netloc))}

    def seed(self, tag):
        orders, odd = f"{tag}:orders", f"{tag}:{HOSTILE}"
        for stream in (orders, odd):
            for i in range(5):
                self.client.xadd(stream, {"envelope": json.dumps({"event_type": "OrderPlaced", "correlation_id": f"c{i}"})})
        self.client.xgroup_create(orders, "billing", id="0")
        self.client.xgroup_create(odd, HOSTILE, id="0")
        self.client.xreadgroup(HOSTILE, "worker <b>1</b>", {odd: ">"}, count=2)
        return {"topic": {orders, odd}, "group": {"billing", HOSTILE}}

    def state(self, tag):
        return redis_state(self.client, tag)

    def mark(self):
        self.client.acl_log_reset()

    def refused(self, mark):
        return acl_log_of(self.client, self.user)

    def close(self, tag):
        for key in self.client.scan_iter(match=f"{tag}*"):
            self.client.delete(key)


class RabbitMQWorld(World):
    kind = "rabbitmq"

    def __init__(self, request):
        self.broker = request.getfixturevalue("rabbitmq_broker")
        self.user, self.password = request.getfixturevalue("rabbitmq_ro")

    def source(self, tag):
        return {"url": self.broker.address, "username": self.user, "password": self.password,
                "vhosts": [self.vhost(tag)], "timeout_s": 5.0}

    def unreachable(self, tag):
        return {**self.source(tag), "url": f"http://127.0.0.1:{free_port()}", "timeout_s": 2.0}

    def wrong_password(self, tag):
        return {**self.source(tag), "password": SECRET_WRONG}

    @staticmethod
    def vhost(tag):
        return f"{tag}/{HOSTILE[:-3]}"  # a vhost's name is hostile too (no control characters: the API refuses them)

    def seed(self, tag):
        import pika
        vhost = quote(self.vhost(tag), safe="")
        rabbitmq_api(self.broker, "PUT", f"/api/vhosts/{vhost}", {})
        rabbitmq_api(self.broker, "PUT", f"/api/permissions/{vhost}/{RABBITMQ_ADMIN[0]}",
                     {"configure": ".*", "write": ".*", "read": ".*"})
        rabbitmq_api(self.broker, "PUT", f"/api/permissions/{vhost}/{self.user}", NO_RIGHTS)
        host, port = self.broker.amqp_address.rsplit(":", 1)
        conn = pika.BlockingConnection(pika.ConnectionParameters(
            host, int(port), virtual_host=self.vhost(tag), credentials=pika.PlainCredentials(*RABBITMQ_ADMIN)))
        channel = conn.channel()
        queues = ["orders", HOSTILE]
        for queue in queues:
            channel.queue_declare(queue, durable=True)
            channel.basic_publish("", queue, b'{"event_type": "OrderPlaced"}')
        conn.close()
        self.queues = queues
        return {"queue": set(queues)}

    def state(self, tag):
        vhost = quote(self.vhost(tag), safe="")
        out = {}
        for queue in self.queues:
            info = self._queue_with_stats(vhost, queue)
            stats = info.get("message_stats", {})
            out[queue] = (info.get("messages_ready"), info.get("messages_unacknowledged"),
                          *(stats.get(k) for k in ("publish", "deliver_get", "ack", "get", "redeliver")))
        out["queues"] = sorted(q["name"] for q in rabbitmq_api(self.broker, "GET", f"/api/queues/{vhost}"))
        out["exchanges"] = sorted(e["name"] for e in rabbitmq_api(self.broker, "GET", f"/api/exchanges/{vhost}"))
        return out

    def _queue_with_stats(self, vhost: str, queue: str) -> dict:
        """The queue as the API shows it once its statistics were emitted: right after the
        declare the message counts are absent (the management plugin fills them every few
        seconds), which is not a change anyone made."""
        deadline = time.monotonic() + 30
        while True:
            info = rabbitmq_api(self.broker, "GET", f"/api/queues/{vhost}/{quote(queue, safe='')}")
            if info.get("messages_ready") is not None and "publish" in info.get("message_stats", {}) \
                    or time.monotonic() > deadline:
                return info
            time.sleep(0.5)

    def close(self, tag):
        rabbitmq_api(self.broker, "DELETE", f"/api/vhosts/{quote(self.vhost(tag), safe='')}")


WORLDS = {world.kind: world for world in (KafkaWorld, RedisWorld, RabbitMQWorld)}


@pytest.fixture(params=sorted(kinds()))
def world(request):
    """A real broker of each registered kind."""
    if request.param not in WORLDS:
        pytest.fail(f"broker kind {request.param!r} is registered but no World in {__name__} starts one",
                    pytrace=False)
    return WORLDS[request.param](request)


@pytest.fixture
def tag(world):
    tag = f"ct{uuid.uuid4().hex[:6]}"
    yield tag
    world.close(tag)


def config_of(*sources: tuple[str, str, dict]):
    """A config with these ``(name, kind, keys)`` sources, given as ``EVENTSCOPE_SOURCES``."""
    return load_config(env={"EVENTSCOPE_SOURCES": json.dumps(
        [{"name": name, "kind": kind, **keys} for name, kind, keys in sources])})


def settled(runner: Runner, done, timeout: float = 30.0) -> pd.DataFrame:
    """Sample until ``done()`` holds (a management API's numbers trail by seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        health = runner.run_once(force=True)
        if done() or time.monotonic() > deadline:
            return health
        time.sleep(0.5)


def test_frames_are_declared_conform_to_their_schema_and_name_the_source(world, tag, tmp_path):
    world.seed(tag)
    kind = kinds()[world.kind]
    name = f"{world.kind}-contract.1"
    config = config_of((name, world.kind, world.source(tag)))
    collectors = build_collectors(config)
    assert collectors and {c.source for c in collectors} == {name} and {c.kind for c in collectors} == {world.kind}
    returned = set()
    try:
        for collector in collectors:
            for frame_name, frame in collector.collect().items():
                returned.add(frame_name)
                assert frame_name in kind.frames, (collector.name, frame_name, kind.frames)
                schema = schemas.SCHEMAS[frame_name]
                assert list(frame.columns) == list(schema), (frame_name, list(frame.columns))
                assert {c: str(frame[c].dtype) for c in frame} == {c: dtype for c, (dtype, _) in schema.items()}, \
                    frame_name
                if "source" in frame:
                    assert set(frame["source"]) <= {name}, frame_name
                if "broker" in frame:
                    assert set(frame["broker"]) <= {name}, frame_name
    finally:
        for collector in collectors:
            collector.close()
    assert {"lag", "topics"} <= returned

    store = Store(tmp_path)
    runner = Runner(store, build_collectors(config), interval_s=0.5)
    try:
        health = settled(runner, lambda: not store.read("lag").empty)
    finally:
        runner.close()
    assert health["ok"].all(), health[["collector", "error"]].to_dict("records")
    for frame_name in kind.frames:
        frame = store.read(frame_name)
        if "broker" in frame and not frame.empty:
            assert set(frame["broker"]) == {name} and set(frame["source"]) == {name}, frame_name
            assert set(frame["kind"]) == {world.kind}, frame_name
    assert not store.read("lag").empty


def test_failures_are_health_rows_of_one_line_without_secrets(world, tag, tmp_path):
    world.seed(tag)
    config = config_of(("good", world.kind, world.source(tag)), ("nobody-there", world.kind, world.unreachable(tag)),
                       ("wrong-password", world.kind, world.wrong_password(tag)))
    shown = repr(config) + json.dumps(config.sources_summary())
    assert world.password not in shown and SECRET_WRONG not in shown
    store = Store(tmp_path)
    runner = Runner(store, build_collectors(config), interval_s=0.5)
    try:
        health = runner.run_once(force=True)
    finally:
        runner.close()
    by_source = {source: rows for source, rows in health.groupby("source")}
    assert set(by_source) == {"good", "nobody-there", "wrong-password"}
    assert by_source["good"]["ok"].all(), by_source["good"][["collector", "error"]].to_dict("records")
    assert by_source["good"]["rows"].sum() > 0
    for failing in ("nobody-there", "wrong-password"):
        rows = by_source[failing]
        assert not rows["ok"].any(), (failing, rows[["collector", "error"]].to_dict("records"))
        for error in rows["error"]:
            assert one_line_without(error, world.password, SECRET_WRONG), (failing, error)
    # what was stored is the good source's alone
    lag = store.read("lag")
    assert set(lag["broker"]) == {"good"}
    stored = store.read("health")
    assert set(stored.loc[~stored["ok"], "source"]) == {"nobody-there", "wrong-password"}


def test_read_only_identities_are_enough_and_change_nothing(world, tag, tmp_path):
    world.seed(tag)
    config = config_of(("ro", world.kind, world.source(tag)))
    runner = Runner(Store(tmp_path), build_collectors(config), interval_s=0.5)
    try:
        runner.run_once(force=True)  # the first pass reads everything there is
        time.sleep(1)
        before = world.state(tag)
        mark = world.mark()
        for _ in range(3):
            health = runner.run_once(force=True)
            assert health["ok"].all(), health[["collector", "error"]].to_dict("records")
    finally:
        runner.close()
    time.sleep(1)  # any statistics of what it might have done show
    assert world.refused(mark) == []
    assert world.state(tag) == before


def test_hostile_names_are_stored_literally(world, tag, tmp_path):
    expected = world.seed(tag)
    config = config_of(("hostile", world.kind, world.source(tag)))
    store = Store(tmp_path)
    runner = Runner(store, build_collectors(config), interval_s=0.5)

    def seen() -> dict:
        frames = {"topic": store.read("topics"), "group": store.read("lag"), "queue": store.read("queues")}
        return {column: set(frames[column][column]) if column in frames[column] else set() for column in expected}

    try:
        health = settled(runner, lambda: all(names <= seen()[column] for column, names in expected.items()))
    finally:
        runner.close()
    assert health["ok"].all(), health[["collector", "error"]].to_dict("records")
    for column, names in expected.items():
        assert names <= seen()[column], (column, names, seen()[column])
    # the lag rows of every seeded topic carry the literal name too
    topics = set(store.read("lag")["topic"])
    for name in expected.get("topic", ()):
        assert name in topics, (name, topics)
