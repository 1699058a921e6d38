"""``eventscope demo``: local brokers + the simulator + the dashboard, until Ctrl-C,
SIGTERM or SIGHUP."""
from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from eventscope.launch import dashboard_command
from eventscope.localbrokers import (RABBITMQ_ADMIN, RABBITMQ_SERVER, BrokerStartError, LocalBroker,
                                     add_rabbitmq_user, start_kafka, start_rabbitmq, start_redis)
from eventscope.simulator.rabbitmq_bus import AUDIT_SUFFIX, STREAM_DLQ_GROUP
from eventscope.simulator.config import SimulatorConfig
from eventscope.simulator.runner import run_simulation

#: signals that stop the demo as Ctrl-C does: SIGTERM (systemd, ``timeout``, container
#: runtimes) and SIGHUP (its terminal closed). The brokers run in sessions of their own, so
#: none of these reaches them: the demo stops them itself.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


#: the collector's identity on the demo's RabbitMQ: the `monitoring` tag, and over AMQP only
#: `read` on the stream DLQ (reading a stream from an offset removes nothing)
MONITORING_USER = "eventscope"


def rabbitmq_installed() -> bool:
    """Whether Debian's rabbitmq-server (and its epmd) is there to start."""
    return Path(RABBITMQ_SERVER).exists() and shutil.which("epmd") is not None


@dataclass
class RabbitMQLeg:
    """A local RabbitMQ for the simulator's RabbitMQ leg, watched as in production."""

    broker: LocalBroker
    amqp_url: str  # the simulator's: the node's administrator, vhost /
    collector_env: dict  # EVENTSCOPE_RABBITMQ_*: the monitoring user, the stream DLQ's reader


def start_rabbitmq_leg(workdir: Path, prefix: str = "") -> RabbitMQLeg:
    """Start a RabbitMQ node with a monitoring user (random password) that may read only the
    simulator's stream DLQ, for the demo and ``scripts/record_sample.py``."""
    broker = start_rabbitmq(workdir)
    try:
        password = secrets.token_urlsafe(18)
        stream = re.escape(prefix + STREAM_DLQ_GROUP + AUDIT_SUFFIX)
        add_rabbitmq_user(broker, MONITORING_USER, password,
                          permissions={"configure": "^$", "write": "^$", "read": f"^{stream}$"})
    except BaseException:
        broker.stop()
        raise
    host, port = broker.amqp_address.rsplit(":", 1)
    admin, admin_password = (quote(part, safe="") for part in RABBITMQ_ADMIN)
    return RabbitMQLeg(broker, f"amqp://{admin}:{admin_password}@{host}:{port}/%2F",
                       {"EVENTSCOPE_RABBITMQ_URL": broker.address,
                        "EVENTSCOPE_RABBITMQ_USERNAME": MONITORING_USER,
                        "EVENTSCOPE_RABBITMQ_PASSWORD": password,
                        "EVENTSCOPE_RABBITMQ_AMQP_ADDRESS": broker.amqp_address})


def run_demo(port: int = 8501, store: str | None = None) -> int:
    """Start Redis, Kafka (and RabbitMQ when rabbitmq-server is installed), the order pipeline
    on each, and the dashboard watching them.

    Runs until Ctrl-C, SIGTERM (how systemd, ``timeout`` and container runtimes stop a
    program) or SIGHUP (its terminal closed), also while the brokers are still starting;
    any of them stops the dashboard and the brokers, which run in sessions of their own.
    """
    work = Path(".eventscope", "demo").resolve()
    work.mkdir(parents=True, exist_ok=True)
    previous = {signum: signal.signal(signum, _raise_interrupt) for signum in STOP_SIGNALS}
    stop = threading.Event()
    threads: list[threading.Thread] = []
    brokers = []
    dashboard = None
    try:
        print("starting Redis and Kafka on loopback (Kafka takes ~10-20 s)...", file=sys.stderr)
        brokers.append(redis_broker := start_redis(work / "redis"))
        brokers.append(kafka_broker := start_kafka(work / "kafka"))
        rabbit = None
        if rabbitmq_installed():
            print("starting RabbitMQ on loopback...", file=sys.stderr)
            rabbit = start_rabbitmq_leg(work / "rabbitmq")
            brokers.append(rabbit.broker)
        else:
            print("rabbitmq-server is not installed: the demo runs without RabbitMQ", file=sys.stderr)
        sim = SimulatorConfig(rate=3.0, duration=None, malformed_rate=0.01,
                              schedule=[(120, {"stall": {"analytics-service"}}),
                                        (180, {"payment_failure_rate": 0.5}),
                                        (240, {"payment_failure_rate": 0.02})])
        targets = [{"kafka_bootstrap": kafka_broker.address}, {"redis_url": redis_broker.address}]
        if rabbit is not None:
            targets.append({"rabbitmq_url": rabbit.amqp_url})
        for target in targets:
            threads.append(threading.Thread(target=run_simulation, daemon=True, args=(sim,),
                                            kwargs={**target, "stop_event": stop}))
            threads[-1].start()
        env = dict(os.environ, EVENTSCOPE_KAFKA_BOOTSTRAP=kafka_broker.address,
                   EVENTSCOPE_REDIS_URL=redis_broker.address,
                   EVENTSCOPE_STORE=store or str(work / "store"), **(rabbit.collector_env if rabbit else {}))
        print(f"Kafka {kafka_broker.address}, Redis {redis_broker.address}"
              + (f", RabbitMQ {rabbit.broker.address}" if rabbit else "") + "; "
              f"dashboard on http://127.0.0.1:{port}", file=sys.stderr)
        dashboard = subprocess.Popen(dashboard_command(port), env=env)
        return dashboard.wait()
    except BrokerStartError as exc:
        print(f"eventscope demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        # a second signal (or Ctrl-C) must not cut the cleanup short: it is bounded in time
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        if dashboard is not None and dashboard.poll() is None:
            dashboard.terminate()
            try:
                dashboard.wait(timeout=10)
            except subprocess.TimeoutExpired:
                dashboard.kill()
        stop.set()
        for t in threads:
            t.join(timeout=10)
        for broker in reversed(brokers):
            broker.stop()
        signal.signal(signal.SIGINT, previous_int)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _raise_interrupt(signum, frame) -> None:
    """SIGTERM and SIGHUP handler: stop as Ctrl-C does, through the cleanup in :func:`run_demo`
    (a broker still starting is stopped by :mod:`eventscope.localbrokers` itself)."""
    raise KeyboardInterrupt
