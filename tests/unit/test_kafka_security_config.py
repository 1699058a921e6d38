"""Kafka connection security settings: TLS and mutual TLS, SASL, OAUTHBEARER (OIDC, AWS MSK
IAM), ``properties`` passed through to librdkafka; secrets never shown; failures made
readable."""
from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from confluent_kafka import KafkaError, KafkaException

from eventscope.collectors.kafka.config import KafkaConfig, check, secret_property
from eventscope.collectors.kafka.offsets import client_secrets, kafka_client_config
from eventscope.collectors.kafka.security import NO_TOKEN, ConnectionTrouble, KafkaConnectionError, readable
from eventscope.config import ConfigError, load_config


def write(tmp_path, text: str) -> str:
    path = tmp_path / "eventscope.toml"
    path.write_text(text)
    return str(path)


def test_tls_and_sasl_keys_become_librdkafka_settings(tmp_path):
    (tmp_path / "key-password").write_text("key-secret-1\n")
    cfg = load_config(write(tmp_path, '''
[kafka]
bootstrap = "b:9093"
security_protocol = "SASL_SSL"
sasl_mechanism = "SCRAM-SHA-512"
sasl_username = "eventscope"
sasl_password = "scram-secret-1"
ssl_ca_location = "/ca.pem"
ssl_certificate_location = "/client.pem"
ssl_key_location = "/client-key.pem"
ssl_key_password_file = "%s"
ssl_endpoint_identification = false
''' % (tmp_path / "key-password")), env={}).kafka
    conf = kafka_client_config(cfg)
    assert {k: conf[k] for k in ("security.protocol", "sasl.mechanism", "sasl.username", "sasl.password",
                                 "ssl.ca.location", "ssl.certificate.location", "ssl.key.location",
                                 "ssl.key.password", "ssl.endpoint.identification.algorithm")} == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "eventscope",
        "sasl.password": "scram-secret-1", "ssl.ca.location": "/ca.pem", "ssl.certificate.location": "/client.pem",
        "ssl.key.location": "/client-key.pem", "ssl.key.password": "key-secret-1",
        "ssl.endpoint.identification.algorithm": "none"}
    assert kafka_client_config(KafkaConfig(bootstrap="b", security_protocol="SSL"))[
        "ssl.endpoint.identification.algorithm"] == "https"
    assert "ssl.ca.location" not in kafka_client_config(KafkaConfig(bootstrap="b"))
    shown = repr(cfg)
    assert "scram-secret-1" not in shown and "key-secret-1" not in shown


def test_oidc_keys(tmp_path):
    cfg = load_config(env={"EVENTSCOPE_KAFKA_BOOTSTRAP": "b:9093", "EVENTSCOPE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                           "EVENTSCOPE_KAFKA_SASL_MECHANISM": "OAUTHBEARER",
                           "EVENTSCOPE_KAFKA_SASL_OAUTHBEARER_METHOD": "oidc",
                           "EVENTSCOPE_KAFKA_SASL_OAUTHBEARER_CLIENT_ID": "eventscope",
                           "EVENTSCOPE_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET": "oidc-secret-1",
                           "EVENTSCOPE_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL": "https://idp/token",
                           "EVENTSCOPE_KAFKA_SASL_OAUTHBEARER_SCOPE": "kafka"}).kafka
    conf = kafka_client_config(cfg)
    assert {k: v for k, v in conf.items() if k.startswith("sasl.")} == {
        "sasl.mechanism": "OAUTHBEARER", "sasl.oauthbearer.method": "oidc",
        "sasl.oauthbearer.client.id": "eventscope", "sasl.oauthbearer.client.secret": "oidc-secret-1",
        "sasl.oauthbearer.token.endpoint.url": "https://idp/token", "sasl.oauthbearer.scope": "kafka"}
    assert "oidc-secret-1" not in repr(cfg)
    assert client_secrets(cfg) == ("oidc-secret-1",)


PROPERTIES_TOML = '''
[kafka]
bootstrap = "b:9092"

[kafka.properties]
client.rack = "eu-1a"
"socket.keepalive.enable" = true
"fetch.wait.max.ms" = 50
"ssl.keystore.password" = "keystore-secret-1"
"ssl.key.pem" = "-----BEGIN PRIVATE KEY----- pem-secret-1"

[[sources]]
name = "other"
kind = "kafka"
bootstrap = "c:9092"
properties = { "client.id" = "eventscope-other", "sasl.oauthbearer.config" = "principal=x extension_t=tok-secret-1" }
'''


def test_properties_pass_any_librdkafka_setting_through(tmp_path):
    cfg = load_config(write(tmp_path, PROPERTIES_TOML), env={})
    conf = kafka_client_config(cfg.kafka)
    assert (conf["client.rack"], conf["socket.keepalive.enable"], conf["fetch.wait.max.ms"]) == ("eu-1a", True, 50)
    assert conf["ssl.keystore.password"] == "keystore-secret-1"
    assert conf["client.id"] == "eventscope"  # ours, unless a property says otherwise:
    other = kafka_client_config(cfg.sources[0].settings)
    assert other["client.id"] == "eventscope-other" and "client.rack" not in other  # a source's table is its own
    env = load_config(env={"EVENTSCOPE_KAFKA_BOOTSTRAP": "b:9092",
                           "EVENTSCOPE_KAFKA_PROPERTIES": json.dumps({"client.rack": "r2", "sasl.password.x": "s"})})
    assert kafka_client_config(env.kafka)["client.rack"] == "r2"


def test_secret_properties_are_never_shown(tmp_path):
    cfg = load_config(write(tmp_path, PROPERTIES_TOML), env={})
    shown = repr(cfg) + json.dumps(cfg.sources_summary()) + repr(cfg.sources)
    for secret in ("keystore-secret-1", "pem-secret-1", "tok-secret-1"):
        assert secret not in shown
    assert "eu-1a" in repr(cfg.kafka)  # the others show
    assert set(client_secrets(cfg.kafka)) == {"keystore-secret-1", "-----BEGIN PRIVATE KEY----- pem-secret-1"}


@pytest.mark.parametrize("name, secret", [
    ("sasl.password", True), ("ssl.key.password", True), ("ssl.keystore.password", True),
    ("sasl.oauthbearer.client.secret", True), ("ssl.key.pem", True), ("ssl.certificate.pem", True),
    ("sasl.oauthbearer.config", True), ("sasl.oauthbearer.assertion.private.key.passphrase", True),
    ("sasl.jaas.config", True), ("https.ca.pem", True),
    ("ssl.key.location", False), ("ssl.keystore.location", False), ("client.rack", False),
    ("sasl.oauthbearer.client.id", False), ("ssl.endpoint.identification.algorithm", False)])
def test_which_property_names_hold_secrets(name, secret):
    assert secret_property(name) is secret


@pytest.mark.parametrize("properties, message", [
    ({"sasl.password": "p-secret-2"}, "kafka.properties.sasl.password: set kafka.sasl_password instead"),
    ({"security.protocol": "SSL"}, "kafka.properties.security.protocol: set kafka.security_protocol instead"),
    ({"ssl.ca.location": "/x"}, "kafka.properties.ssl.ca.location: set kafka.ssl_ca_location instead"),
    ({"oauth_cb": "x"}, "kafka.properties.oauth_cb: a callback cannot be configured"),
    ({"client.rack": ["p-secret-2"]}, "kafka.properties.client.rack: expected a string, number or boolean"),
])
def test_a_property_that_a_named_key_sets_is_a_config_error(properties, message):
    with pytest.raises(ConfigError) as caught:
        load_config(env={"EVENTSCOPE_KAFKA_BOOTSTRAP": "b", "EVENTSCOPE_KAFKA_PROPERTIES": json.dumps(properties)})
    assert str(caught.value) == message
    assert "p-secret-2" not in str(caught.value)


def test_properties_that_are_not_a_table_name_the_key_and_show_no_value(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(env={"EVENTSCOPE_KAFKA_BOOTSTRAP": "b", "EVENTSCOPE_KAFKA_PROPERTIES": '{"sasl.x": "p-secret-3"'})
    assert str(caught.value) == "EVENTSCOPE_KAFKA_PROPERTIES: expected a table (in the environment: a JSON object)"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, '[kafka]\nbootstrap = "b"\nproperties = ["p-secret-3"]\n'), env={})
    assert "kafka.properties: expected a table" in str(caught.value) and "p-secret-3" not in str(caught.value)


@pytest.mark.parametrize("keys, problem", [
    ({"ssl_ca_location": "/ca.pem"}, "k.ssl_ca_location needs security_protocol SSL or SASL_SSL"),
    ({"security_protocol": "SSL", "ssl_certificate_location": "/c.pem"},
     "k: ssl_certificate_location and ssl_key_location go together (mutual TLS)"),
    ({"sasl_mechanism": "SCRAM-SHA-512"}, "k.sasl_mechanism needs security_protocol SASL_SSL or SASL_PLAINTEXT"),
    ({"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-1"}, "k.sasl_mechanism must be one of"),
    ({"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER", "sasl_oauthbearer_method": "saml"},
     "k.sasl_oauthbearer_method must be \"oidc\" or \"aws_msk_iam\""),
    ({"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER", "sasl_oauthbearer_method": "oidc",
      "sasl_oauthbearer_client_id": "c", "sasl_oauthbearer_token_endpoint_url": "https://idp/t"},
     "k.sasl_oauthbearer_client_secret is needed by sasl_oauthbearer_method \"oidc\""),
    ({"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_oauthbearer_method": "oidc",
      "sasl_oauthbearer_client_id": "c", "sasl_oauthbearer_client_secret": "s",
      "sasl_oauthbearer_token_endpoint_url": "https://idp/t"},
     "k.sasl_oauthbearer_method \"oidc\" needs sasl_mechanism = \"OAUTHBEARER\""),
    ({"security_protocol": "SASL_SSL", "sasl_mechanism": "AWS_MSK_IAM"},
     "k.aws_region is needed by AWS MSK IAM"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "AWS_MSK_IAM", "aws_region": "eu-west-1"},
     "k.security_protocol must be SASL_SSL for AWS MSK IAM"),
    ({"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER", "sasl_oauthbearer_method": "aws_msk_iam",
      "aws_region": "eu-west-1", "aws_profile": "p", "aws_role_arn": "arn:aws:iam::1:role/r"},
     "k: aws_profile and aws_role_arn exclude each other"),
])
def test_security_settings_are_checked(keys, problem):
    from eventscope.secrets import Secret
    cfg = KafkaConfig(bootstrap="b", **{k: Secret(v) if k.endswith("secret") else v for k, v in keys.items()})
    problems = check(cfg, "k")
    assert any(p.startswith(problem) for p in problems), problems
    assert all("\n" not in p for p in problems)


def test_valid_security_settings_have_no_problems():
    from eventscope.secrets import Secret
    for cfg in (KafkaConfig(bootstrap="b", security_protocol="SSL", ssl_ca_location="/ca.pem",
                            ssl_certificate_location="/c.pem", ssl_key_location="/k.pem"),
                KafkaConfig(bootstrap="b", security_protocol="SASL_SSL", sasl_mechanism="AWS_MSK_IAM",
                            aws_region="eu-west-1", aws_role_arn="arn:aws:iam::1:role/r"),
                KafkaConfig(bootstrap="b", security_protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER",
                            sasl_oauthbearer_method="oidc", sasl_oauthbearer_client_id="c",
                            sasl_oauthbearer_client_secret=Secret("s"),
                            sasl_oauthbearer_token_endpoint_url="https://idp/token")):
        assert check(cfg, "k") == []


# -- AWS MSK IAM ----------------------------------------------------------------------------
ACCESS_KEY, SECRET_KEY = "AKIAEVENTSCOPETEST01", "eventscope/test/secret/key/0123456789abcdef"
SIGNED_AT = datetime.datetime(2026, 3, 4, 5, 6, 7)


@pytest.fixture
def aws_credentials(monkeypatch, tmp_path):
    """Fixed credentials from the environment, no AWS files, no instance metadata; botocore's
    clock at ``SIGNED_AT``."""
    import botocore.auth  # the signer's clock is botocore's
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: SIGNED_AT)


def sigv4_signature(url: str, region: str) -> str:
    """The SigV4 query signature of a presigned ``kafka-cluster`` GET, computed here from the
    fixed secret key (independently of botocore)."""
    parts = urlsplit(url)
    params = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
              if k not in ("X-Amz-Signature", "User-Agent")]
    query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params))
    request = "\n".join(["GET", parts.path or "/", query, f"host:{parts.hostname}", "", "host",
                         hashlib.sha256(b"").hexdigest()])
    stamp = dict(params)["X-Amz-Date"]
    scope = f"{stamp[:8]}/{region}/kafka-cluster/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(request.encode()).hexdigest()])
    key = ("AWS4" + SECRET_KEY).encode()
    for part in (stamp[:8], region, "kafka-cluster", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def test_msk_iam_wires_an_oauth_cb_that_signs_a_connect_url(aws_credentials):
    cfg = load_config(env={"EVENTSCOPE_KAFKA_BOOTSTRAP": "b-1.msk.eu-west-1.amazonaws.com:9098",
                           "EVENTSCOPE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                           "EVENTSCOPE_KAFKA_SASL_MECHANISM": "AWS_MSK_IAM",
                           "EVENTSCOPE_KAFKA_AWS_REGION": "eu-west-1"}).kafka
    conf = kafka_client_config(cfg)
    assert (conf["security.protocol"], conf["sasl.mechanism"]) == ("SASL_SSL", "OAUTHBEARER")
    assert conf["oauth_cb"].msk_region == "eu-west-1"
    token, expiry = conf["oauth_cb"]("")  # as librdkafka calls it: with sasl.oauthbearer.config
    assert "=" not in token
    url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    assert (parts.scheme, parts.hostname) == ("https", "kafka.eu-west-1.amazonaws.com")
    assert params["Action"] == "kafka-cluster:Connect"
    assert params["X-Amz-Credential"] == f"{ACCESS_KEY}/20260304/eu-west-1/kafka-cluster/aws4_request"
    assert (params["X-Amz-Date"], params["X-Amz-Expires"]) == ("20260304T050607Z", "900")
    assert params["X-Amz-Signature"] == sigv4_signature(url, "eu-west-1")
    assert params["User-Agent"].startswith("aws-msk-iam-sasl-signer-python/")
    assert expiry == datetime.datetime(2026, 3, 4, 5, 21, 7, tzinfo=datetime.timezone.utc).timestamp()
    assert SECRET_KEY not in url


def test_msk_iam_by_method_with_a_profile_or_role(monkeypatch):
    from aws_msk_iam_sasl_signer import MSKAuthTokenProvider  # the provider the callback must call
    asked = []
    monkeypatch.setattr(MSKAuthTokenProvider, "generate_auth_token_from_profile",
                        lambda region, profile: asked.append(("profile", region, profile)) or ("t", 2000))
    monkeypatch.setattr(MSKAuthTokenProvider, "generate_auth_token_from_role_arn",
                        lambda region, role: asked.append(("role", region, role)) or ("t", 4000))
    base = dict(bootstrap="b", security_protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER",
                sasl_oauthbearer_method="aws_msk_iam", aws_region="us-east-1")
    assert kafka_client_config(KafkaConfig(**base, aws_profile="ro"))["oauth_cb"](None) == ("t", 2.0)
    assert kafka_client_config(KafkaConfig(**base, aws_role_arn="arn:r"))["oauth_cb"](None) == ("t", 4.0)
    assert asked == [("profile", "us-east-1", "ro"), ("role", "us-east-1", "arn:r")]


def test_msk_iam_without_credentials_says_so_instead_of_failing_the_client(aws_credentials, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    for name in ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    trouble = ConnectionTrouble()
    cfg = KafkaConfig(bootstrap="b", security_protocol="SASL_SSL", sasl_mechanism="AWS_MSK_IAM", aws_region="eu-west-1")
    token, expiry = kafka_client_config(cfg, trouble)["oauth_cb"](None)
    assert token == NO_TOKEN and expiry > 0
    timeout = KafkaException(KafkaError(KafkaError._TRANSPORT, "Failed to get metadata: Local: Broker transport failure"))
    trouble.error_cb(KafkaError(KafkaError._AUTHENTICATION, 'SASL authentication error: {"status":"invalid_token"}'))
    line = str(trouble.explain(timeout))  # why there was no token, not the broker's refusal of the placeholder
    assert line.startswith("SASL OAUTHBEARER: no token could be obtained") and "eu-west-1" in line
    assert "no AWS credentials were found" in line and "\n" not in line


# -- readable failures -----------------------------------------------------------------------
@pytest.mark.parametrize("text, meaning", [
    ("sasl_ssl://127.0.0.1:1/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify "
     "failed: broker certificate could not be verified (after 3ms in state SSL_HANDSHAKE)",
     "TLS: certificate verify failed (the broker's certificate is not signed by ssl_ca_location"),
    ("ssl://127.0.0.1:1/bootstrap: Receive failed: error:0A000412:SSL routines::ssl/tls alert bad certificate: "
     "SSL alert number 42", "TLS: the broker refused the client certificate"),
    ("sasl_ssl://127.0.0.1:1/bootstrap: SASL authentication error: Authentication failed during authentication "
     "due to invalid credentials with SASL mechanism SCRAM-SHA-512", "SASL: authentication failed"),
    ('sasl_plaintext://127.0.0.1:1/bootstrap: SASL authentication error: {"status":"invalid_token"}',
     "SASL OAUTHBEARER: the broker refused the token"),
    ("ssl://h:1/bootstrap: SSL handshake failed: error:0A00010B:SSL routines::wrong version number",
     "TLS: the broker does not speak TLS on this port"),
])
def test_librdkafka_failures_read_as_what_they_mean(text, meaning):
    line = readable(text)
    assert line.startswith(meaning) and text.split("/bootstrap: ", 1)[1][:40] in line and "\n" not in line and len(line) <= 300


def test_a_failed_call_is_explained_by_the_last_connection_error_without_secrets():
    trouble = ConnectionTrouble(("pw-secret-9",))
    timeout = KafkaException(KafkaError(KafkaError._TRANSPORT, "Failed to get metadata: Local: Broker transport failure"))
    assert trouble.explain(timeout) is timeout  # nothing known: the error as it was
    trouble.error_cb(KafkaError(KafkaError._AUTHENTICATION,
                                "SASL authentication error: invalid credentials for pw-secret-9"))
    explained = trouble.explain(timeout)
    assert isinstance(explained, KafkaConnectionError)
    assert str(explained).startswith("SASL: authentication failed")
    assert "pw-secret-9" not in str(explained) and "\n" not in str(explained)
    trouble.error_cb(KafkaError(KafkaError._TRANSPORT, "Connection refused"))  # not a security failure
    assert str(trouble.explain(timeout)).startswith("SASL: authentication failed")
