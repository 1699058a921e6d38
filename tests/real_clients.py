"""Third-party Kafka clients for the tests, fetched from Maven Central and run for real:
a Kafka Connect standalone worker (file sink, JSON converter, a dead-letter queue) and a
spring-kafka listener whose failures DeadLetterPublishingRecoverer publishes.

The jars come from ``tests/clients/pom.xml`` through Maven into the eventscope cache (as
the broker's do), once per version of that file; the Spring program is compiled there
once per version of its source. Nothing downloads while a test runs after the first time.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from eventscope.config import load_config
from eventscope.localbrokers import HOST, cache_dir, fetch_jars, free_port
from eventscope.runner import Runner, build_collectors
from eventscope.store import Store

CLIENTS = Path(__file__).parent / "clients"
POM = CLIENTS / "pom.xml"
SPRING_SOURCE = CLIENTS / "SpringDeadLetters.java"
LOGGING = f"-Dlog4j2.configurationFile={CLIENTS / 'log4j2.properties'}"


def _digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def client_libs() -> Path:
    """The clients' jars (fetched with Maven the first time)."""
    dest = cache_dir() / f"clients-{_digest(POM)}" / "libs"
    return fetch_jars(POM, dest, dest / f"connect-runtime-{_kafka_version()}.jar", "the test clients' jars")


def _kafka_version() -> str:
    return re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text()).group(1)


def spring_classes() -> Path:
    """The compiled Spring program (compiled the first time)."""
    libs = client_libs()
    dest = cache_dir() / f"spring-{_digest(POM, SPRING_SOURCE)}"
    if (dest / "SpringDeadLetters.class").exists():
        return dest
    tmp = Path(tempfile.mkdtemp(prefix="spring.tmp.", dir=cache_dir()))
    try:
        done = subprocess.run(["javac", "-d", str(tmp), "-cp", f"{libs}/*", str(SPRING_SOURCE)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"compiling {SPRING_SOURCE.name} failed:\n{done.stderr[-3000:]}")
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def run_spring(bootstrap: str, topic: str, group: str, failures: int) -> str:
    """Run the Spring listener on ``topic`` until it has dead-lettered ``failures`` records."""
    classes = spring_classes()
    done = subprocess.run(["java", "-Xmx256m", LOGGING, "-cp", f"{classes}:{client_libs()}/*", "SpringDeadLetters",
                           bootstrap, topic, group, str(failures)], capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        errors = [line for line in (done.stdout + done.stderr).splitlines() if not line.startswith(("\tat ", "\t..."))]
        raise RuntimeError("the Spring program failed:\n" + "\n".join(errors[:60]))
    return done.stdout


class ConnectWorker:
    """A Kafka Connect standalone worker with one sink connector per ``connectors`` entry:
    ``{name: {"topic": ..., "dlq": ..., "context_headers": bool}}``. Each sinks its topic
    into a file through the JSON converter; records that do not convert go to its DLQ
    (``errors.tolerance=all``)."""

    def __init__(self, bootstrap: str, workdir: Path, connectors: dict):
        self.bootstrap, self.workdir, self.connectors = bootstrap, Path(workdir), connectors
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 120.0) -> "ConnectWorker":
        libs = client_libs()
        self.workdir.mkdir(parents=True, exist_ok=True)
        worker = self.workdir / "worker.properties"
        worker.write_text("\n".join([
            f"bootstrap.servers={self.bootstrap}",
            "key.converter=org.apache.kafka.connect.storage.StringConverter",
            "value.converter=org.apache.kafka.connect.json.JsonConverter",
            "value.converter.schemas.enable=false",
            f"offset.storage.file.filename={self.workdir / 'offsets'}",
            "offset.flush.interval.ms=1000",
            f"listeners=http://{HOST}:{self.port}",
            "plugin.discovery=only_scan",
        ]) + "\n")
        files = [str(worker)]
        for name, spec in self.connectors.items():
            path = self.workdir / f"{name}.properties"
            path.write_text("\n".join([
                f"name={name}",
                "connector.class=org.apache.kafka.connect.file.FileStreamSinkConnector",
                "tasks.max=1",
                f"topics={spec['topic']}",
                f"file={self.workdir / (name + '.out')}",
                "errors.tolerance=all",
                f"errors.deadletterqueue.topic.name={spec['dlq']}",
                "errors.deadletterqueue.topic.replication.factor=1",
                f"errors.deadletterqueue.context.headers.enable={str(spec['context_headers']).lower()}",
            ]) + "\n")
            files.append(str(path))
        log = open(self.workdir / "connect.log", "wb")
        self.proc = subprocess.Popen(
            ["java", "-Xmx384m", "-XX:TieredStopAtLevel=1", LOGGING, "-cp", f"{libs}/*",
             "org.apache.kafka.connect.cli.ConnectStandalone", *files],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Kafka Connect exited: {self.log_tail()}")
            if all(self.state(name) == "RUNNING" for name in self.connectors):
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"Kafka Connect's connectors did not start in {timeout_s:.0f} s: {self.log_tail()}")

    @property
    def url(self) -> str:
        """The worker's REST API."""
        return f"http://{HOST}:{self.port}"

    def state(self, name: str) -> str | None:
        """The state of a connector's first task, from the worker's REST API."""
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.port}/connectors/{name}/status", timeout=2) as r:
                tasks = json.load(r).get("tasks") or []
        except (OSError, ValueError):
            return None
        return tasks[0].get("state") if tasks else None

    def log_tail(self, n: int = 40) -> str:
        path = self.workdir / "connect.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


def collect_until(env: dict, until, timeout_s: float = 90.0):
    """Run eventscope's collectors for the config ``env`` describes, a run every half second,
    until ``until(store)`` holds (or ``timeout_s`` passed); returns the store."""
    store = Store(env["EVENTSCOPE_STORE"])
    runner = Runner(store, build_collectors(load_config(env=env)), interval_s=0.5)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            runner.run_once(force=True)
            if until(store):
                break
            time.sleep(0.5)
    finally:
        runner.close()
    return store
