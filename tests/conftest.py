"""Session fixtures: one real Redis, one real Kafka and one real RabbitMQ per test run, on loopback
(and a second Kafka and Redis, started only when a test watching two clusters asks for them).

Each broker also holds a read-only identity for eventscope, so a test can run the
collectors with no more rights than a production deployment grants them
(``redis_ro_url``, ``kafka_ro_env``). The Kafka broker enforces ACLs (KRaft's
``StandardAuthorizer``) on its SASL listener, where eventscope logs in as
``User:eventscope``; its PLAINTEXT listener (``kafka_bootstrap``) stays unrestricted
for test setup and the simulator, as does the default Redis user. RabbitMQ's ``eventscope``
user has only the ``monitoring`` tag (the management API's reads) and no AMQP rights;
``RABBITMQ_ADMIN`` sets up what the tests watch. The Kafka broker also has secured listeners
(SASL_SSL with SCRAM-SHA-512, mutual TLS, OAUTHBEARER), each with a read-only identity of its
own (``kafka_secure``).
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path
from collections.abc import Callable, Iterator

import pytest
import redis
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                   AdminClient, ResourcePatternType, ResourceType)

# Tests are grouped by what they need: unit/ (nothing), brokers/ (the real brokers below),
# browser/ (Chromium). Their shared helpers (test_app's synthetic stores, programs,
# real_clients) are imported by module name from any group.
_HERE = Path(__file__).resolve().parent
for _group in ("unit", "brokers", "browser"):
    if str(_HERE / _group) not in sys.path:
        sys.path.insert(0, str(_HERE / _group))
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

from eventscope.localbrokers import (MTLS_CLIENT_CN, BrokerStartError, LocalBroker, TlsFiles, make_tls_files,
                                     start_kafka, start_rabbitmq, start_redis, start_redis_cluster,
                                     start_redis_sentinel)

# Fixtures that start a real broker; tests using them get the `broker` marker.
BROKER_FIXTURES = {"redis_broker", "redis_url", "redis_client", "redis_ro_url",
                   "kafka_broker", "kafka_bootstrap", "kafka_admin", "kafka_ro_env", "rabbitmq_broker",
                   "rabbitmq_ro", "kafka_broker2", "kafka_bootstrap2", "redis_broker2", "redis_url2",
                   "kafka_secure",
                   "redis_tls", "redis_cluster", "redis_sentinel"}

# eventscope's read-only identities (README, "Read-only rights"). Redis: read commands on every
# key, nothing else (no PING, no INFO: the collectors need neither). Kafka: Describe and
# Read on topics, Describe on groups, nothing on the cluster.
REDIS_RO_USER, REDIS_RO_PASSWORD = "eventscope-ro", "eventscope-ro-secret"
REDIS_RO_RULES = ["~*", "resetchannels", "-@all", "+@read", "-@dangerous"]
# A Redis Cluster's read-only user also reads the slot map and the commands' key positions
# (redis-py's cluster client asks CLUSTER SLOTS and COMMAND); a Sentinel's user only asks
# where the masters are.
REDIS_CLUSTER_RO_RULES = REDIS_RO_RULES + ["+cluster|slots", "+command"]
REDIS_SENTINEL_USER, REDIS_SENTINEL_PASSWORD = "eventscope-sentinel", "eventscope-sentinel-secret"
REDIS_SENTINEL_RULES = ["-@all", "+sentinel|masters"]
KAFKA_RO_USER, KAFKA_RO_PASSWORD = "eventscope", "eventscope-secret"
KAFKA_RO_PRINCIPAL = "User:" + KAFKA_RO_USER
KAFKA_RO_ACLS = [(ResourceType.TOPIC, AclOperation.DESCRIBE), (ResourceType.TOPIC, AclOperation.READ),
                 (ResourceType.GROUP, AclOperation.DESCRIBE)]
RABBITMQ_RO_USER, RABBITMQ_RO_PASSWORD = "eventscope", "eventscope-rabbit-secret"
# the secured listeners' read-only identities (start_kafka's ``secure``): a SCRAM-SHA-512
# user over SASL_SSL, a client certificate's CN over mutual TLS, an OAUTHBEARER token's sub
KAFKA_SCRAM_USER, KAFKA_SCRAM_PASSWORD = "eventscope-scram", "eventscope-scram-secret"
KAFKA_OAUTH_SUB = "eventscope-oauth"


def pytest_configure(config: pytest.Config) -> None:
    """Register our markers (harmless if pyproject lists them too)."""
    config.addinivalue_line("markers", "broker: needs the real local Redis/Kafka brokers")
    config.addinivalue_line("markers", "browser: drives a headless Chromium")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a broker fixture, so `-m "not broker"` just works."""
    for item in items:
        if BROKER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.broker)


def _started(start: Callable[..., LocalBroker], workdir) -> LocalBroker:
    """Start a broker, or fail (never skip) with its log tail."""
    try:
        return start(workdir)
    except BrokerStartError as exc:
        message = str(exc)
    # Outside the except block, so the report shows the log tail once, unchained.
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def redis_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A throwaway redis-server for the whole run."""
    broker = _started(start_redis, tmp_path_factory.mktemp("redis"))
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def redis_url(redis_broker: LocalBroker) -> str:
    """URL of the session Redis, e.g. redis://127.0.0.1:PORT/0."""
    return redis_broker.address


@pytest.fixture(scope="session")
def redis_ro_url(redis_broker: LocalBroker) -> str:
    """URL of the session Redis as a user allowed only read commands (``REDIS_RO_RULES``)."""
    admin = redis.Redis.from_url(redis_broker.address)
    try:
        admin.execute_command("ACL", "SETUSER", REDIS_RO_USER, "reset", "on", ">" + REDIS_RO_PASSWORD,
                              *REDIS_RO_RULES)
    finally:
        admin.close()
    return redis_broker.address.replace("redis://", f"redis://{REDIS_RO_USER}:{REDIS_RO_PASSWORD}@", 1)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A str-decoding client on an emptied session Redis (it is ours alone)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushall()
    yield client
    client.close()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A throwaway single-node KRaft Kafka for the whole run."""
    broker = _started(lambda workdir: start_kafka(workdir, sasl_users={KAFKA_RO_USER: KAFKA_RO_PASSWORD},
                                                  scram_users={KAFKA_SCRAM_USER: KAFKA_SCRAM_PASSWORD}, secure=True),
                      tmp_path_factory.mktemp("kafka"))
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def kafka_broker2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A second Kafka, for the tests that watch two clusters at once; started by the first
    test that asks for it (about 20 s), then shared by the rest of the run."""
    broker = _started(start_kafka, tmp_path_factory.mktemp("kafka2"))
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap2(kafka_broker2: LocalBroker) -> str:
    """bootstrap.servers of the second Kafka (PLAINTEXT)."""
    return kafka_broker2.address


@pytest.fixture(scope="session")
def redis_broker2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A second redis-server, for the tests that watch two Redis servers at once."""
    broker = _started(start_redis, tmp_path_factory.mktemp("redis2"))
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def redis_url2(redis_broker2: LocalBroker) -> str:
    """URL of the second Redis."""
    return redis_broker2.address


@pytest.fixture(scope="session")
def rabbitmq_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A throwaway RabbitMQ node (management API on) for the whole run, with the monitoring
    user ``RABBITMQ_RO_USER``; ``address`` is the management URL, ``amqp_address`` AMQP's."""
    broker = _started(lambda workdir: start_rabbitmq(
        workdir, monitoring_users={RABBITMQ_RO_USER: RABBITMQ_RO_PASSWORD}), tmp_path_factory.mktemp("rabbitmq"))
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def rabbitmq_ro(rabbitmq_broker: LocalBroker) -> tuple[str, str]:
    """(user, password) of the session RabbitMQ's monitoring-only identity."""
    return RABBITMQ_RO_USER, RABBITMQ_RO_PASSWORD


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: LocalBroker) -> str:
    """bootstrap.servers of the session Kafka, e.g. 127.0.0.1:PORT (PLAINTEXT: no restriction)."""
    return kafka_broker.address


@pytest.fixture
def kafka_admin(kafka_bootstrap: str) -> AdminClient:
    """An AdminClient on the session Kafka (topics persist across tests: use unique names)."""
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


def _grant_read_only(kafka_broker: LocalBroker, principal: str) -> None:
    """Give ``principal`` the ACLs of ``KAFKA_RO_ACLS`` on the session Kafka, and wait until
    the broker's authorizer holds them."""
    admin = AdminClient({"bootstrap.servers": kafka_broker.address})
    bindings = [AclBinding(kind, "*", ResourcePatternType.LITERAL, principal, "*", operation,
                           AclPermissionType.ALLOW) for kind, operation in KAFKA_RO_ACLS]
    for future in admin.create_acls(bindings).values():
        future.result(timeout=30)
    # The controller commits them; wait until the broker's authorizer holds them too.
    mine = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, principal, None,
                            AclOperation.ANY, AclPermissionType.ANY)
    deadline = time.monotonic() + 30
    while len(admin.describe_acls(mine).result(timeout=10)) < len(bindings):
        if time.monotonic() > deadline:
            pytest.fail("the read-only ACLs never reached the broker's authorizer", pytrace=False)
        time.sleep(0.1)


@pytest.fixture(scope="session")
def kafka_secure(kafka_broker: LocalBroker) -> dict:
    """The session Kafka's secured listeners, each with a read-only identity holding only the
    ACLs of ``KAFKA_RO_ACLS``: ``scram`` (SASL_SSL, SCRAM-SHA-512), ``mtls`` (SSL with a
    client certificate), ``oauth`` (SASL_PLAINTEXT, OAUTHBEARER with unsecured JWTs), each
    ``{"address", "principal"}``, and ``tls`` (:class:`TlsFiles`)."""
    listeners = {"scram": (kafka_broker.scram_address, KAFKA_SCRAM_USER),
                 "mtls": (kafka_broker.mtls_address, MTLS_CLIENT_CN),
                 "oauth": (kafka_broker.oauth_address, KAFKA_OAUTH_SUB)}
    for _, user in listeners.values():
        _grant_read_only(kafka_broker, "User:" + user)
    return {**{name: {"address": address, "principal": "User:" + user} for name, (address, user) in listeners.items()},
            "tls": TlsFiles(kafka_broker.tls_dir)}


@pytest.fixture(scope="session")
def kafka_ro_env(kafka_broker: LocalBroker) -> dict[str, str]:
    """``EVENTSCOPE_KAFKA_*`` settings that connect to the session Kafka as ``User:eventscope``,
    through the SASL listener, with only the ACLs of ``KAFKA_RO_ACLS``."""
    _grant_read_only(kafka_broker, KAFKA_RO_PRINCIPAL)
    return {"EVENTSCOPE_KAFKA_BOOTSTRAP": kafka_broker.sasl_address,
            "EVENTSCOPE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "EVENTSCOPE_KAFKA_SASL_MECHANISM": "PLAIN",
            "EVENTSCOPE_KAFKA_SASL_USERNAME": KAFKA_RO_USER,
            "EVENTSCOPE_KAFKA_SASL_PASSWORD": KAFKA_RO_PASSWORD}


def _redis_user(address: str, rules: list[str], tls: dict | None = None) -> None:
    """Create the read-only user ``REDIS_RO_USER`` on one Redis node (ACLs are per node)."""
    admin = redis.Redis.from_url(address, **(tls or {}))
    try:
        admin.execute_command("ACL", "SETUSER", REDIS_RO_USER, "reset", "on", ">" + REDIS_RO_PASSWORD, *rules)
    finally:
        admin.close()


@pytest.fixture(scope="session")
def redis_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A redis-server listening only on TLS (``--port 0``), asking clients for a certificate
    (``tls-auth-clients yes``), with ``REDIS_RO_USER``. ``address`` is ``rediss://``;
    ``tls`` holds the client's files (``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``)."""
    workdir = tmp_path_factory.mktemp("redis-tls")
    try:
        files = make_tls_files(workdir / "tls")
    except BrokerStartError as exc:
        pytest.fail(str(exc), pytrace=False)
    broker = _started(lambda w: start_redis(w, tls=files), workdir)
    _redis_user(broker.address, REDIS_RO_RULES, broker.tls)
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[LocalBroker]]:
    """A Redis Cluster of three masters on loopback, each with ``REDIS_RO_USER``
    (``REDIS_CLUSTER_RO_RULES``); started by the first test that asks for it."""
    workdir = tmp_path_factory.mktemp("redis-cluster")
    try:
        nodes = start_redis_cluster(workdir)
    except BrokerStartError as exc:
        pytest.fail(str(exc), pytrace=False)
    for node in nodes:
        _redis_user(node.address, REDIS_CLUSTER_RO_RULES)
    yield nodes
    for node in nodes:
        node.stop()


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, LocalBroker]]:
    """A master, its replica and one Sentinel (quorum 1, a master is down after 1 s) that
    knows the master as ``mymaster``; both data nodes have ``REDIS_RO_USER``, the Sentinel
    ``REDIS_SENTINEL_USER``. Returns ``{"master", "replica", "sentinel"}`` as started (a test
    that fails over swaps the roles)."""
    workdir = tmp_path_factory.mktemp("redis-sentinel")
    master = _started(start_redis, workdir / "master")
    host, port = master.address.split("//", 1)[1].split("/")[0].rsplit(":", 1)
    started = [master]
    try:
        replica = _started(lambda w: start_redis(w, args=("--replicaof", host, port)), workdir / "replica")
        started.append(replica)
        for node in (master, replica):
            _redis_user(node.address, REDIS_RO_RULES)
        users = {REDIS_SENTINEL_USER: " ".join(["on", ">" + REDIS_SENTINEL_PASSWORD, *REDIS_SENTINEL_RULES])}
        sentinel = _started(lambda w: start_redis_sentinel(w, master, users=users), workdir / "sentinel")
        started.append(sentinel)
        yield {"master": master, "replica": replica, "sentinel": sentinel}
    finally:
        for broker in reversed(started):
            broker.stop()


_GC_THRESHOLDS = gc.get_threshold()  # Python's own, as the test run starts


@pytest.fixture(autouse=True)
def _garbage_collector_as_found() -> Iterator[None]:
    """An in-process `eventscope collect` (a test's, or a module fixture's) tunes the garbage
    collector for its process (``memory.tune_gc``); the tests after it run with Python's own
    settings again."""
    yield
    if gc.get_threshold() != _GC_THRESHOLDS or gc.get_freeze_count():
        gc.set_threshold(*_GC_THRESHOLDS)
        gc.unfreeze()
