"""Session fixtures: one real Redis and one real Kafka per test run, on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis
from confluent_kafka.admin import AdminClient

from eventscope.localbrokers import BrokerStartError, LocalBroker, start_kafka, start_redis

# Fixtures that start a real broker; tests using them get the `broker` marker.
BROKER_FIXTURES = {"redis_broker", "redis_url", "redis_client",
                   "kafka_broker", "kafka_bootstrap", "kafka_admin"}


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
    broker = _started(start_kafka, tmp_path_factory.mktemp("kafka"))
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: LocalBroker) -> str:
    """bootstrap.servers of the session Kafka, e.g. 127.0.0.1:PORT."""
    return kafka_broker.address


@pytest.fixture
def kafka_admin(kafka_bootstrap: str) -> AdminClient:
    """An AdminClient on the session Kafka (topics persist across tests: use unique names)."""
    return AdminClient({"bootstrap.servers": kafka_bootstrap})
