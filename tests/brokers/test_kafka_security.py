"""Kafka's secured connections, on the session broker's secured listeners (``kafka_secure``):
SASL_SSL with SCRAM-SHA-512 (the password given inline and as ``sasl_password_file``),
mutual TLS with a private CA (client key encrypted: ``ssl_key_password``), OAUTHBEARER with
an OIDC token endpoint (a local one issuing tokens the broker's unsecured JWT validator
accepts) and with librdkafka's unsecured JWTs set through ``properties``.

* ``eventscope collect --once`` reads lag through each, as an identity holding only the
  read-only ACLs, and the authorizer denies it nothing;
* a wrong SCRAM password, a CA that did not sign the broker's certificate, a missing client
  certificate and a token the broker refuses are each one health line that says so, with
  no secret in it or anywhere in the output, while the good source is read;
* the ``oauth_cb`` that AWS MSK IAM wires is called by librdkafka, and its token is the one
  the broker authenticates.
"""
from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from eventscope.collectors.kafka.config import KafkaConfig
from eventscope.collectors.kafka.offsets import KafkaOffsetsCollector, kafka_client_config
from eventscope.localbrokers import CLIENT_KEY_PASSWORD
from eventscope.store import Store
from conftest import KAFKA_OAUTH_SUB, KAFKA_SCRAM_PASSWORD, KAFKA_SCRAM_USER
from test_read_only import denied_log_lines

pytestmark = pytest.mark.broker

WRONG_PASSWORD = "wrong-" + uuid.uuid4().hex
CLIENT_SECRET = "oidc-client-" + uuid.uuid4().hex


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unsecured_jwt(sub: str, signed: bool = False) -> str:
    """A JWT for ``sub``; unsigned (``alg: none``, what the broker's unsecured validator
    accepts), or with a made-up signature (which it refuses)."""
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT"} if signed else {"alg": "none"}
    return f"{_b64(header)}.{_b64({'sub': sub, 'iat': now, 'exp': now + 3600})}." + ("c2lnbmF0dXJl" if signed else "")


class TokenEndpoint:
    """An OAuth token endpoint (client credentials): ``/good`` issues tokens the broker
    accepts, ``/bad`` tokens it refuses; remembers who asked."""

    def __init__(self):
        asked = self.asked = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
                asked.append((self.path, self.headers.get("authorization"), body))
                token = unsecured_jwt(KAFKA_OAUTH_SUB, signed=self.path != "/good")
                data = json.dumps({"access_token": token, "token_type": "bearer", "expires_in": 3600}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def token_endpoint():
    endpoint = TokenEndpoint()
    yield endpoint
    endpoint.close()


@pytest.fixture(scope="module")
def seeded(kafka_broker):
    """A topic with messages and a group that committed on it: ``(tag, topic, group)``."""
    tag = f"sec{uuid.uuid4().hex[:6]}"
    topic, group = f"{tag}.orders", f"{tag}-billing"
    admin = AdminClient({"bootstrap.servers": kafka_broker.address})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(timeout=30)
    producer = Producer({"bootstrap.servers": kafka_broker.address})
    for i in range(6):
        producer.produce(topic, json.dumps({"event_type": "OrderPlaced", "n": i}).encode(), partition=i % 2)
    assert producer.flush(30) == 0
    committer = Consumer({"bootstrap.servers": kafka_broker.address, "group.id": group})
    committer.commit(offsets=[TopicPartition(topic, 0, 1), TopicPartition(topic, 1, 1)], asynchronous=False)
    committer.close()
    return tag, topic, group


def _toml_value(value) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def write_config(path, sources: dict) -> None:
    """A TOML file of ``[[sources]]``, ``{name: keys}``."""
    text = ""
    for name, keys in sources.items():
        text += f'[[sources]]\nname = "{name}"\nkind = "kafka"\n'
        text += "".join(f"{key} = {_toml_value(value)}\n" for key, value in keys.items()) + "\n"
    path.write_text(text)


def collect_once(config, store) -> subprocess.CompletedProcess:
    # no AWS credentials anywhere, and no instance metadata service to ask for them
    return subprocess.run([sys.executable, "-m", "eventscope.cli", "--config", str(config), "collect", "--once",
                           "--store", str(store)], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "AWS_EC2_METADATA_DISABLED": "true",
                               "AWS_CONFIG_FILE": str(config) + ".none",
                               "AWS_SHARED_CREDENTIALS_FILE": str(config) + ".none"})


def secured_sources(kafka_secure, token_endpoint, tag, tmp_path) -> dict:
    """One source per secured way in, each as its read-only identity."""
    tls = kafka_secure["tls"]
    password_file = tmp_path / "scram-password"
    password_file.write_text(KAFKA_SCRAM_PASSWORD + "\n")
    common = {"topics": f"^{tag}", "timeout_s": 5.0}
    scram = {"bootstrap": kafka_secure["scram"]["address"], "security_protocol": "SASL_SSL",
             "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": KAFKA_SCRAM_USER,
             "ssl_ca_location": str(tls.ca), **common}
    oauth = {"bootstrap": kafka_secure["oauth"]["address"], "security_protocol": "SASL_PLAINTEXT",
             "sasl_mechanism": "OAUTHBEARER", **common}
    return {
        "scram": {**scram, "sasl_password": KAFKA_SCRAM_PASSWORD},
        "scram-file": {**scram, "sasl_password_file": str(password_file)},
        "mtls": {"bootstrap": kafka_secure["mtls"]["address"], "security_protocol": "SSL",
                 "ssl_ca_location": str(tls.ca), "ssl_certificate_location": str(tls.client_cert),
                 "ssl_key_location": str(tls.client_key), "ssl_key_password": CLIENT_KEY_PASSWORD, **common},
        "oidc": {**oauth, "sasl_oauthbearer_method": "oidc", "sasl_oauthbearer_client_id": "eventscope",
                 "sasl_oauthbearer_client_secret": CLIENT_SECRET,
                 "sasl_oauthbearer_token_endpoint_url": token_endpoint.url + "/good",
                 "sasl_oauthbearer_scope": "kafka.read"},
        "jwt": {**oauth, "properties": {"enable.sasl.oauthbearer.unsecure.jwt": True,
                                        "sasl.oauthbearer.config": f"principal={KAFKA_OAUTH_SUB}"}},
    }


def test_collect_reads_lag_through_every_secured_listener_read_only(kafka_broker, kafka_secure, token_endpoint,
                                                                      seeded, tmp_path):
    tag, topic, group = seeded
    sources = secured_sources(kafka_secure, token_endpoint, tag, tmp_path)
    config, store = tmp_path / "eventscope.toml", tmp_path / "store"
    write_config(config, sources)
    mark = kafka_broker.log_path.stat().st_size
    done = collect_once(config, store)
    assert done.returncode == 0, done.stderr
    for name in sources:
        assert f"{name}/kafka.offsets: ok" in done.stderr, done.stderr
        assert f"{name}/kafka.events: ok" in done.stderr, done.stderr
    lag = Store(store).read("lag")
    for name in sources:
        rows = lag[(lag["broker"] == name) & (lag["group"] == group)]
        assert sorted(zip(rows["topic"], rows["partition"], rows["committed"], rows["lag"])) == [
            (topic, 0, 1, 2), (topic, 1, 1, 2)], (name, rows)
    # the client id and secret went to the token endpoint, as HTTP basic authentication
    basic = "Basic " + base64.b64encode(f"eventscope:{CLIENT_SECRET}".encode()).decode()
    assert ("/good", basic) in {(path, auth) for path, auth, _ in token_endpoint.asked}
    assert any("scope=kafka.read" in body for _, _, body in token_endpoint.asked)
    time.sleep(0.5)  # the authorizer's log lines are written as requests are answered
    for listener in ("scram", "mtls", "oauth"):
        assert denied_log_lines(kafka_broker, kafka_secure[listener]["principal"], mark) == []
    for secret in (KAFKA_SCRAM_PASSWORD, CLIENT_KEY_PASSWORD, CLIENT_SECRET):
        assert secret not in done.stderr + done.stdout


def test_each_security_failure_is_one_clear_health_line_without_secrets(kafka_secure, token_endpoint, seeded,
                                                                          tmp_path):
    tag, _, group = seeded
    good = secured_sources(kafka_secure, token_endpoint, tag, tmp_path)
    fast = {"timeout_s": 1.5}
    sources = {
        "good": good["scram"],
        "wrong-password": {**good["scram"], "sasl_password": WRONG_PASSWORD, **fast},
        "untrusted-ca": {**good["scram"], "ssl_ca_location": str(kafka_secure["tls"].other_ca), **fast},
        "no-client-cert": {key: value for key, value in good["mtls"].items()
                           if key not in ("ssl_certificate_location", "ssl_key_location", "ssl_key_password")}
        | fast,
        "refused-token": {**good["oidc"], "sasl_oauthbearer_token_endpoint_url": token_endpoint.url + "/bad", **fast},
        "no-aws-credentials": {"bootstrap": kafka_secure["scram"]["address"], "security_protocol": "SASL_SSL",
                               "sasl_mechanism": "AWS_MSK_IAM", "aws_region": "eu-west-1",
                               "ssl_ca_location": str(kafka_secure["tls"].ca), "topics": f"^{tag}", **fast},
    }
    expected = {"wrong-password": "SASL: authentication failed: the broker refused the credentials",
                "untrusted-ca": "TLS: certificate verify failed (the broker's certificate is not signed by "
                                "ssl_ca_location",
                "no-client-cert": "TLS: the broker refused the client certificate",
                "refused-token": "SASL OAUTHBEARER: the broker refused the token",
                "no-aws-credentials": "SASL OAUTHBEARER: no token could be obtained"}
    config, store = tmp_path / "eventscope.toml", tmp_path / "store"
    write_config(config, sources)
    done = collect_once(config, store)
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if "/kafka.offsets: " in line]
    assert any(line.startswith("good/kafka.offsets: ok") for line in lines), done.stderr
    for name, meaning in expected.items():
        mine = [line for line in lines if line.startswith(f"{name}/")]
        assert len(mine) == 1 and "FAILED: " in mine[0] and meaning in mine[0], (name, mine, done.stderr)
    everything = done.stderr + done.stdout
    for secret in (WRONG_PASSWORD, KAFKA_SCRAM_PASSWORD, CLIENT_KEY_PASSWORD, CLIENT_SECRET):
        assert secret not in everything
    health = Store(store).read("health")
    for name, meaning in expected.items():
        errors = health.loc[(health["source"] == name) & ~health["ok"], "error"].tolist()
        assert errors and all(meaning in e and "\n" not in e for e in errors), (name, errors)
    lag = Store(store).read("lag")
    assert set(lag["broker"]) == {"good"} and group in set(lag["group"])


def test_the_msk_iam_oauth_cb_is_called_by_librdkafka_and_its_token_authenticates(
        kafka_broker, kafka_secure, seeded, monkeypatch):
    from aws_msk_iam_sasl_signer import MSKAuthTokenProvider  # the signer the MSK IAM callback calls
    tag, topic, group = seeded
    signed_for = []

    def token(region):  # AWS cannot be reached: the broker takes an unsecured JWT instead
        signed_for.append(region)
        return unsecured_jwt(KAFKA_OAUTH_SUB), int((time.time() + 900) * 1000)

    monkeypatch.setattr(MSKAuthTokenProvider, "generate_auth_token", token)
    # SASL_PLAINTEXT: the test listener is not TLS (check() asks SASL_SSL of a real MSK source)
    cfg = KafkaConfig(bootstrap=kafka_secure["oauth"]["address"], security_protocol="SASL_PLAINTEXT",
                      sasl_mechanism="AWS_MSK_IAM", aws_region="eu-central-1", topics=f"^{tag}", timeout_s=5.0)
    conf = kafka_client_config(cfg)
    assert conf["sasl.mechanism"] == "OAUTHBEARER" and callable(conf["oauth_cb"])
    mark = kafka_broker.log_path.stat().st_size
    collector = KafkaOffsetsCollector(AdminClient(conf), source="msk", topics=cfg.topics, timeout_s=cfg.timeout_s)
    try:
        lag = collector.collect()["lag"]
    finally:
        collector.close()
    assert signed_for and set(signed_for) == {"eu-central-1"}
    rows = lag[lag["group"] == group]
    assert sorted(zip(rows["partition"], rows["lag"])) == [(0, 2), (1, 2)]
    time.sleep(0.5)
    assert denied_log_lines(kafka_broker, kafka_secure["oauth"]["principal"], mark) == []
