"""How a Kafka client proves who it is and checks who it talks to: the librdkafka settings
of a :class:`~eventscope.collectors.kafka.config.KafkaConfig`'s TLS, SASL and OAUTHBEARER
keys (AWS MSK IAM through an ``oauth_cb`` that signs a token with the AWS credentials), and
the one readable line a failed connection becomes.

librdkafka does not raise a TLS or authentication failure from the call that needed the
connection: that call times out or fails with "all brokers down", while the reason goes to
the client's ``error_cb``. :class:`ConnectionTrouble` keeps the latest such reason (with
every configured secret taken out) and :meth:`ConnectionTrouble.explain` makes the
collector's exception say it, in words that name the setting to look at."""
from __future__ import annotations

import logging
import re
import time

from confluent_kafka import KafkaError, KafkaException

log = logging.getLogger("eventscope.kafka")
TROUBLE_FRESH_S = 120.0  # a reason older than this explains nothing of a new failure
LOG_AGAIN_S = 600.0  # the same kind of connection failure is logged again after this long


def security_settings(cfg, trouble: "ConnectionTrouble | None" = None) -> dict:
    """librdkafka settings of ``cfg``'s TLS, SASL and OAUTHBEARER keys (secrets included:
    for the client only)."""
    conf: dict = {}
    method = cfg.oauth_method()
    if method == "aws_msk_iam":
        conf["sasl.mechanism"] = "OAUTHBEARER"
        conf["oauth_cb"] = msk_iam_oauth_cb(cfg.aws_region, cfg.aws_profile, cfg.aws_role_arn, trouble)
    elif cfg.sasl_mechanism:
        conf["sasl.mechanism"] = cfg.sasl_mechanism
    if cfg.sasl_username:
        conf["sasl.username"] = cfg.sasl_username
    if cfg.sasl_password:
        conf["sasl.password"] = cfg.sasl_password.get()
    if method == "oidc":
        conf.update({"sasl.oauthbearer.method": "oidc",
                     "sasl.oauthbearer.client.id": cfg.sasl_oauthbearer_client_id,
                     "sasl.oauthbearer.client.secret": cfg.sasl_oauthbearer_client_secret.get(),
                     "sasl.oauthbearer.token.endpoint.url": cfg.sasl_oauthbearer_token_endpoint_url})
        if cfg.sasl_oauthbearer_scope:
            conf["sasl.oauthbearer.scope"] = cfg.sasl_oauthbearer_scope
    if cfg.security_protocol in ("SSL", "SASL_SSL"):
        for key in ("ssl_ca_location", "ssl_certificate_location", "ssl_key_location"):
            if getattr(cfg, key):
                conf[key.replace("_", ".")] = getattr(cfg, key)
        if cfg.ssl_key_password:
            conf["ssl.key.password"] = cfg.ssl_key_password.get()
        conf["ssl.endpoint.identification.algorithm"] = "https" if cfg.ssl_endpoint_identification else "none"
    return conf


NO_TOKEN = "eventscope-no-token"  # what the broker gets when no token could be signed
NO_TOKEN_RETRY_S = 30.0  # its lifetime: librdkafka asks for a new token before then


def msk_iam_oauth_cb(region: str, profile: str | None = None, role_arn: str | None = None,
                     trouble: "ConnectionTrouble | None" = None):
    """An ``oauth_cb`` for confluent-kafka that returns an AWS MSK IAM token (a SigV4-presigned
    ``kafka-cluster:Connect`` URL, base64url) for ``region``, signed with the default AWS
    credentials, ``profile``'s or ``role_arn``'s, and its expiry in seconds since the epoch.

    When no token can be signed (no credentials, a role that cannot be assumed) it returns a
    placeholder that lives :data:`NO_TOKEN_RETRY_S` and tells ``trouble`` why: an exception
    would make confluent-kafka wait 10 s and then refuse to build the client at all."""
    def oauth_cb(_oauthbearer_config):
        try:
            from aws_msk_iam_sasl_signer import MSKAuthTokenProvider  # only MSK IAM sources need it (and botocore)
            if role_arn:
                token, expiry_ms = MSKAuthTokenProvider.generate_auth_token_from_role_arn(region, role_arn)
            elif profile:
                token, expiry_ms = MSKAuthTokenProvider.generate_auth_token_from_profile(region, profile)
            else:
                token, expiry_ms = MSKAuthTokenProvider.generate_auth_token(region)
            return token, expiry_ms / 1000.0
        except Exception as exc:  # noqa: BLE001 - any failure to sign is told, never raised into librdkafka
            why = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, AttributeError) and "access_key" in str(exc):  # the signer's way of saying none
                why = "no AWS credentials were found (environment, AWS config files, instance or task role)"
            problem = f"AWS MSK IAM: no token could be signed for {region}: {why}"
            if trouble is not None:
                trouble.token_failed(problem)
            else:
                log.warning("%s", readable(problem))
            return NO_TOKEN, time.time() + NO_TOKEN_RETRY_S
    oauth_cb.msk_region = region  # what it signs for: for the settings' tests and messages
    return oauth_cb


# -- readable failures ----------------------------------------------------------------
# librdkafka's wording (matched anywhere, case-insensitive) -> what to tell the user
_READABLE = [
    (r"certificate verify failed|unable to get local issuer|self.signed certificate",
     "TLS: certificate verify failed (the broker's certificate is not signed by ssl_ca_location, "
     "or by a CA the system trusts)"),
    (r"hostname mismatch|IP address mismatch|does not match .*(host|name)",
     "TLS: the broker's certificate does not name the host connected to "
     "(ssl_endpoint_identification)"),
    (r"certificate required|peer did not return a certificate|alert handshake failure|alert bad certificate"
     r"|alert unknown ca|alert certificate unknown",
     "TLS: the broker refused the client certificate (mutual TLS: set ssl_certificate_location and "
     "ssl_key_location to a certificate the broker's CA signed)"),
    (r"ssl\.key\.location|ssl\.certificate\.location|ssl\.ca\.location|bad decrypt|private key",
     "TLS: the client certificate, key or CA file cannot be used (ssl_* locations, ssl_key_password)"),
    (r"wrong version number|packet length too long|record layer failure",
     "TLS: the broker does not speak TLS on this port (security_protocol)"),
    (r"invalid credentials|invalid username or password|authentication failed",
     "SASL: authentication failed: the broker refused the credentials (sasl_username, sasl_password)"),
    (r"failed to acquire sasl oauthbearer token|no token could be signed",
     "SASL OAUTHBEARER: no token could be obtained (the token endpoint, its client id and secret, "
     "or the AWS credentials)"),
    (r"invalid_token|invalid token|oauthbearer|jwt|token",
     "SASL OAUTHBEARER: the broker refused the token"),
    (r"unsupported sasl mechanism|sasl mechanism.*not (enabled|supported)",
     "SASL: the broker does not offer this sasl_mechanism"),
    (r"disconnected while requesting apiversion|incorrect security\.protocol",
     "the broker closed the connection at once (security_protocol may not match the listener)"),
]


def readable(text: str, secrets: tuple = ()) -> str:
    """librdkafka's error text as one line of at most 300 characters, with what it means first
    when known; every value of ``secrets`` is replaced by ``***``."""
    return _line(*_meaning(text, secrets))


def _meaning(text: str, secrets: tuple = ()) -> tuple[str | None, str]:
    """(what ``text`` means, or None; ``text`` cleaned: one line, no secret, no retry timing)."""
    text = redact(" ".join(str(text).split()), secrets)
    text = re.sub(r" \(after \d+ms in state \w+\)", "", text)  # the same failure reads the same each time
    text = re.sub(r"^[a-z_]+://([^/\s]+)/[^:\s]*: ", r"\1: ", text)  # sasl_ssl://host:port/bootstrap: -> host:port:
    for pattern, meaning in _READABLE:
        if re.search(pattern, text, re.IGNORECASE):
            return meaning, text
    return None, text


def _line(meaning: str | None, detail: str, limit: int = 300) -> str:
    line = f"{meaning}: {detail}" if meaning else detail
    return line if len(line) <= limit else line[:limit - 3].rstrip() + "..."


def redact(text: str, secrets: tuple) -> str:
    """``text`` with each non-empty value of ``secrets`` replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


class ConnectionTrouble:
    """The latest TLS or authentication failure a source's clients reported (``error_cb``),
    kept to explain the timeout or "all brokers down" a collector's call then fails with."""

    def __init__(self, secrets: tuple = ()):
        self.secrets = tuple(s for s in secrets if s)
        self.reason: str | None = None
        self.at = float("-inf")
        self.logged: str | None = None
        self.logged_at = float("-inf")
        self.token_problem: str | None = None
        self.token_problem_at = float("-inf")

    def error_cb(self, error: KafkaError) -> None:
        """librdkafka's error callback: keep a connection failure's reason."""
        code = error.code()
        text = error.str()
        if code in (KafkaError._SSL, KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED) \
                or (code == KafkaError._TRANSPORT and self._meaningful(text)):
            meaning, detail = _meaning(text, self.secrets)
            self.reason = _line(meaning, detail)
            self.at = time.monotonic()
            self._log(meaning or detail, self.reason)

    def token_failed(self, text: str) -> None:
        """No OAUTHBEARER token could be made (AWS MSK IAM): the reason, kept ahead of the
        broker's refusal of the placeholder sent instead."""
        self.token_problem = readable(text, self.secrets)
        self.token_problem_at = time.monotonic()
        self._log(self.token_problem, self.token_problem)

    def _log(self, kind: str, line: str) -> None:
        # once per kind of failure (librdkafka reports each retry, worded a little differently)
        if kind != self.logged or time.monotonic() - self.logged_at > LOG_AGAIN_S:
            self.logged, self.logged_at = kind, time.monotonic()
            log.warning("Kafka connection: %s", line)

    @staticmethod
    def _meaningful(text: str) -> bool:
        """A transport error worth keeping: a TLS failure, or a connection closed at once (a
        refused connection, a broker restarting, is not the security settings' doing)."""
        meaning, _ = _meaning(text)
        return bool(meaning) and (meaning.startswith("TLS") or "closed the connection" in meaning)

    def clear(self) -> None:
        """A call succeeded: what failed before explains nothing any more."""
        self.reason, self.at = None, float("-inf")

    def fresh(self) -> str | None:
        """The reason, if one came recently (a token that could not be made first: the
        broker's refusal of the placeholder only follows from it)."""
        if time.monotonic() - self.token_problem_at < TROUBLE_FRESH_S:
            return self.token_problem
        return self.reason if time.monotonic() - self.at < TROUBLE_FRESH_S else None

    def explain(self, exc: BaseException, *clients) -> BaseException:
        """``exc`` (raised by a client call) as an exception whose message leads with the
        connection failure's reason, when there is one; secrets taken out either way. Serves
        ``clients``' pending callbacks first (an admin client's ``error_cb`` runs in ``poll``)."""
        for client in clients:
            try:
                if client is not None and hasattr(client, "poll"):
                    client.poll(0)
            except Exception:  # noqa: BLE001 - serving callbacks is best effort
                pass
        reason = self.fresh()
        text = " ".join(str(exc).split())
        if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
            err = exc.args[0]
            text = f"{err.name()}: {err.str()}"
            if err.code() in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED,
                              KafkaError._SSL):
                reason = reason or readable(err.str(), self.secrets)
        if reason is None:
            if redact(text, self.secrets) == text:
                return exc  # nothing to add, nothing to take out
            return KafkaConnectionError(redact(text, self.secrets))
        text = redact(text, self.secrets)
        return KafkaConnectionError(reason)  # the call's own error ("all brokers down", a timeout) adds nothing


class KafkaConnectionError(RuntimeError):
    """A Kafka client call failed; the message says why, in one line without secrets."""
