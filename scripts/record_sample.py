"""Re-record sample_data/: the simulator on real local brokers, with an incident.

    .venv/bin/python scripts/record_sample.py [--duration 300] [--out sample_data]

Starts a throwaway Redis 7, Kafka 4 and RabbitMQ (eventscope.localbrokers; RabbitMQ
with the management plugin, watched by a `monitoring` user), runs the order
pipeline on each, and collects every ``--interval`` seconds with the real
collectors into a temporary store, which is then saved as the recording. The
script's incident timeline (seconds from start):

* 0 s     — normal traffic, 3 orders/s on each broker;
* 35 %    — analytics-service stalls (its lag climbs on both brokers);
* 55–70 % — a burst of payment failures (60 %) fills the payment DLQs;
* 85 %    — shipping-service slows down (lag in seconds grows, then recovers at the end).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eventscope.config import load_config  # noqa: E402
from eventscope.demo import start_rabbitmq_leg  # noqa: E402
from eventscope.localbrokers import start_kafka, start_redis  # noqa: E402
from eventscope.replay import REPLAYED, write_recording  # noqa: E402
from eventscope.runner import Runner, build_collectors  # noqa: E402
from eventscope.store import Store  # noqa: E402
from eventscope.simulator.config import SimulatorConfig  # noqa: E402
from eventscope.simulator.runner import run_simulation  # noqa: E402


def incident_schedule(duration: float) -> list[tuple[float, dict]]:
    """The scripted incident, scaled to the recording's length."""
    return [
        (0.35 * duration, {"stall": {"analytics-service"}}),
        (0.55 * duration, {"payment_failure_rate": 0.6}),
        (0.70 * duration, {"payment_failure_rate": 0.02}),
        (0.85 * duration, {"slow": {"shipping-service": 0.4}}),
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=480.0)
    p.add_argument("--interval", type=float, default=2.0)
    p.add_argument("--rate", type=float, default=3.0)
    p.add_argument("--out", default=str(ROOT / "sample_data"))
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="eventscope-record-"))
    redis_broker, kafka_broker = start_redis(work / "redis"), start_kafka(work / "kafka")
    rabbit = None
    try:
        rabbit = start_rabbitmq_leg(work / "rabbitmq")
        sim = SimulatorConfig(rate=args.rate, duration=args.duration, seed=7, malformed_rate=0.01,
                              schedule=incident_schedule(args.duration))
        stop = threading.Event()
        stats: dict = {}
        errors: list[BaseException] = []

        def simulate(name: str, **brokers) -> None:
            try:
                stats[name] = run_simulation(sim, stop_event=stop, **brokers)
            except BaseException as exc:  # reported after the join; the recording is void
                errors.append(exc)
                stop.set()

        threads = [threading.Thread(target=simulate, args=("kafka",),
                                    kwargs={"kafka_bootstrap": kafka_broker.address}),
                   threading.Thread(target=simulate, args=("redis",),
                                    kwargs={"redis_url": redis_broker.address}),
                   threading.Thread(target=simulate, args=("rabbitmq",),
                                    kwargs={"rabbitmq_url": rabbit.amqp_url})]
        for t in threads:
            t.start()
        config = load_config(env={"EVENTSCOPE_KAFKA_BOOTSTRAP": kafka_broker.address,
                                  "EVENTSCOPE_REDIS_URL": redis_broker.address, **rabbit.collector_env})
        store = Store(work / "store")
        runner = Runner(store, build_collectors(config), interval_s=args.interval)
        started = time.time()
        runner.stop_event = stop
        runner.run(duration_s=args.duration + 2)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        runner.close()
        if errors:
            raise SystemExit(f"simulation failed, nothing recorded: {errors[0]!r}")
        frames = {name: store.read(name) for name in (*REPLAYED, "health")}
        meta = {"recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                "duration_s": args.duration, "interval_s": args.interval, "rate": args.rate,
                "incident": [{"at_s": at, "change": {k: sorted(v) if isinstance(v, set) else v
                                                     for k, v in ch.items()}}
                             for at, ch in incident_schedule(args.duration)],
                "rows": {k: len(v) for k, v in frames.items()}, "simulator": stats}
        write_recording(frames, args.out, meta)
        print(f"recorded {meta['rows']} into {args.out}")
        return 0
    finally:
        if rabbit is not None:
            rabbit.broker.stop()
        kafka_broker.stop()
        redis_broker.stop()


if __name__ == "__main__":
    sys.exit(main())
