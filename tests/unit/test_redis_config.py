"""The ``[redis]`` settings of an ACL user, TLS, Redis Cluster and Sentinel: how they load,
what is refused (one line naming the key, never a secret) and which client each builds."""
from __future__ import annotations

import pytest
import redis
from redis.cluster import RedisCluster

from eventscope.collectors.redis.config import RedisConfig, address, check, configured
from eventscope.collectors.redis.connect import explain, make_client
from eventscope.config import ConfigError, load_config
from eventscope.localbrokers import HOST, free_port
from eventscope.runner import build_collectors
from eventscope.secrets import Secret


def problems(**keys) -> list[str]:
    secrets = {k: Secret(keys.pop(k)) for k in ("password", "sentinel_password") if k in keys}
    return check(RedisConfig(**keys, **secrets), "redis")


def test_the_keys_load_from_the_environment():
    cfg = load_config(env={"EVENTSCOPE_REDIS_MODE": "sentinel", "EVENTSCOPE_REDIS_SENTINELS": "s1:26379, s2",
                           "EVENTSCOPE_REDIS_SENTINEL_MASTER": "mymaster",
                           "EVENTSCOPE_REDIS_SENTINEL_PASSWORD": "sentinel-secret",
                           "EVENTSCOPE_REDIS_USERNAME": "eventscope", "EVENTSCOPE_REDIS_PASSWORD": "data-secret",
                           "EVENTSCOPE_REDIS_SSL": "true", "EVENTSCOPE_REDIS_SSL_CERT_REQS": "optional"})
    [source] = cfg.all_sources()
    settings = source.settings
    assert (settings.sentinels, settings.sentinel_master, settings.username) == (["s1:26379", "s2"], "mymaster",
                                                                                  "eventscope")
    assert settings.sentinel_password.get() == "sentinel-secret" and settings.tls()
    assert source.address() == "sentinel s1:26379,s2 master mymaster"
    assert "secret" not in repr(settings) and "secret" not in source.address()


def test_a_sentinel_password_may_come_from_a_file(tmp_path):
    (tmp_path / "pw").write_text("from-file\n")
    cfg = load_config(env={"EVENTSCOPE_REDIS_MODE": "sentinel", "EVENTSCOPE_REDIS_SENTINELS": "s1",
                           "EVENTSCOPE_REDIS_SENTINEL_MASTER": "m",
                           "EVENTSCOPE_REDIS_SENTINEL_PASSWORD_FILE": str(tmp_path / "pw")})
    assert cfg.all_sources()[0].settings.sentinel_password.get() == "from-file"


@pytest.mark.parametrize("keys, expected", [
    ({"url": "redis://h/0", "mode": "replicated"}, "redis.mode must be one of standalone, cluster, sentinel"),
    ({"url": "rediss://h/0", "ssl_cert_reqs": "maybe"}, "redis.ssl_cert_reqs must be one of"),
    ({"url": "rediss://h/0", "ssl_certfile": "c.crt"}, "redis.ssl_certfile and redis.ssl_keyfile go together"),
    ({"url": "redis://h/0", "ssl_ca_certs": "ca.crt"}, "TLS is off"),
    ({"url": "redis://h/3", "mode": "cluster"}, "database 0 only"),
    ({"mode": "cluster"}, "needs redis.url"),
    ({"url": "redis://h/0", "cluster_nodes": ["a:1"]}, "redis.cluster_nodes is set but redis.mode"),
    ({"url": "redis://h/0", "mode": "cluster", "cluster_nodes": ["a:notaport"]}, "redis.cluster_nodes: not host:port"),
    ({"mode": "sentinel", "sentinel_master": "m"}, "needs redis.sentinels"),
    ({"mode": "sentinel", "sentinels": ["s:26379"]}, "needs redis.sentinel_master"),
    ({"mode": "sentinel", "sentinels": ["s"], "sentinel_master": "m", "url": "redis://h"}, "unset redis.url"),
    ({"url": "redis://h/0", "sentinels": ["s"]}, "sentinel* keys are set but redis.mode"),
    ({"url": "redis+sentinel://s:26379/m"}, "a Sentinel setup takes mode = \"sentinel\", redis.sentinels and redis.sentinel_master"),
])
def test_refused_settings_are_one_line_naming_the_key(keys, expected):
    found = problems(**keys)
    assert any(expected in p for p in found), found
    assert not any("secret" in p or ":pw@" in p for p in found)


@pytest.mark.parametrize("keys", [
    {"url": "redis://u:pw@h/0"},
    {"url": "redis://h/0", "username": "u", "password": "pw"},
    {"url": "redis://u@h/0", "username": "u", "password": "pw"},
    {"url": "redis://alice:pw@h/0", "username": "bob", "password": "other"},
    {"url": "rediss://h/0", "ssl_ca_certs": "ca", "ssl_certfile": "c", "ssl_keyfile": "k"},
    {"url": "redis://h/0", "ssl": True, "ssl_cert_reqs": "none"},
    {"url": "redis://h:7000", "mode": "cluster", "cluster_nodes": ["h2:7001", "[::1]:7002"]},
    {"mode": "sentinel", "sentinels": ["s1:26379", "s2"], "sentinel_master": "m", "sentinel_password": "x"},
])
def test_accepted_settings(keys):
    assert problems(**keys) == []


def test_each_mode_builds_its_client():
    plain = make_client(RedisConfig(url="redis://h:1/0", username="u", password=Secret("pw")))
    assert isinstance(plain, redis.Redis)
    kwargs = plain.connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["port"]) == ("u", "pw", 1)
    tls = make_client(RedisConfig(url="redis://h:1/0", ssl=True, ssl_ca_certs="ca.crt", ssl_cert_reqs="none"))
    kwargs = tls.connection_pool.connection_kwargs
    assert tls.connection_pool.connection_class is redis.SSLConnection
    assert (kwargs["ssl_ca_certs"], kwargs["ssl_cert_reqs"], kwargs["ssl_check_hostname"]) == ("ca.crt", "none", False)
    sentinel = make_client(RedisConfig(mode="sentinel", sentinels=["s1:26380", "s2"], sentinel_master="m",
                                       sentinel_username="su", sentinel_password=Secret("spw"),
                                       username="u", password=Secret("pw")))
    pool = sentinel.connection_pool
    assert pool.service_name == "m" and pool.connection_kwargs["username"] == "u"
    assert [(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"],
             s.connection_pool.connection_kwargs["username"], s.connection_pool.connection_kwargs["password"])
            for s in pool.sentinel_manager.sentinels] == [("s1", 26380, "su", "spw"), ("s2", 26379, "su", "spw")]


def test_the_keys_override_the_url_s_user_and_password():
    kwargs = make_client(RedisConfig(url="redis://alice:url-pw@h:1/0", username="bob",
                                     password=Secret("key-pw"))).connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"]) == ("bob", "key-pw")
    kwargs = make_client(RedisConfig(url="redis://alice:url%40pw@h:1/0")).connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"]) == ("alice", "url@pw")


def test_a_cluster_client_is_a_redis_cluster(monkeypatch):
    made = {}
    monkeypatch.setattr(RedisCluster, "__init__", lambda self, **kw: made.update(kw))
    client = make_client(RedisConfig(url="rediss://u:pw@h:7000", mode="cluster", cluster_nodes=["h2:7001"],
                                     ssl_ca_certs="ca"))
    assert made == {}  # made on first use
    client.get_nodes  # noqa: B018
    assert [(n.host, n.port) for n in made["startup_nodes"]] == [("h", 7000), ("h2", 7001)]
    assert (made["username"], made["password"], made["ssl"], made["ssl_ca_certs"]) == ("u", "pw", True, "ca")


def test_configured_and_address_never_show_a_secret():
    assert not configured(RedisConfig())
    assert configured(RedisConfig(url="redis://h"))
    assert configured(RedisConfig(mode="sentinel", sentinels=["s"]))
    assert address(RedisConfig(url="redis://u:pw@h:7000", mode="cluster")) == "cluster redis://u:***@h:7000"


def test_failures_explained_without_secrets():
    cfg = RedisConfig(url="redis://alice:pw@h/0")
    line = explain(redis.AuthenticationError("invalid username-password pair or user is disabled."), cfg)
    assert "user 'alice'" in line and "pw" not in line.replace("password", "")
    assert explain(redis.ResponseError("WRONGTYPE"), cfg) is None  # the client's own message stays


def test_bad_types_are_config_errors():
    with pytest.raises(ConfigError, match="EVENTSCOPE_REDIS_SSL: expected bool"):
        load_config(env={"EVENTSCOPE_REDIS_URL": "redis://h", "EVENTSCOPE_REDIS_SSL": "perhaps"})


def test_a_refused_sentinel_command_names_the_sentinel_user():
    cfg = RedisConfig(mode="sentinel", sentinels=["s"], sentinel_master="m", sentinel_username="watcher",
                      username="reader")
    refused = redis.exceptions.NoPermissionError("this user has no permissions to run the 'sentinel|masters' command")
    assert explain(refused, cfg).startswith("Sentinel user 'watcher' may not ask where the master is")
    refused = redis.exceptions.NoPermissionError("this user has no permissions to run the 'xinfo|stream' command")
    assert explain(refused, cfg).startswith("Redis user 'reader' may not run a command eventscope needs")


def test_an_unreachable_cluster_is_a_failed_sample_not_a_failed_start():
    dead = f"redis://{HOST}:{free_port()}"
    cfg = load_config(env={"EVENTSCOPE_REDIS_URL": dead, "EVENTSCOPE_REDIS_MODE": "cluster",
                           "EVENTSCOPE_REDIS_PASSWORD": "cluster-secret"})
    [collector] = [c for c in build_collectors(cfg) if c.name == "redis.streams"]
    with pytest.raises(ConnectionError) as caught:
        collector.collect()
    assert str(caught.value).startswith("Redis Cluster") and "cluster-secret" not in str(caught.value)
    collector.close()
