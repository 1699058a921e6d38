"""``eventscope demo`` stops everything it started on SIGTERM and SIGHUP, as on Ctrl-C.

Its Redis, Kafka and RabbitMQ run in sessions of their own (so that Ctrl-C in the terminal does not
reach them), so no signal sent to the demo reaches them either: the demo must stop them
itself, and the Streamlit server it runs. Each test runs the real command in a scratch
directory, sends the signal to that one process and watches the processes it started.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from eventscope.localbrokers import free_port
from programs import require_program

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parent.parent
#: what each role's command line holds (redis-server rewrites its own to "redis-server HOST:PORT")
MARKERS = {"kafka": b"kafka.Kafka", "redis": b"redis-server", "streamlit": b"streamlit", "rabbitmq": b"beam.smp"}


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _started_by(demo: subprocess.Popen, workdir: Path, seen: dict[str, int]) -> dict[str, int]:
    """The demo's live processes by role: ``kafka`` (the JVM, whose config file lies in the
    demo's work dir), ``rabbitmq`` (the Erlang VM, whose home lies there), ``redis`` (its
    pidfile there) and ``streamlit`` (the demo's child).
    Each one found is also added to ``seen``, for the test's own cleanup."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if b"kafka.Kafka" in cmdline and str(workdir).encode() in cmdline:
            found["kafka"] = int(proc.name)
        elif b"beam.smp" in cmdline and str(workdir).encode() in cmdline:  # RabbitMQ's Erlang VM (-home)
            found["rabbitmq"] = int(proc.name)
        elif ppid == demo.pid and b"streamlit" in cmdline:
            found["streamlit"] = int(proc.name)
    try:
        redis_pid = int((workdir / "redis" / "redis.pid").read_text())
        if _running(redis_pid):
            found["redis"] = redis_pid
    except (OSError, ValueError):
        pass
    found = {role: pid for role, pid in found.items() if _running(pid)}
    seen.update(found)
    return found


def _when(roles: set[str], found: dict[str, int]) -> dict[str, int] | None:
    """``found`` once it holds every one of ``roles``."""
    return found if roles <= set(found) else None


def _start_demo(tmp_path: Path) -> tuple[subprocess.Popen, Path, int, Path]:
    require_program("redis-server")
    require_program("java")
    require_program("rabbitmq-server")
    port, log = free_port(), tmp_path / "demo.log"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT))  # this checkout's eventscope, from another directory
    for name in ("EVENTSCOPE_KAFKA_BOOTSTRAP", "EVENTSCOPE_REDIS_URL", "EVENTSCOPE_CONFIG", "EVENTSCOPE_STORE"):
        env.pop(name, None)
    demo = subprocess.Popen([sys.executable, "-m", "eventscope", "demo", "--port", str(port)], cwd=cwd,
                            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    return demo, cwd / ".eventscope" / "demo", port, log


def _wait_for(condition, demo: subprocess.Popen, log: Path, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert demo.poll() is None, f"the demo exited early:\n{log.read_text()}"
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what} after {timeout:.0f} s:\n{log.read_text()}")


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as answer:
            return answer.read() == b"ok"
    except OSError:
        return False


def _stops_everything(demo: subprocess.Popen, started: dict[str, int], signum: int, log: Path) -> None:
    """Send ``signum`` to the demo alone; the demo exits 0 and every process it started is gone."""
    demo.send_signal(signum)
    try:
        assert demo.wait(timeout=60) == 0, log.read_text()
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the demo outlived {signal.Signals(signum).name} by 60 s:\n{log.read_text()}")
    deadline = time.monotonic() + 10  # demo exits after its cleanup; allow a moment for reaping
    while time.monotonic() < deadline and any(_running(pid) for pid in started.values()):
        time.sleep(0.1)
    left = {role: pid for role, pid in started.items() if _running(pid)}
    assert left == {}, f"still running after the demo's {signal.Signals(signum).name}: {left}"


def _cleanup(demo: subprocess.Popen, workdir: Path, seen: dict[str, int]) -> None:
    """Kill whatever a failed test left: the demo, and each process of it ever seen (an
    orphan of a demo that died no longer has the demo as its parent)."""
    if demo.poll() is None:
        demo.kill()
        demo.wait()
    for role, pid in {**seen, **_started_by(demo, workdir, seen)}.items():
        try:
            if _running(pid) and MARKERS[role] in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_stops_the_brokers_and_the_dashboard(tmp_path, signum):
    demo, workdir, port, log = _start_demo(tmp_path)
    seen: dict[str, int] = {}
    try:
        _wait_for(lambda: _healthy(port), demo, log, 150, "the dashboard is not healthy")
        started = _wait_for(lambda: _when({"redis", "kafka", "rabbitmq", "streamlit"},
                                          _started_by(demo, workdir, seen)),
                            demo, log, 10, "the demo's Redis, Kafka, RabbitMQ and Streamlit are not all running")
        assert "Kafka 127.0.0.1:" in log.read_text() and "RabbitMQ http://127.0.0.1:" in log.read_text()
        _stops_everything(demo, started, signum, log)
    finally:
        _cleanup(demo, workdir, seen)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_while_kafka_starts_stops_what_has_started(tmp_path, signum):
    """A signal in the 5-20 s Kafka takes to come up: start_kafka has not returned the broker
    yet, so the demo holds no handle on it; the JVM must not be left behind."""
    demo, workdir, port, log = _start_demo(tmp_path)
    seen: dict[str, int] = {}
    try:
        started = _wait_for(lambda: _when({"redis", "kafka"}, _started_by(demo, workdir, seen)),
                            demo, log, 120, "the demo's Redis and Kafka JVM did not start")
        assert "Kafka 127.0.0.1:" not in log.read_text(), "Kafka was already up: too late to test"
        assert "streamlit" not in started
        _stops_everything(demo, started, signum, log)
        assert not _healthy(port)
    finally:
        _cleanup(demo, workdir, seen)
