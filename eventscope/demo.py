"""``eventscope demo``: local brokers + the simulator + the dashboard, until Ctrl-C."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from eventscope.localbrokers import start_kafka, start_redis

ROOT = Path(__file__).resolve().parent.parent


def run_demo(port: int = 8501, store: str | None = None) -> int:
    """Start Redis, Kafka, the order pipeline on both, and the dashboard watching them."""
    from simulator.config import SimulatorConfig
    from simulator.runner import run_simulation

    work = ROOT / ".eventscope" / "demo"
    work.mkdir(parents=True, exist_ok=True)
    print("starting Redis and Kafka on loopback (Kafka takes ~10-20 s)...", file=sys.stderr)
    redis_broker = start_redis(work / "redis")
    kafka_broker = start_kafka(work / "kafka")
    stop = threading.Event()
    sim = SimulatorConfig(rate=3.0, duration=None, malformed_rate=0.01,
                          schedule=[(120, {"stall": {"analytics-service"}}),
                                    (180, {"payment_failure_rate": 0.5}),
                                    (240, {"payment_failure_rate": 0.02})])
    threads = [threading.Thread(target=run_simulation, daemon=True, args=(sim,),
                                kwargs={"kafka_bootstrap": kafka_broker.address, "stop_event": stop}),
               threading.Thread(target=run_simulation, daemon=True, args=(sim,),
                                kwargs={"redis_url": redis_broker.address, "stop_event": stop})]
    for t in threads:
        t.start()
    env = dict(os.environ, EVENTSCOPE_KAFKA_BOOTSTRAP=kafka_broker.address,
               EVENTSCOPE_REDIS_URL=redis_broker.address,
               EVENTSCOPE_STORE=store or str(work / "store"))
    print(f"Kafka {kafka_broker.address}, Redis {redis_broker.address}; "
          f"dashboard on http://127.0.0.1:{port}", file=sys.stderr)
    try:
        return subprocess.call([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
                                "--server.address", "127.0.0.1", "--server.port", str(port),
                                "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                               env=env)
    except KeyboardInterrupt:
        return 0
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        kafka_broker.stop()
        redis_broker.stop()
