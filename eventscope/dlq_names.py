"""Dead-letter queues by name: the default patterns of each broker kind, an explicit list of
names, and the topic a DLQ's name says its failures came from.

The conventions the defaults follow: Spring Kafka's ``<topic>.DLT`` (``-dlt`` in some
setups), ``<topic>.dlq`` / ``-dlq`` / ``.dead-letter``, a ``dlq.`` / ``dlq-`` prefix, and
Kafka Connect's ``__connect.errors*`` and plain ``dlq``. Redis keys use ``:`` as a separator
too (``orders:dlq``, ``dlq:orders``). RabbitMQ queues are named with ``.`` and ``-``; a
RabbitMQ DLQ is above all a queue bound to a dead-letter exchange, the name only adds to that.
A topic whose messages carry Spring's or Connect's DLQ headers counts as a DLQ whatever its
name (``eventscope.decode``).
"""
from __future__ import annotations

import re

KAFKA_DLQ_PATTERN = r"(\.DLT|-dlt|\.dlq|-dlq|\.dead-letter)$|^dlq[.-]|^__connect\.errors|^dlq$"
REDIS_DLQ_PATTERN = r"(\.dlq|:dlq|\.DLT|-dlt|-dlq|\.dead-letter)$|^dlq[.:-]"
RABBITMQ_DLQ_PATTERN = r"(\.dlq|-dlq|\.dead-letter)$|^dlq\."

# every suffix and prefix above, any case: what is left once they are taken off is the source
_SUFFIX = re.compile(r"(\.DLT|-dlt|\.dlq|-dlq|:dlq|\.dead-letter)$", re.I)
_PREFIX = re.compile(r"^dlq[.:-]", re.I)


def dlq_regex(pattern: str, names: list) -> str:
    """The DLQ pattern widened by an explicit list of names."""
    exact = "|".join(f"^{re.escape(n)}$" for n in names)
    return f"{pattern}|{exact}" if exact else pattern


def source_topic_from_name(dlq: str) -> str | None:
    """``orders.DLT`` → ``orders``; None when the name does not say."""
    stripped = _PREFIX.sub("", _SUFFIX.sub("", dlq))
    return stripped if stripped and stripped != dlq else None
