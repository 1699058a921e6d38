"""Clients for the three Redis topologies, and what their failures mean in one line.

* ``standalone``: ``redis.Redis`` on ``url``.
* ``cluster``: ``redis.cluster.RedisCluster`` started from ``url`` (and ``cluster_nodes``);
  it learns the slot map with ``CLUSTER SLOTS`` and the key positions of commands with
  ``COMMAND``, then sends each stream command to the master owning the stream's slot, splits
  pipelines per node, and runs SCAN on every master.
* ``sentinel``: ``redis.sentinel.Sentinel`` asks the Sentinels (``SENTINEL MASTERS``) for
  ``sentinel_master``'s address whenever it (re)connects, so after a failover the next
  connection reaches the new master.

The ACL user, its password and TLS apply to every data node (and, in sentinel mode,
TLS to the Sentinels too; they have a user and password of their own).
"""
from __future__ import annotations

import re
import ssl
from urllib.parse import unquote, urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel

from eventscope.collectors.redis.config import RedisConfig, parse_address


def _tls_kwargs(cfg: RedisConfig) -> dict:
    if not cfg.tls():
        return {}
    kwargs = {"ssl_cert_reqs": cfg.ssl_cert_reqs,
              "ssl_check_hostname": bool(cfg.ssl_check_hostname) and cfg.ssl_cert_reqs != "none"}
    for key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if getattr(cfg, key):
            kwargs[key] = getattr(cfg, key)
    return kwargs


def _auth_kwargs(cfg: RedisConfig) -> dict:
    """The ACL user and password: the URL's userinfo, each overridden by its key
    (``username``, ``password``/``password_file``) when that is set."""
    kwargs = {}
    parts = urlsplit(cfg.url) if cfg.url else None
    if parts is not None and parts.username:
        kwargs["username"] = unquote(parts.username)
    if parts is not None and parts.password is not None:
        kwargs["password"] = unquote(parts.password)
    if cfg.username:
        kwargs["username"] = cfg.username
    if cfg.password:
        kwargs["password"] = cfg.password.get()
    return kwargs


def _url(cfg: RedisConfig) -> str:
    """The URL without its userinfo (:func:`_auth_kwargs` passes that on), its scheme
    ``rediss`` when ``ssl = true``."""
    parts = urlsplit(cfg.url)
    if parts.scheme == "unix":
        return cfg.url  # unix://[user:pw@]/path: redis-py reads the userinfo (keys still override)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    scheme = "rediss" if cfg.tls() else parts.scheme
    return urlunsplit(parts._replace(scheme=scheme, netloc=netloc))


class LazyClient:
    """A client made on first use (``RedisCluster`` reads the slot map when it is made): a
    cluster that cannot be reached when eventscope starts is a failed sample, tried again
    at the next one, not a failed start."""

    def __init__(self, factory):
        self._factory = factory
        self._client = None

    def __getattr__(self, name):
        if self._client is None:
            self._client = self._factory()
        return getattr(self._client, name)

    def close(self) -> None:
        """Close the client, if it was made."""
        if self._client is not None:
            self._client.close()


def _quick_retry(retries: int) -> Retry:
    """``retries`` more tries, 0.1 s then 0.2 s apart (redis-py's default backs off for seconds)."""
    return Retry(ExponentialBackoff(cap=0.5, base=0.1), retries)


def make_client(cfg: RedisConfig):
    """A client of the configured topology (it connects lazily, on the first command)."""
    timeouts = {"socket_timeout": cfg.timeout_s, "socket_connect_timeout": cfg.timeout_s}
    if cfg.mode == "sentinel":
        tls = {"ssl": True, **_tls_kwargs(cfg)} if cfg.tls() else {}
        sentinel_auth = {}
        if cfg.sentinel_username:
            sentinel_auth["username"] = cfg.sentinel_username
        if cfg.sentinel_password:
            sentinel_auth["password"] = cfg.sentinel_password.get()
        sentinel = Sentinel([parse_address(s, 26379) for s in cfg.sentinels],
                            sentinel_kwargs={**timeouts, **tls, **sentinel_auth, "retry": _quick_retry(1)},
                            **timeouts, **tls)
        # a short retry: the master's address is asked again at once (a failover moved it),
        # and a Sentinel that is down shows as a failed sample without seconds of backing off
        return sentinel.master_for(cfg.sentinel_master, **_auth_kwargs(cfg),
                                   retry=_quick_retry(2))
    if cfg.mode == "cluster":
        parts = urlsplit(_url(cfg))
        nodes = [ClusterNode(parts.hostname, parts.port or 6379)]
        nodes += [ClusterNode(*parse_address(n, 6379)) for n in cfg.cluster_nodes]
        tls = {"ssl": True, **_tls_kwargs(cfg)} if cfg.tls() else {}
        # one short retry: a master that is down shows as a failed sample at once, rather
        # than after seconds of backing off (redirections after a resharding are not retries)
        return LazyClient(lambda: RedisCluster(startup_nodes=nodes, **_auth_kwargs(cfg), **tls, **timeouts,
                                               retry=_quick_retry(1)))
    return redis.Redis.from_url(_url(cfg), **_auth_kwargs(cfg), **_tls_kwargs(cfg), **timeouts)


_TLS_VERIFY = re.compile(r"certificate verify failed: ([^(]*)", re.IGNORECASE)
_SENTINEL_ERROR = re.compile(r" - (?:\w+:)?(\w+Error)\b")
_ERRNO_TEXT = re.compile(r"Error -?\d+ connecting to ([^ ]+?)\.? (.*)$")


def explain(exc: BaseException, cfg: RedisConfig) -> str | None:
    """One line saying what went wrong in terms of the settings, or None to keep the
    client's own message. Never contains a secret (redis-py's messages have none either)."""
    text = " ".join(str(exc).split())
    user = cfg.username or (unquote(urlsplit(cfg.url).username or "") if cfg.url else "") or "default"
    if isinstance(exc, redis.exceptions.AuthenticationError) or "WRONGPASS" in text:
        return (f"Redis refused the login of user '{user}': wrong username or password, or the user is "
                f"disabled (redis.username, redis.password)")
    if isinstance(exc, redis.exceptions.NoPermissionError):
        if cfg.mode == "sentinel" and "'sentinel" in text:
            return (f"Sentinel user '{cfg.sentinel_username or 'default'}' may not ask where the master is: "
                    f"{text} (it needs +sentinel|masters)")
        return f"Redis user '{user}' may not run a command eventscope needs: {text} (README, \"Read-only rights\")"
    verify = _TLS_VERIFY.search(text)
    if verify or isinstance(exc, ssl.SSLCertVerificationError):
        why = verify.group(1).strip().rstrip(".") if verify else text
        where = _ERRNO_TEXT.search(text)
        at = f" at {where.group(1)}" if where else ""
        return (f"TLS: the Redis server's certificate{at} is not trusted ({why}): set redis.ssl_ca_certs to "
                f"the CA that signed it")
    if cfg.tls() and ("_ssl.c" in text or "SSL" in text):
        hint = ("the server may require a client certificate (redis.ssl_certfile, redis.ssl_keyfile)"
                if not cfg.ssl_certfile else "check redis.ssl_certfile and redis.ssl_keyfile")
        return f"TLS handshake with Redis failed ({text}): {hint}"
    if cfg.mode == "sentinel" and isinstance(exc, MasterNotFoundError):
        sentinels = ", ".join(cfg.sentinels)
        # redis-py appends each failed Sentinel's error class ("<client> - network:ConnectionError")
        errors = _SENTINEL_ERROR.findall(text)
        if "AuthenticationError" in errors:
            user = cfg.sentinel_username or "default"
            return (f"the Sentinels ({sentinels}) refused the login of user '{user}': wrong username or "
                    f"password (redis.sentinel_username, redis.sentinel_password)")
        if errors:
            why = ", ".join(dict.fromkeys(errors))
            return (f"no Sentinel reachable ({sentinels}) to find master '{cfg.sentinel_master}': {why} "
                    f"(redis.sentinels)")
        return (f"the Sentinels ({sentinels}) know no healthy master named '{cfg.sentinel_master}' "
                f"(redis.sentinel_master)")
    if cfg.mode == "cluster":
        if isinstance(exc, redis.exceptions.ClusterDownError) or "CLUSTERDOWN" in text:
            return f"Redis Cluster is down (a slot range has no reachable master): {text}"
        where = _ERRNO_TEXT.search(text)
        if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)) and where:
            return f"Redis Cluster node {where.group(1)} unreachable: {where.group(2)}"
        if isinstance(exc, redis.exceptions.RedisClusterException):
            return (f"Redis Cluster unreachable, or not a cluster, or the user may not read its slot map "
                    f"(+cluster|slots): {text}")
    return None
