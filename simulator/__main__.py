"""CLI: python -m eventscope.simulator --kafka HOST:PORT --redis redis://... --rabbitmq amqp://... --rate 5 --duration 30"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading

from .config import SERVICES, SimulatorConfig, parse_change, parse_slow
from .runner import SimulationError, run_simulation


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m eventscope.simulator", description=__doc__)
    p.add_argument("--kafka", metavar="HOST:PORT",
                   default=os.environ.get("EVENTSCOPE_KAFKA_BOOTSTRAP"),
                   help="Kafka bootstrap servers (env EVENTSCOPE_KAFKA_BOOTSTRAP)")
    p.add_argument("--redis", metavar="URL", default=os.environ.get("EVENTSCOPE_REDIS_URL"),
                   help="Redis URL, e.g. redis://127.0.0.1:6379/0 (env EVENTSCOPE_REDIS_URL)")
    p.add_argument("--rabbitmq", metavar="URL",
                   help="RabbitMQ AMQP URL of a user that may declare, publish and consume, "
                        "e.g. amqp://user:password@127.0.0.1:5672/%%2F")
    d = SimulatorConfig()
    p.add_argument("--rate", type=float, default=d.rate, help="orders per second")
    p.add_argument("--duration", type=float, default=d.duration,
                   help="seconds of order production; 0 = until Ctrl-C")
    p.add_argument("--payment-failure-rate", type=float, default=d.payment_failure_rate)
    p.add_argument("--inventory-failure-rate", type=float, default=d.inventory_failure_rate)
    p.add_argument("--transient-failure-rate", type=float, default=d.transient_failure_rate)
    p.add_argument("--malformed-rate", type=float, default=d.malformed_rate,
                   help="hostile messages on orders, per order")
    p.add_argument("--slow", action="append", default=[], metavar="SERVICE:SECONDS",
                   help="extra processing seconds per message (repeatable)")
    p.add_argument("--stall", action="append", default=[], metavar="SERVICE",
                   help=f"service or group that stops consuming (repeatable); services: "
                        f"{', '.join(SERVICES[1:])}")
    p.add_argument("--max-attempts", type=int, default=d.max_attempts)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--at", action="append", default=[], metavar="T:KEY=VALUE[;KEY=VALUE]",
                   help="scheduled change, e.g. 60:stall=analytics-service or "
                        "90:payment_failure_rate=0.6 (repeatable)")
    p.add_argument("--prefix", default="", help="prefix for every topic/stream and group name")
    p.add_argument("--shape", choices=("pipeline", "fanout"), default=d.shape,
                   help="fanout: orders read by three services at once, one correlation ID per customer")
    p.add_argument("--drain", type=float, default=d.drain,
                   help="seconds allowed after --duration to finish in-flight messages")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose > 1 else logging.INFO
                        if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.kafka and not args.redis and not args.rabbitmq:
        print("python -m eventscope.simulator: give --kafka, --redis and/or --rabbitmq", file=sys.stderr)
        return 2
    try:
        config = SimulatorConfig(
            rate=args.rate, duration=args.duration or None,
            payment_failure_rate=args.payment_failure_rate,
            inventory_failure_rate=args.inventory_failure_rate,
            transient_failure_rate=args.transient_failure_rate,
            malformed_rate=args.malformed_rate,
            slow=dict(parse_slow(s) for s in args.slow), stall=set(args.stall),
            max_attempts=args.max_attempts, seed=args.seed, drain=args.drain,
            schedule=[parse_change(entry) for entry in args.at], prefix=args.prefix, shape=args.shape,
        )
    except ValueError as exc:
        print(f"python -m eventscope.simulator: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()  # Ctrl-C / SIGTERM: stop at once, commit, leave the groups

    def on_signal(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt  # a second signal: give up waiting
        logging.getLogger("simulator").warning("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stats = run_simulation(config, kafka_bootstrap=args.kafka, redis_url=args.redis,
                               stop_event=stop, rabbitmq_url=args.rabbitmq)
    except SimulationError as exc:
        print(f"python -m eventscope.simulator: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(stats, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
