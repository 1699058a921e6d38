"""Start and stop throwaway Redis, Kafka and RabbitMQ brokers on free loopback ports."""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from eventscope import resources

# Maven resolves the broker and its runtime dependencies from this POM (shipped in the package).
KAFKA_POM = Path(next(iter(resources.__path__))) / "kafka-pom.xml"
HOST = "127.0.0.1"
READY_TOPIC = "__eventscope_ready"
# What each kind's command line contains, so `stop` never signals a recycled PID.
CMDLINE_MARKERS = {"redis": b"redis-server", "kafka": b"kafka.Kafka", "rabbitmq": b"rabbitmq-server",
                   "epmd": b"epmd"}
# Only a lost race for a port is worth a second try; other failures repeat.
PORT_CLASH = "Address already in use"
START_ATTEMPTS = 3


class BrokerStartError(RuntimeError):
    """A local broker did not come up; the message carries its log tail."""


def free_ports(count: int) -> list[int]:
    """Return `count` distinct loopback ports that were free a moment ago."""
    socks = []
    try:
        # Hold every socket open until all are bound, so the ports differ.
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def free_port() -> int:
    """Return a loopback port that was free a moment ago."""
    return free_ports(1)[0]


def _tail(path: Path, n: int) -> str:
    """Return the last `n` lines of a text file, or a note if it is absent."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(lines[-n:])


def _alive(pid: int) -> bool:
    """Tell whether `pid` still runs, reaping it if it is our exited child."""
    try:
        # A dead child stays a zombie (and answers signal 0) until reaped.
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child, e.g. `stop` from another process
        return _exists(pid)
    return reaped == 0


def _exists(pid: int) -> bool:
    """Tell whether a live (non-zombie) process has this PID."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    # An orphan's zombie lingers until PID 1 reaps it, which some inits never do.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # gone, unless there is no procfs
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _is_kind(pid: int, kind: str) -> bool:
    """Tell whether `pid` looks like a broker of `kind` (True if unknowable)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no procfs: trust the PID
    return CMDLINE_MARKERS[kind] in cmdline


@dataclass
class LocalBroker:
    """A broker process we started, and where to reach it."""

    kind: str
    address: str
    pid: int
    workdir: Path
    log_path: Path
    # Kafka started with ``sasl_users``: the SASL_PLAINTEXT (PLAIN) listener's host:port
    sasl_address: str | None = None
    command: list[str] | None = None  # what started it: restart() runs it again
    # RabbitMQ: ``address`` is the management API's URL; this is the AMQP listener's host:port
    amqp_address: str | None = None
    # RabbitMQ: the node's private epmd (Erlang's port mapper), stopped with the node
    epmd_pid: int | None = None
    # Kafka started with ``secure``: the SASL_SSL (SCRAM-SHA-512), SSL (mutual TLS) and
    # SASL_PLAINTEXT (OAUTHBEARER, unsecured JWTs) listeners' host:port, and the directory of
    # the certificates (:class:`TlsFiles`)
    scram_address: str | None = None
    mtls_address: str | None = None
    oauth_address: str | None = None
    tls_dir: Path | None = None

    def kill(self) -> None:
        """SIGKILL the broker (an outage: no clean shutdown) and wait until it is gone."""
        if _alive(self.pid) and _is_kind(self.pid, self.kind):
            self._signal(signal.SIGKILL)
            while _alive(self.pid):
                time.sleep(0.05)
        self._stop_epmd()

    def _signal(self, signum: int) -> None:
        """Send ``signum`` to the broker: to its whole process group for RabbitMQ, whose
        ``rabbitmq-server`` script runs the Erlang VM as a child (a SIGKILL of the script
        alone would leave the VM running)."""
        if self.kind == "rabbitmq":
            try:
                os.killpg(self.pid, signum)  # started in its own session: group id = pid
                return
            except ProcessLookupError:
                pass
        os.kill(self.pid, signum)

    def _stop_epmd(self) -> None:
        """Stop the node's private epmd, if we started one and it still runs."""
        if self.epmd_pid is not None and _alive(self.epmd_pid) and _is_kind(self.epmd_pid, "epmd"):
            os.kill(self.epmd_pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while _alive(self.epmd_pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(self.epmd_pid):
                os.kill(self.epmd_pid, signal.SIGKILL)

    def restart(self, timeout: float = 90.0) -> None:
        """Start the broker again after :meth:`stop` or :meth:`kill`: the same ports and the
        same data directory (Kafka keeps its topics and offsets; this Redis keeps nothing)."""
        if self.command is None:
            raise BrokerStartError(f"{self.kind} at {self.address} was not started here")
        if _alive(self.pid) and _is_kind(self.pid, self.kind):
            raise BrokerStartError(f"{self.kind} at {self.address} is still running")
        if self.kind == "rabbitmq":
            raise BrokerStartError("a RabbitMQ node is not restarted: start a new one")
        self.pid = _spawn(self.command, self.log_path, self.workdir)
        _wait_ready(self, _kafka_ready if self.kind == "kafka" else _redis_pings, timeout)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the broker, then SIGKILL it if it outlives `timeout` seconds."""
        try:
            if not _alive(self.pid) or not _is_kind(self.pid, self.kind):
                return
            self._signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if not _alive(self.pid):
                    return
                time.sleep(0.05)
            self._signal(signal.SIGKILL)
            while _alive(self.pid):
                time.sleep(0.05)
        finally:
            if self.kind == "rabbitmq":
                _reap_group(self.pid)
            self._stop_epmd()

    def log_tail(self, n: int = 40) -> str:
        """Return the last `n` lines of the broker log."""
        return _tail(self.log_path, n)

    def to_json(self) -> dict:
        """Return a JSON-ready dict of the fields."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


def _spawn(cmd: list[str], log_path: Path, cwd: Path, env: dict[str, str] | None = None) -> int:
    """Start `cmd` detached in its own session (with `env`, else ours), output appended to `log_path`."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the caller's terminal must not reach it
        )
    return proc.pid


def _wait_ready(broker: LocalBroker, probe, timeout: float) -> None:
    """Poll `probe(broker)` until it returns True; on failure kill and raise.

    Interrupted meanwhile (Ctrl-C, or a signal handler raising, as ``eventscope demo``'s
    SIGTERM handler does), it stops the broker before the interruption goes on: the caller
    never got it, and in its own session it would outlive everything."""
    deadline = time.monotonic() + timeout
    problem = f"not ready after {timeout:.0f} s"
    try:
        while time.monotonic() < deadline:
            if not _alive(broker.pid):
                problem = "process exited during start"
                break
            try:
                if probe(broker):
                    return
            except Exception as exc:  # any client error just means "not yet"
                problem = f"not ready after {timeout:.0f} s (last probe error: {exc!r})"
            time.sleep(0.1)
    except BaseException:
        broker.stop(timeout=5)
        raise
    broker.stop(timeout=5)
    raise BrokerStartError(
        f"{broker.kind} at {broker.address} failed to start: {problem}\n"
        f"--- last lines of {broker.log_path} ---\n{broker.log_tail()}"
    )


def _retry_port_clash(start_once):
    """Call `start_once()`, again with new ports if someone took ours meanwhile."""
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            return start_once()
        except BrokerStartError as exc:
            if PORT_CLASH not in str(exc) or attempt == START_ATTEMPTS:
                raise


# --- Redis -----------------------------------------------------------------

def _redis_pings(broker: LocalBroker) -> bool:
    """Tell whether the Redis at `broker.address` answers PING."""
    import redis  # imported late: the CLI for Kafka alone should not need it

    client = redis.Redis.from_url(broker.address, socket_connect_timeout=0.5, socket_timeout=1)
    try:
        return bool(client.ping())
    finally:
        client.close()


def start_redis(workdir: Path | str, timeout: float = 15.0, persistent: bool = False) -> LocalBroker:
    """Start a redis-server on a free loopback port under `workdir`: non-persistent, or with
    ``persistent`` an append-only file synced on every write (what it acknowledged survives
    SIGKILL and :meth:`LocalBroker.restart`)."""
    workdir = Path(workdir).resolve()
    data_dir = workdir / "redis-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    server = shutil.which("redis-server")
    if server is None:
        raise BrokerStartError("redis-server not found: apt-get install -y redis-server "
                               "(or make system-deps)")

    def start_once() -> LocalBroker:
        port = free_port()
        log_path = workdir / "redis.log"
        # No config file, so Debian's /etc/redis/redis.conf never applies.
        cmd = [
            server, "--bind", HOST, "--port", str(port), "--save", "",
            *(("--appendonly", "yes", "--appendfsync", "always") if persistent else ("--appendonly", "no")),
            "--dir", str(data_dir), "--pidfile", str(workdir / "redis.pid"),
            "--daemonize", "no", "--logfile", "",
        ]
        pid = _spawn(cmd, log_path, data_dir)
        broker = LocalBroker("redis", f"redis://{HOST}:{port}/0", pid, workdir, log_path, command=cmd)
        _wait_ready(broker, _redis_pings, timeout)
        return broker

    return _retry_port_clash(start_once)


# --- Kafka -----------------------------------------------------------------

def kafka_version() -> str:
    """Return the Kafka version pinned in the packaged POM."""
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", KAFKA_POM.read_text())
    if match is None:
        raise BrokerStartError(f"no <kafka.version> in {KAFKA_POM}")
    return match.group(1)


def cache_dir() -> Path:
    """Where fetched broker jars live: $EVENTSCOPE_CACHE_DIR, else the user's cache directory."""
    if os.environ.get("EVENTSCOPE_CACHE_DIR"):
        return Path(os.environ["EVENTSCOPE_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "eventscope"


def kafka_libs() -> Path:
    """Return the Kafka jar directory, fetching the jars from Maven Central the first time."""
    version = kafka_version()
    dest = cache_dir() / f"kafka-{version}" / "libs"
    broker_jar = dest / f"kafka_2.13-{version}.jar"
    # The directory only ever appears by the rename below, so the broker jar being there
    # means the whole set is.
    if broker_jar.exists():
        return dest
    for tool, package in (("mvn", "maven"), ("java", "openjdk-17-jre-headless")):
        if shutil.which(tool) is None:
            raise BrokerStartError(f"{tool} not found, needed to fetch and run Kafka: "
                                   f"apt-get install -y {package} (or make system-deps)")
    return fetch_jars(KAFKA_POM, dest, broker_jar, f"the Kafka {version} broker jars")


def fetch_jars(pom: Path, dest: Path, marker: Path, what: str) -> Path:
    """Copy ``pom``'s runtime dependencies from Maven Central into ``dest`` once; ``marker``
    (a file inside ``dest``) existing means the whole set is there."""
    if marker.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Two runs may fetch at once: serialize, so neither replaces jars the other's process loads.
    with open(dest.parent / "install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return dest
        print(f"fetching {what} from Maven Central into {dest}...", file=sys.stderr)
        # Fetch into a sibling temp dir and rename, so an interrupted fetch never looks complete.
        tmp = Path(tempfile.mkdtemp(prefix="libs.tmp.", dir=dest.parent))
        try:
            fetched = subprocess.run(
                ["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
                 "-DincludeScope=runtime", f"-DoutputDirectory={tmp}"],
                capture_output=True, text=True)
            if fetched.returncode != 0:
                raise BrokerStartError(f"fetching {what} with Maven failed:\n"
                                       f"{_last_lines(fetched.stdout + fetched.stderr, 30)}")
            shutil.rmtree(dest, ignore_errors=True)
            tmp.rename(dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _last_lines(text: str, n: int) -> str:
    return "\n".join(text.splitlines()[-n:])


def _cluster_id() -> str:
    """Return a random cluster id in Kafka's Uuid format (url-safe base64)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):  # a leading dash would read as a CLI option
            return text


@dataclass(frozen=True)
class TlsFiles:
    """The certificates of a Kafka started with ``secure`` (PEM files in ``dir``): a CA, the
    broker's certificate (for 127.0.0.1, by IP subject alternative name) and key, a client's
    certificate (CN :data:`MTLS_CLIENT_CN`) and key (encrypted with :data:`CLIENT_KEY_PASSWORD`)
    signed by that CA, and a second CA that signed neither (a CA a client must not trust)."""

    dir: Path

    ca = property(lambda self: self.dir / "ca.pem")
    broker_keystore = property(lambda self: self.dir / "broker-keystore.pem")  # key + certificate
    client_cert = property(lambda self: self.dir / "client.pem")
    client_key = property(lambda self: self.dir / "client-key.pem")
    other_ca = property(lambda self: self.dir / "other-ca.pem")


MTLS_CLIENT_CN = "eventscope-mtls"
CLIENT_KEY_PASSWORD = "eventscope-client-key-secret"
# mutual TLS: a client certificate's principal is its CN (User:eventscope-mtls)
MTLS_PRINCIPAL_RULES = "RULE:^CN=([^,]+)(,.*)?$/$1/,DEFAULT"
OAUTH_UNSECURED_VALIDATOR = ("org.apache.kafka.common.security.oauthbearer.internals.unsecured."
                             "OAuthBearerUnsecuredValidatorCallbackHandler")


def make_tls_files(directory: Path | str) -> TlsFiles:
    """Make the certificates of :class:`TlsFiles` in ``directory`` with openssl (EC keys: fast),
    unless they are there already."""
    files = TlsFiles(Path(directory))
    if files.other_ca.exists():  # written last: the set is complete
        return files
    if shutil.which("openssl") is None:
        raise BrokerStartError("openssl not found: apt-get install -y openssl (or make system-deps)")
    files.dir.mkdir(parents=True, exist_ok=True)
    d = files.dir

    def openssl(*args: str) -> None:
        done = subprocess.run(["openssl", *args], cwd=d, capture_output=True, text=True)
        if done.returncode != 0:
            raise BrokerStartError(f"openssl {args[0]} failed: {done.stderr.strip()}")

    def key(name: str) -> None:
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name)

    def signed(name: str, subject: str, ca: str, extensions: str) -> None:
        key(f"{name}-plain-key.pem")
        (d / f"{name}.ext").write_text(extensions)
        openssl("req", "-new", "-key", f"{name}-plain-key.pem", "-subj", subject, "-out", f"{name}.csr")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}-key.pem",
                "-CAcreateserial", "-days", "30", "-sha256", "-extfile", f"{name}.ext", "-out", f"{name}.pem")

    for ca, cn in (("ca", "eventscope test CA"), ("other-ca", "eventscope untrusted CA")):
        key(f"{ca}-key.pem")
        openssl("req", "-x509", "-new", "-key", f"{ca}-key.pem", "-subj", f"/CN={cn}", "-days", "30",
                "-sha256", "-out", f"{ca}.tmp")
        if ca == "ca":
            (d / "ca.tmp").rename(files.ca)
    signed("broker", f"/CN={HOST}", "ca", f"subjectAltName=IP:{HOST},DNS:localhost\n"
           "extendedKeyUsage=serverAuth,clientAuth\n")
    files.broker_keystore.write_text((d / "broker-plain-key.pem").read_text() + (d / "broker.pem").read_text())
    signed("client", f"/O=eventscope/CN={MTLS_CLIENT_CN}", "ca", "extendedKeyUsage=clientAuth\n")
    openssl("pkcs8", "-topk8", "-in", "client-plain-key.pem", "-v2", "aes-256-cbc",
            "-passout", f"pass:{CLIENT_KEY_PASSWORD}", "-out", files.client_key.name)
    (d / "other-ca.tmp").rename(files.other_ca)
    return files


def _server_properties(port: int, controller_port: int, data_dir: Path,
                       sasl_port: int | None = None, sasl_users: dict[str, str] | None = None,
                       secure_ports: tuple[int, int, int] | None = None, tls: TlsFiles | None = None) -> str:
    """Return server.properties for a single-node KRaft broker+controller.

    With ``sasl_port`` and ``sasl_users`` (name -> password), a SASL_PLAINTEXT listener
    (mechanism PLAIN) takes those users, and the broker authorizes every request with
    KRaft's ``StandardAuthorizer``: a SASL user may do only what ACLs grant it, while the
    PLAINTEXT and controller listeners (principal ``User:ANONYMOUS``) stay unrestricted.

    With ``secure_ports`` (and ``tls``, and the SASL listener) three more listeners, under
    the same authorizer: SASL_SSL with SCRAM-SHA-512 (its users are made when the storage
    is formatted), SSL that requires a client certificate signed by the CA (principal: the
    certificate's CN), and SASL_PLAINTEXT with OAUTHBEARER, whose tokens Kafka's unsecured
    JWT validator accepts (principal: the token's ``sub``; for tests only).
    """
    settings = {
        "process.roles": "broker,controller",
        "node.id": 1,
        "controller.quorum.voters": f"1@{HOST}:{controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": data_dir,
        # One node: every internal topic must fit on it.
        "offsets.topic.replication.factor": 1,
        "offsets.topic.num.partitions": 1,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "share.coordinator.state.topic.replication.factor": 1,
        "share.coordinator.state.topic.min.isr": 1,
        "min.insync.replicas": 1,
        "num.partitions": 1,
        "default.replication.factor": 1,
        # Tests create their topics explicitly and want groups to start at once.
        "auto.create.topics.enable": "false",
        "group.initial.rebalance.delay.ms": 0,
        # Throwaway data: keep the disk footprint small.
        "log.segment.bytes": 16 * 1024 * 1024,
        "log.retention.hours": 1,
        "num.network.threads": 2,
        "num.io.threads": 2,
    }
    if sasl_port is not None:
        users = "".join(f' user_{name}="{password}"' for name, password in (sasl_users or {}).items())
        settings.update({
            "listeners": settings["listeners"] + f",SASL://{HOST}:{sasl_port}",
            "advertised.listeners": settings["advertised.listeners"] + f",SASL://{HOST}:{sasl_port}",
            "listener.security.protocol.map": settings["listener.security.protocol.map"]
            + ",SASL:SASL_PLAINTEXT",
            "sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl.plain.sasl.jaas.config":
                f"org.apache.kafka.common.security.plain.PlainLoginModule required{users};",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            # The PLAINTEXT and controller listeners authenticate nobody: their principal,
            # ANONYMOUS (the broker itself, the controller, test setup), may do anything.
            "super.users": "User:ANONYMOUS",
            "allow.everyone.if.no.acl.found": "false",
        })
    if secure_ports is not None and sasl_port is not None and tls is not None:
        scram, mtls, oauth = secure_ports
        added = f",SCRAM://{HOST}:{scram},MTLS://{HOST}:{mtls},OAUTH://{HOST}:{oauth}"
        settings.update({
            "listeners": settings["listeners"] + added,
            "advertised.listeners": settings["advertised.listeners"] + added,
            "listener.security.protocol.map": settings["listener.security.protocol.map"]
            + ",SCRAM:SASL_SSL,MTLS:SSL,OAUTH:SASL_PLAINTEXT",
            "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-512,OAUTHBEARER",
            "listener.name.scram.sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "listener.name.scram.scram-sha-512.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "listener.name.oauth.sasl.enabled.mechanisms": "OAUTHBEARER",
            "listener.name.oauth.oauthbearer.sasl.jaas.config":
                "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
                'unsecuredLoginStringClaim_sub="broker";',
            "listener.name.oauth.oauthbearer.sasl.server.callback.handler.class": OAUTH_UNSECURED_VALIDATOR,
            # PEM files as they are: no keytool (and no JVM start) to make the stores
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": tls.broker_keystore,
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": tls.ca,
            "listener.name.mtls.ssl.client.auth": "required",
            "ssl.principal.mapping.rules": MTLS_PRINCIPAL_RULES,
        })
    return "".join(f"{key}={value}\n" for key, value in settings.items())


# Console only: stdout is redirected to kafka.log, so JVM errors and log4j share one file.
LOG4J2_PROPERTIES = """\
status = warn
# Log until the JVM exits; the default hook stops log4j early and then warns about it.
shutdownHook = disable
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRefs = stdout
rootLogger.appenderRef.stdout.ref = STDOUT
# The one INFO line worth keeping: "Kafka Server started".
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = INFO
# With an authorizer (start_kafka's sasl_users), every denied request: "Principal = ... is
# Denied operation = ...". Allowed ones are logged at DEBUG, so stay out.
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = INFO
"""


def _kafka_ready(broker: LocalBroker) -> bool:
    """Tell whether the broker can create a topic and elect its leader."""
    host, port = broker.address.rsplit(":", 1)
    # Until the socket listens, skip the client: librdkafka would log each refusal.
    with socket.socket() as sock:
        sock.settimeout(0.5)
        if sock.connect_ex((host, int(port))) != 0:
            return False
    # log_level 3: errors surface as exceptions; its info chatter would only clutter stderr.
    admin = AdminClient({"bootstrap.servers": broker.address, "log_level": 3})
    future = admin.create_topics([NewTopic(READY_TOPIC, 1, 1)], operation_timeout=5)[READY_TOPIC]
    try:
        future.result(timeout=10)
    except KafkaException as exc:
        # A previous probe may have created it before timing out.
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise
    topic = admin.list_topics(READY_TOPIC, timeout=5).topics[READY_TOPIC]
    if topic.error is not None or not topic.partitions or topic.partitions[0].leader < 0:
        return False
    admin.delete_topics([READY_TOPIC], operation_timeout=5)[READY_TOPIC].result(timeout=10)
    return True


def _java(libs: Path, log4j: Path, *args: str) -> list[str]:
    """Return a java command line with the Kafka jars and our log4j config."""
    # C1 only: measured ~1 s faster start, and a test broker never runs long enough to need C2.
    return ["java", "-XX:TieredStopAtLevel=1", "-cp", f"{libs}/*",
            f"-Dlog4j2.configurationFile={log4j}", "-Djava.awt.headless=true", *args]


def start_kafka(workdir: Path | str, timeout: float = 90.0,
                sasl_users: dict[str, str] | None = None, scram_users: dict[str, str] | None = None,
                secure: bool = False) -> LocalBroker:
    """Start a fresh single-node KRaft Kafka on free loopback ports under `workdir`.

    With ``sasl_users`` (name -> password) the broker also listens for SASL/PLAIN clients
    (``LocalBroker.sasl_address``) and enforces ACLs on them (see :func:`_server_properties`);
    ``address`` stays the unrestricted PLAINTEXT listener. With ``secure`` too, it listens for
    SASL_SSL SCRAM-SHA-512 clients (``scram_address``; ``scram_users``, name -> password),
    mutual-TLS clients (``mtls_address``) and OAUTHBEARER clients (``oauth_address``), with
    the certificates of :func:`make_tls_files` in ``tls_dir``."""
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    libs = kafka_libs()
    if shutil.which("java") is None:
        raise BrokerStartError("java not found: apt-get install -y openjdk-17-jre-headless")
    log4j = workdir / "kafka-log4j2.properties"
    log4j.write_text(LOG4J2_PROPERTIES)

    secure_now = secure and sasl_users is not None
    tls = make_tls_files(workdir / "tls") if secure_now else None

    def start_once() -> LocalBroker:
        port, controller_port, sasl_port, *secure_ports = free_ports(6)
        if sasl_users is None:
            sasl_port = None
        data_dir = workdir / "kafka-data"
        shutil.rmtree(data_dir, ignore_errors=True)  # each start is a new cluster
        config = workdir / "kafka-server.properties"
        config.write_text(_server_properties(port, controller_port, data_dir, sasl_port, sasl_users,
                                             tuple(secure_ports) if secure_now else None, tls))
        log_path = workdir / "kafka.log"
        # SCRAM credentials go into the metadata log as the storage is formatted
        scram = [arg for name, password in ((scram_users or {}).items() if secure_now else ())
                 for arg in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]")]
        # With a static controller.quorum.voters, format takes no --standalone.
        fmt = subprocess.run(
            _java(libs, log4j, "kafka.tools.StorageTool", "format",
                  "-t", _cluster_id(), "-c", str(config), *scram),
            capture_output=True, text=True,
        )
        if fmt.returncode != 0:
            raise BrokerStartError(f"Kafka storage format failed:\n{fmt.stdout}{fmt.stderr}")
        cmd = _java(libs, log4j, "-Xmx512m", "-Xms256m", "kafka.Kafka", str(config))
        pid = _spawn(cmd, log_path, workdir)
        scram_port, mtls_port, oauth_port = secure_ports
        broker = LocalBroker("kafka", f"{HOST}:{port}", pid, workdir, log_path,
                             sasl_address=f"{HOST}:{sasl_port}" if sasl_port else None, command=cmd,
                             scram_address=f"{HOST}:{scram_port}" if secure_now else None,
                             mtls_address=f"{HOST}:{mtls_port}" if secure_now else None,
                             oauth_address=f"{HOST}:{oauth_port}" if secure_now else None,
                             tls_dir=tls.dir if tls else None)
        _wait_ready(broker, _kafka_ready, timeout)
        return broker

    return _retry_port_clash(start_once)


# --- RabbitMQ --------------------------------------------------------------

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # Debian's; /usr/sbin's wrapper su's to `rabbitmq`
# The throwaway node's administrator (test setup, the simulator): loopback only, like Kafka's
# unrestricted PLAINTEXT listener.
RABBITMQ_ADMIN = ("eventscope-admin", "eventscope-admin-secret")
# What a monitoring identity may do over AMQP: nothing (no declare, no publish, no consume).
# The management API's GETs need only the `monitoring` tag.
NO_RIGHTS = {"configure": "^$", "write": "^$", "read": "^$"}


def _rabbitmq_config(amqp_port: int, mgmt_port: int) -> str:
    """rabbitmq.conf for a loopback-only node with the management API."""
    user, password = RABBITMQ_ADMIN
    return "\n".join([
        f"listeners.tcp.default = {HOST}:{amqp_port}",
        f"management.tcp.ip = {HOST}",
        f"management.tcp.port = {mgmt_port}",
        # the node listens on loopback only; its users may log in from there
        "loopback_users = none",
        f"default_user = {user}",
        f"default_pass = {password}",
        "default_user_tags.administrator = true",
        "default_permissions.configure = .*",
        "default_permissions.read = .*",
        "default_permissions.write = .*",
        # a throwaway node on a shared machine: never block publishers on disk or memory alarms
        "disk_free_limit.absolute = 1MB",
        "vm_memory_high_watermark.relative = 0.9",
        # rates and queue stats refresh every second (default 5 s), so tests see them promptly
        "collect_statistics_interval = 1000",
        "management.rates_mode = basic",
        "log.console = true",
        "log.console.level = warning",
        "log.file = false",
        "",
    ])


def rabbitmq_api(broker: LocalBroker, method: str, path: str, body: dict | None = None,
                 auth: tuple[str, str] = RABBITMQ_ADMIN, timeout: float = 10.0):
    """Call the management API of a node started here (as its administrator by default);
    returns the decoded JSON answer, or None for an empty one."""
    import urllib.request  # setup only: the collector has its own read-only client

    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(broker.address + path, data=data, method=method,
                                     headers={"content-type": "application/json",
                                              "authorization": "Basic " + base64.b64encode(
                                                  f"{auth[0]}:{auth[1]}".encode()).decode()})
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        text = answer.read()
    return json.loads(text) if text else None


def add_rabbitmq_user(broker: LocalBroker, name: str, password: str, tags: str = "monitoring",
                      permissions: dict[str, str] | None = None, vhost: str = "/") -> None:
    """Create (or replace) a user on a node started here, with ``tags`` and, on ``vhost``,
    ``permissions`` (``configure``/``write``/``read`` regexes; default: none at all)."""
    rabbitmq_api(broker, "PUT", f"/api/users/{quote(name, safe='')}", {"password": password, "tags": tags})
    rabbitmq_api(broker, "PUT", f"/api/permissions/{quote(vhost, safe='')}/{quote(name, safe='')}",
                 permissions or NO_RIGHTS)


def _rabbitmq_ready(broker: LocalBroker) -> bool:
    """Tell whether the management API answers and the AMQP port accepts connections."""
    host, port = broker.amqp_address.rsplit(":", 1)
    with socket.socket() as sock:
        sock.settimeout(0.5)
        if sock.connect_ex((host, int(port))) != 0:
            return False
    overview = rabbitmq_api(broker, "GET", "/api/overview", timeout=2)
    return bool(overview and overview.get("node"))


def _reap_group(pgid: int) -> None:
    """SIGKILL what is left of a stopped node's process group (the Erlang VM, if its
    ``rabbitmq-server`` script is gone), once a member is seen to be a RabbitMQ VM: a
    recycled group ID is never signalled."""
    proc = Path("/proc")
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and b"rabbit" in (stat.parent / "cmdline").read_bytes():
                break
        except (OSError, IndexError, ValueError):
            continue
    else:
        return
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def start_rabbitmq(workdir: Path | str, timeout: float = 60.0,
                   monitoring_users: dict[str, str] | None = None) -> LocalBroker:
    """Start a fresh RabbitMQ node (Debian's rabbitmq-server, management plugin on) on free
    loopback ports under `workdir`, with its own epmd on a private port.

    ``address`` is the management API's URL, ``amqp_address`` the AMQP listener. The node's
    administrator is :data:`RABBITMQ_ADMIN`; each of ``monitoring_users`` (name -> password)
    gets only the ``monitoring`` tag and no AMQP rights (:data:`NO_RIGHTS`)."""
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    epmd = shutil.which("epmd")  # Debian's erlang-base, a dependency of rabbitmq-server
    if not Path(RABBITMQ_SERVER).exists() or epmd is None:
        raise BrokerStartError("rabbitmq-server not found: apt-get install -y rabbitmq-server "
                               "(or make system-deps)")

    def start_once() -> LocalBroker:
        amqp_port, mgmt_port, dist_port, epmd_port = free_ports(4)
        node_dir = workdir / f"rabbitmq-{amqp_port}"
        shutil.rmtree(node_dir, ignore_errors=True)  # each start is a new node
        (node_dir / "home").mkdir(parents=True)
        config = node_dir / "rabbitmq.conf"
        config.write_text(_rabbitmq_config(amqp_port, mgmt_port))
        plugins = node_dir / "enabled_plugins"
        plugins.write_text("[rabbitmq_management].\n")
        log_path = workdir / "rabbitmq.log"
        env = {
            **os.environ,
            "HOME": str(node_dir / "home"),  # the Erlang cookie is written here
            "RABBITMQ_NODENAME": f"eventscope-{uuid.uuid4().hex[:12]}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": HOST,
            "RABBITMQ_NODE_PORT": str(amqp_port),
            "RABBITMQ_DIST_PORT": str(dist_port),
            "ERL_EPMD_PORT": str(epmd_port),
            "ERL_EPMD_ADDRESS": HOST,
            "RABBITMQ_MNESIA_BASE": str(node_dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(node_dir / "log"),
            "RABBITMQ_LOGS": "-",
            "RABBITMQ_PID_FILE": str(node_dir / "rabbitmq.pid"),
            "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(node_dir / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(node_dir / "rabbitmq-env.conf"),  # never /etc's
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
            # the VM must not start an epmd of its own: ours runs on the private port
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}",
        }
        epmd_pid = _spawn([epmd, "-port", str(epmd_port), "-address", HOST], workdir / "epmd.log", node_dir, env)
        cmd = [RABBITMQ_SERVER]
        pid = _spawn(cmd, log_path, node_dir, env)
        broker = LocalBroker("rabbitmq", f"http://{HOST}:{mgmt_port}", pid, workdir, log_path,
                             command=cmd, amqp_address=f"{HOST}:{amqp_port}", epmd_pid=epmd_pid)
        _wait_ready(broker, _rabbitmq_ready, timeout)
        try:
            for name, password in (monitoring_users or {}).items():
                add_rabbitmq_user(broker, name, password)
        except BaseException:
            broker.stop(timeout=5)
            raise
        return broker

    return _retry_port_clash(start_once)


# --- Command line ------------------------------------------------------------

STARTERS = {"redis": start_redis, "kafka": start_kafka, "rabbitmq": start_rabbitmq}


def _state_file(workdir: Path, kind: str) -> Path:
    """Return where `start` records a broker of `kind` for `stop`."""
    return workdir / f"{kind}.json"


def _load(state: Path) -> LocalBroker:
    """Read a broker record written by `start`."""
    data = json.loads(state.read_text())
    return LocalBroker(data["kind"], data["address"], data["pid"],
                       Path(data["workdir"]), Path(data["log_path"]), data.get("sasl_address"),
                       amqp_address=data.get("amqp_address"), epmd_pid=data.get("epmd_pid"),
                       scram_address=data.get("scram_address"), mtls_address=data.get("mtls_address"),
                       oauth_address=data.get("oauth_address"),
                       tls_dir=Path(data["tls_dir"]) if data.get("tls_dir") else None)


def main(argv: list[str] | None = None) -> int:
    """Run `start KIND --dir DIR`, `stop KIND --dir DIR` or `install kafka`."""
    parser = argparse.ArgumentParser(prog="python -m eventscope.localbrokers", description=__doc__)
    parser.add_argument("action", choices=["start", "stop", "install"])
    parser.add_argument("kind", choices=sorted(STARTERS))
    parser.add_argument("--dir", type=Path, help="work dir for data, log and state (start, stop)")
    parser.add_argument("--json", action="store_true", help="print the broker record as JSON")
    args = parser.parse_args(argv)
    if args.action == "install":
        if args.kind != "kafka":  # redis-server comes from Debian (scripts/install_system_deps.sh)
            parser.error("install: only kafka is fetched by eventscope")
        try:
            print(kafka_libs())
        except BrokerStartError as exc:
            print(exc, file=sys.stderr)
            return 1
        return 0
    if args.dir is None:
        parser.error(f"{args.action} needs --dir")
    workdir = args.dir.resolve()
    state = _state_file(workdir, args.kind)

    if args.action == "stop":
        if not state.exists():
            print(f"no {state}: nothing to stop", file=sys.stderr)
            return 0
        _load(state).stop()
        state.unlink()
        return 0

    old = _load(state) if state.exists() else None
    if old is not None and _alive(old.pid) and _is_kind(old.pid, old.kind):
        print(f"{args.kind} already running per {state}; stop it first", file=sys.stderr)
        return 1
    try:
        broker = STARTERS[args.kind](workdir)
    except BrokerStartError as exc:
        print(exc, file=sys.stderr)
        return 1
    record = {"address": broker.address, "pid": broker.pid, "log": str(broker.log_path),
              **broker.to_json()}
    state.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record) if args.json else broker.address)
    return 0


if __name__ == "__main__":
    sys.exit(main())
