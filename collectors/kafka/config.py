"""The ``[kafka]`` section: one Kafka cluster's settings (and the defaults of every
``[[sources]]`` entry with ``kind = "kafka"``).

Connection security: TLS (``ssl_*``: a private CA, a client certificate for mutual TLS),
SASL (PLAIN, SCRAM-SHA-256/512, OAUTHBEARER with an OIDC token endpoint or AWS MSK IAM)
and ``properties``, a table of any other librdkafka setting passed through as given. A
property may not set what a named key sets (``sasl.password`` is ``sasl_password``): that is
a configuration error naming the key to use, so each setting has one place. A property
whose name looks secret (:func:`secret_property`) is never shown."""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import ClassVar
from urllib.parse import urlsplit

from eventscope.collectors import regex_problems
from eventscope.dlq_names import KAFKA_DLQ_PATTERN
from eventscope.secrets import Secret, redact_url

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI", "AWS_MSK_IAM")
OAUTH_METHODS = ("", "oidc", "aws_msk_iam")
# librdkafka settings a named key sets: a property may not set them too
NAMED = {"bootstrap.servers": "bootstrap", "metadata.broker.list": "bootstrap",
         "security.protocol": "security_protocol", "sasl.mechanism": "sasl_mechanism",
         "sasl.mechanisms": "sasl_mechanism", "sasl.username": "sasl_username",
         "sasl.password": "sasl_password", "ssl.ca.location": "ssl_ca_location",
         "ssl.certificate.location": "ssl_certificate_location", "ssl.key.location": "ssl_key_location",
         "ssl.key.password": "ssl_key_password",
         "ssl.endpoint.identification.algorithm": "ssl_endpoint_identification",
         "sasl.oauthbearer.method": "sasl_oauthbearer_method",
         "sasl.oauthbearer.client.id": "sasl_oauthbearer_client_id",
         "sasl.oauthbearer.client.secret": "sasl_oauthbearer_client_secret",
         "sasl.oauthbearer.token.endpoint.url": "sasl_oauthbearer_token_endpoint_url",
         "sasl.oauthbearer.scope": "sasl_oauthbearer_scope",
         "socket.timeout.ms": "timeout_s"}
# what a property's name says when its value is a secret: sasl.password, ssl.key.password,
# ssl.keystore.password, sasl.oauthbearer.client.secret, ssl.key.pem, a token, a passphrase, ...
_SECRET_PROPERTY = re.compile(r"pass|secret|token|credential|private|jaas|\.pem$|^sasl\.oauthbearer\.config$",
                              re.IGNORECASE)
REDACTED = "***"


def secret_property(name: str) -> bool:
    """True when a librdkafka setting of this name holds a secret (its value is never shown)."""
    return bool(_SECRET_PROPERTY.search(str(name)))


def shown_properties(properties: dict) -> dict:
    """``properties`` safe to show: a secret's value is ``***``."""
    return {k: REDACTED if secret_property(k) else v for k, v in (properties or {}).items()}


@dataclass(repr=False)
class KafkaConfig:
    SECRETS: ClassVar[tuple] = ("sasl_password", "ssl_key_password", "sasl_oauthbearer_client_secret")

    bootstrap: str | None = None
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret = field(default_factory=lambda: Secret(None))
    # TLS: the CA that signed the brokers' certificates (else the system's), and a client
    # certificate and key for mutual TLS
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: Secret = field(default_factory=lambda: Secret(None))
    ssl_endpoint_identification: bool = True  # the broker's certificate must name its host
    # OAUTHBEARER: "oidc" (client credentials from a token endpoint) or "aws_msk_iam"
    sasl_oauthbearer_method: str = ""
    sasl_oauthbearer_client_id: str | None = None
    sasl_oauthbearer_client_secret: Secret = field(default_factory=lambda: Secret(None))
    sasl_oauthbearer_token_endpoint_url: str | None = None
    sasl_oauthbearer_scope: str | None = None
    # AWS MSK IAM: tokens signed with the default AWS credentials, a profile's, or a role's
    aws_region: str | None = None
    aws_profile: str | None = None
    aws_role_arn: str | None = None
    # any other librdkafka setting, passed as given ([kafka.properties])
    properties: dict = field(default_factory=dict)
    topics: str = r"^(?!__).*"
    dlq_pattern: str = KAFKA_DLQ_PATTERN
    dlq_topics: list = field(default_factory=list)
    dlq_read_max: int = 10_000
    # Kafka Connect workers' REST URLs: their connectors' DLQs and the topics those read
    connect_urls: list = field(default_factory=list)
    max_events_per_sample: int = 5000
    timeout_s: float = 10.0

    def oauth_method(self) -> str:
        """``"oidc"``, ``"aws_msk_iam"`` or ``""``; ``sasl_mechanism = "AWS_MSK_IAM"`` is the
        short form of the second."""
        if (self.sasl_mechanism or "").upper() == "AWS_MSK_IAM":
            return "aws_msk_iam"
        return (self.sasl_oauthbearer_method or "").lower()

    def __repr__(self) -> str:
        def shown(name: str) -> str:
            value = getattr(self, name)
            if name == "connect_urls":
                value = [redact_url(str(v)) for v in value]
            elif name == "sasl_oauthbearer_token_endpoint_url" and value:
                value = redact_url(str(value))
            elif name == "properties":
                value = shown_properties(value)
            return f"{name}={value!r}"
        return f"KafkaConfig({', '.join(shown(f.name) for f in fields(self))})"


def check(cfg: KafkaConfig, where: str) -> list[str]:
    """The settings' problems, one line each."""
    problems = []
    if cfg.security_protocol not in PROTOCOLS:
        problems.append(f"{where}.security_protocol must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
    if cfg.sasl_mechanism and cfg.sasl_mechanism.upper() not in MECHANISMS:
        problems.append(f"{where}.sasl_mechanism must be one of {', '.join(MECHANISMS)}")
    if cfg.dlq_read_max < 0:
        problems.append(f"{where}.dlq_read_max must be >= 0")
    if cfg.timeout_s <= 0:
        problems.append(f"{where}.timeout_s must be > 0")
    for url in cfg.connect_urls:
        if urlsplit(str(url)).scheme not in ("http", "https") or not urlsplit(str(url)).hostname:
            problems.append(f"{where}.connect_urls: {redact_url(str(url))!r} is not an http:// or https:// URL")
    problems += _security_problems(cfg, where)
    return problems + regex_problems(cfg, ("topics", "dlq_pattern"), where)


def _security_problems(cfg: KafkaConfig, where: str) -> list[str]:
    problems = []
    sasl = cfg.security_protocol.startswith("SASL_")
    tls = cfg.security_protocol in ("SSL", "SASL_SSL")
    method = cfg.oauth_method()
    if cfg.sasl_mechanism and not sasl:
        problems.append(f"{where}.sasl_mechanism needs security_protocol SASL_SSL or SASL_PLAINTEXT")
    if not tls:
        for key in ("ssl_ca_location", "ssl_certificate_location", "ssl_key_location"):
            if getattr(cfg, key):
                problems.append(f"{where}.{key} needs security_protocol SSL or SASL_SSL")
    if bool(cfg.ssl_certificate_location) != bool(cfg.ssl_key_location):
        problems.append(f"{where}: ssl_certificate_location and ssl_key_location go together (mutual TLS)")
    if method not in OAUTH_METHODS:
        problems.append(f"{where}.sasl_oauthbearer_method must be \"oidc\" or \"aws_msk_iam\"")
    elif method == "oidc":
        if (cfg.sasl_mechanism or "").upper() != "OAUTHBEARER":
            problems.append(f"{where}.sasl_oauthbearer_method \"oidc\" needs sasl_mechanism = \"OAUTHBEARER\"")
        for key in ("sasl_oauthbearer_client_id", "sasl_oauthbearer_client_secret",
                    "sasl_oauthbearer_token_endpoint_url"):
            if not getattr(cfg, key):
                problems.append(f"{where}.{key} is needed by sasl_oauthbearer_method \"oidc\"")
        url = cfg.sasl_oauthbearer_token_endpoint_url
        if url and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname):
            problems.append(f"{where}.sasl_oauthbearer_token_endpoint_url: {redact_url(url)!r} "
                            "is not an http:// or https:// URL")
    elif method == "aws_msk_iam":
        if (cfg.sasl_mechanism or "OAUTHBEARER").upper() not in ("OAUTHBEARER", "AWS_MSK_IAM"):
            problems.append(f"{where}.sasl_mechanism must be OAUTHBEARER (or AWS_MSK_IAM) for AWS MSK IAM")
        if cfg.security_protocol != "SASL_SSL":
            problems.append(f"{where}.security_protocol must be SASL_SSL for AWS MSK IAM")
        if not cfg.aws_region:
            problems.append(f"{where}.aws_region is needed by AWS MSK IAM (e.g. \"eu-west-1\")")
        if cfg.aws_profile and cfg.aws_role_arn:
            problems.append(f"{where}: aws_profile and aws_role_arn exclude each other")
    for key, value in (cfg.properties or {}).items():
        name = f"{where}.properties.{key}"
        if key in NAMED:
            problems.append(f"{name}: set {where}.{NAMED[key]} instead")
        elif key.endswith("_cb") or key == "logger":
            problems.append(f"{name}: a callback cannot be configured")
        elif not isinstance(value, (str, int, float, bool)):
            problems.append(f"{name}: expected a string, number or boolean")
    return problems
