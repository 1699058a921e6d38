"""Two services traced by OpenTelemetry's own Kafka instrumentation, exporting their spans
with the SDK's OTLP JSON file exporter, one file per service.

    python otel_pipeline.py BOOTSTRAP PREFIX SPANS_DIR CHAINS

``shop`` sends an OrderPlaced to PREFIX+orders, then a ProfileUpdated to PREFIX+profiles,
both under the customer's correlation ID (one per customer, shared by its requests).
``mailer`` reads both topics, each with a consumer of its own: it takes the order, and
only then sends a MailSent to PREFIX+mails, while the profile update is already on its
topic. By time alone the profile update is the newest event the mailer read before the
mail; by the spans, the mail was sent while the order was processed. Prints one line per
chain when its mail is sent.
"""
from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from datetime import datetime, timezone

from confluent_kafka import Consumer, Producer
from opentelemetry.exporter.otlp.json.file import FileSpanExporter
from opentelemetry.instrumentation.confluent_kafka import ConfluentKafkaInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def tracer_provider(service: str, spans_dir: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(FileSpanExporter(f"{spans_dir}/{service}.jsonl"),
                                                   schedule_delay_millis=200))
    return provider


def envelope(event_type: str, service: str, correlation_id: str) -> bytes:
    return json.dumps({"event_type": event_type, "event_id": str(uuid.uuid4()), "source": service,
                       "correlation_id": correlation_id,
                       "timestamp": datetime.now(timezone.utc).isoformat()}).encode()


def take(consumer, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            return msg
    raise SystemExit("no message arrived in time")


def main(bootstrap: str, prefix: str, spans_dir: str, chains: int) -> None:
    instrumentor = ConfluentKafkaInstrumentor()
    shop_traces, mailer_traces = tracer_provider("shop", spans_dir), tracer_provider("mailer", spans_dir)
    shop = instrumentor.instrument_producer(Producer({"bootstrap.servers": bootstrap, "linger.ms": 0}),
                                            tracer_provider=shop_traces)
    mailer = instrumentor.instrument_producer(Producer({"bootstrap.servers": bootstrap, "linger.ms": 0}),
                                              tracer_provider=mailer_traces)
    consumers = {}
    for topic in ("orders", "profiles"):
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{prefix}mailer-{topic}",
                             "auto.offset.reset": "earliest"})
        consumers[topic] = instrumentor.instrument_consumer(consumer, tracer_provider=mailer_traces)
        consumers[topic].subscribe([prefix + topic])
    # the shop is a service of its own: its own thread, so the mailer's current process span
    # (the instrumentation keeps it in the polling thread's context) is not its context
    sent, done = threading.Semaphore(0), threading.Semaphore(0)

    def shop_requests():
        for i in range(chains):
            customer = f"customer-{i % 3}"
            shop.produce(prefix + "orders", envelope("OrderPlaced", "shop", customer))
            shop.flush(10)
            time.sleep(0.02)
            shop.produce(prefix + "profiles", envelope("ProfileUpdated", "shop", customer))
            shop.flush(10)
            sent.release()
            done.acquire()
            time.sleep(0.3)  # requests of one customer apart, as a shop's are

    threading.Thread(target=shop_requests, daemon=True).start()
    for i in range(chains):
        sent.acquire()
        time.sleep(0.02)
        order = take(consumers["orders"])  # its process span is current until the next poll
        customer = json.loads(order.value())["correlation_id"]
        mailer.produce(prefix + "mails", envelope("MailSent", "mailer", customer))
        mailer.flush(10)
        take(consumers["profiles"])
        print(f"chain {i} {customer}", flush=True)
        done.release()
    for consumer in consumers.values():
        consumer.poll(0.1)  # ends the last process span
        consumer.close()
    shop_traces.shutdown()
    mailer_traces.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
