"""Redis beyond one plain server, on real servers: an ACL user over TLS (with a client
certificate), a Redis Cluster of three masters and a master found through Sentinel across a
failover. eventscope connects as a read-only ACL user everywhere, and every node's ACL LOG
stays empty; each failure it meets is one health line naming the setting and no secret."""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
import redis
from redis.cluster import RedisCluster

from conftest import (REDIS_RO_PASSWORD, REDIS_RO_USER, REDIS_SENTINEL_PASSWORD, REDIS_SENTINEL_USER)
from eventscope.config import load_config
from eventscope.localbrokers import HOST, free_port, make_tls_files
from eventscope.runner import Runner, build_collectors, open_store


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_for(tmp_path: Path, **keys):
    """A config with one ``[redis]`` section of ``keys``, loaded as eventscope loads its file."""
    path = tmp_path / f"eventscope-{len(list(tmp_path.glob('eventscope-*.toml')))}.toml"
    lines = ["[redis]"] + [f"{key} = {_toml(value)}" for key, value in keys.items()]
    lines += ["[store]", f"dir = {_toml(tmp_path / 'store')}"]
    path.write_text("\n".join(lines) + "\n")
    return load_config(path, env={})


def collector_for(tmp_path: Path, **keys):
    """The ``redis.streams`` collector of such a config."""
    return next(c for c in build_collectors(config_for(tmp_path, **keys)) if c.name == "redis.streams")


def health_of(tmp_path: Path, **keys) -> str:
    """The health line of one sample of such a config (it must have failed)."""
    config = config_for(tmp_path, **keys)
    collectors = [c for c in build_collectors(config) if c.name == "redis.streams"]
    try:
        row = Runner(open_store(config), collectors, interval_s=1).run_once(force=True).iloc[0]
    finally:
        for collector in collectors:
            collector.close()
    assert not row["ok"]
    return row["error"]


def node(address: str) -> str:
    return address.split("//", 1)[1].split("/")[0]


def denied(client, user: str = REDIS_RO_USER) -> list:
    return [(e["reason"], e["object"]) for e in client.acl_log(count=1000) if e["username"] == user]


def make_streams(client, names: list[str], entries: int = 5) -> dict[tuple[str, str], int]:
    """Streams of ``entries`` entries, each with a group that read some: (stream, group) -> lag."""
    lags = {}
    for i, name in enumerate(names):
        ids = [client.xadd(name, {"n": str(k), "event_type": "made"}) for k in range(entries)]
        read = i % (entries + 1)
        client.xgroup_create(name, "g", id=ids[read - 1] if read else "0")
        # entries-read is known only after a read: the group reads its share as a consumer would
        if read:
            client.xgroup_setid(name, "g", id=ids[read - 1], entries_read=read)
        lags[(name, "g")] = entries - read
    return lags


def lag_of(frames) -> dict[tuple[str, str], int]:
    lag = frames["lag"]
    return {(r.topic, r.group): int(r.lag) for r in lag.itertuples()}


def event_ids(frames) -> list[tuple[str, str]]:
    return [(r.topic, str(r.offset)) for r in frames["events"].itertuples()]


# --- ACL user over TLS ---------------------------------------------------------------------

def tls_keys(broker, **more) -> dict:
    return {"url": broker.address, "username": REDIS_RO_USER, "password": REDIS_RO_PASSWORD,
            "ssl_ca_certs": broker.tls["ssl_ca_certs"], "ssl_certfile": broker.tls["ssl_certfile"],
            "ssl_keyfile": broker.tls["ssl_keyfile"], **more}


def test_tls_with_client_certificate_as_the_read_only_user(redis_tls, tmp_path):
    admin = redis.Redis.from_url(redis_tls.address, decode_responses=True, **redis_tls.tls)
    admin.flushall()
    admin.acl_log_reset()
    lags = make_streams(admin, ["tls.orders", "tls.payments", "tls.orders.dlq"])
    collector = collector_for(tmp_path, **tls_keys(redis_tls))
    try:
        frames = collector.collect()
        assert set(frames["topics"]["topic"]) == {"tls.orders", "tls.payments", "tls.orders.dlq"}
        assert lag_of(frames) == lags
        assert len(event_ids(frames)) == 15
        assert set(frames["dlq"]["dlq"]) == {"tls.orders.dlq"}
        new = admin.xadd("tls.payments", {"n": "late"})
        assert event_ids(collector.collect_events()) == [("tls.payments", new)]
    finally:
        collector.close()
    assert denied(admin) == []
    admin.close()


def test_tls_and_login_failures_are_one_clear_line(redis_tls, tmp_path):
    other_ca = str(make_tls_files(Path(redis_tls.tls["ssl_ca_certs"]).parent).other_ca)  # signed nothing here
    line = health_of(tmp_path, **tls_keys(redis_tls, ssl_ca_certs=other_ca))
    assert "certificate" in line and "not trusted" in line and "ssl_ca_certs" in line, line
    assert node(redis_tls.address) in line
    line = health_of(tmp_path, **tls_keys(redis_tls, password="not-the-password"))
    assert f"refused the login of user '{REDIS_RO_USER}'" in line, line
    line = health_of(tmp_path, **tls_keys(redis_tls, username="nobody"))
    assert "refused the login of user 'nobody'" in line, line
    keys = tls_keys(redis_tls)
    del keys["ssl_certfile"], keys["ssl_keyfile"]  # the server asks for a client certificate
    line = health_of(tmp_path, **keys)
    assert "TLS handshake" in line and "ssl_certfile" in line, line
    for line in (health_of(tmp_path, **tls_keys(redis_tls, password="not-the-password")),):
        assert "not-the-password" not in line and REDIS_RO_PASSWORD not in line


def test_the_password_may_come_from_the_url(redis_tls, tmp_path):
    url = redis_tls.address.replace("rediss://", f"rediss://{REDIS_RO_USER}:{REDIS_RO_PASSWORD}@")
    keys = tls_keys(redis_tls, url=url)
    del keys["username"], keys["password"]
    collector = collector_for(tmp_path, **keys)
    try:
        assert "topics" in collector.collect()
    finally:
        collector.close()


# --- Redis Cluster ---------------------------------------------------------------------------

def cluster_admin(nodes) -> RedisCluster:
    host, port = node(nodes[0].address).split(":")
    return RedisCluster(host=host, port=int(port), decode_responses=True)


def test_cluster_every_master_every_stream_exact_lag_and_events(redis_cluster, tmp_path):
    admin = cluster_admin(redis_cluster)
    admin.flushall()
    per_node = [redis.Redis.from_url(n.address, decode_responses=True) for n in redis_cluster]
    for client in per_node:
        client.acl_log_reset()
    names = [f"c{i}" for i in range(24)] + ["c.dlq"]
    lags = make_streams(admin, names)
    held = [len(list(c.scan_iter(_type="stream"))) for c in per_node]
    assert sum(held) == len(names) and min(held) >= 3, held  # every master holds several
    collector = collector_for(tmp_path, url=redis_cluster[1].address, mode="cluster", username=REDIS_RO_USER,
                              password=REDIS_RO_PASSWORD, max_events_per_sample=100_000)
    try:
        frames = collector.collect()
        assert sorted(frames["topics"]["topic"]) == sorted(names)
        assert lag_of(frames) == lags
        seen = event_ids(frames)
        assert len(seen) == len(set(seen)) == 5 * len(names)
        assert list(frames["dlq"]["dlq"]) == ["c.dlq"]
        # a new entry on every master: read once by the event reader, not again by the full sample
        added = {(name, admin.xadd(name, {"n": "late"})) for name in names}
        assert set(event_ids(collector.collect_events())) == added
        assert event_ids(collector.collect()) == []
        assert lag_of(collector.collect()) == {key: lag + 1 for key, lag in lags.items()}
    finally:
        collector.close()
    assert [denied(c) for c in per_node] == [[], [], []]
    admin.close()


# --- Sentinel --------------------------------------------------------------------------------

def sentinel_keys(sentinel, **more) -> dict:
    return {"mode": "sentinel", "sentinels": [node(sentinel.address)], "sentinel_master": "mymaster",
            "sentinel_username": REDIS_SENTINEL_USER, "sentinel_password": REDIS_SENTINEL_PASSWORD,
            "username": REDIS_RO_USER, "password": REDIS_RO_PASSWORD, **more}


def master_of(sentinel_client) -> str:
    host, port = sentinel_client.sentinel_get_master_addr_by_name("mymaster")
    return f"{host}:{port}"


def test_sentinel_failover_loses_no_event(redis_sentinel, tmp_path):
    sentinel = redis.Redis.from_url(redis_sentinel["sentinel"].address, decode_responses=True)
    nodes = {node(b.address): redis.Redis.from_url(b.address, decode_responses=True)
             for b in (redis_sentinel["master"], redis_sentinel["replica"])}
    before = master_of(sentinel)
    admin = nodes[before]
    admin.flushall()
    for client in nodes.values():
        client.acl_log_reset()
    sentinel.execute_command("ACL", "LOG", "RESET")
    written = [("s.orders", admin.xadd("s.orders", {"n": str(i)})) for i in range(10)]
    collector = collector_for(tmp_path, **sentinel_keys(redis_sentinel["sentinel"]))
    read, failures = [], []
    try:
        read += event_ids(collector.collect())
        written += [("s.orders", admin.xadd("s.orders", {"n": str(i)})) for i in range(10, 15)]
        assert admin.wait(1, 5000) == 1  # the replica holds every entry before it takes over
        sentinel.execute_command("SENTINEL", "FAILOVER", "mymaster")
        deadline = time.monotonic() + 30
        while master_of(sentinel) == before or nodes[master_of(sentinel)].role()[0] != "master":
            assert time.monotonic() < deadline, "the failover did not finish in 30 s"
            time.sleep(0.1)
        after = master_of(sentinel)
        written += [("s.orders", nodes[after].xadd("s.orders", {"n": str(i)})) for i in range(15, 20)]
        while len(read) < len(written) and time.monotonic() < deadline:
            try:
                read += event_ids(collector.collect())
            except Exception as exc:  # the switch may cost a sample; it must say so and then go on
                failures.append(str(exc))
            time.sleep(0.2)
        assert read == written  # each exactly once, in order, across the failover
        assert len(failures) <= 1, failures
        # it reads the new master, not the old one (a replica now, which would serve reads too)
        users = {name: [c for c in client.client_list() if c.get("user") == REDIS_RO_USER]
                 for name, client in nodes.items()}
        assert users[after] and not users[before], users
        assert lag_of(collector.collect()) == {}
    finally:
        collector.close()
    assert [denied(c) for c in nodes.values()] == [[], []]
    sentinel_log = sentinel.execute_command("ACL", "LOG", "1000")
    assert [e for e in sentinel_log if REDIS_SENTINEL_USER in str(e)] == []
    for client in (sentinel, *nodes.values()):
        client.close()


def test_sentinel_failures_are_one_clear_line(redis_sentinel, tmp_path):
    sentinel = redis_sentinel["sentinel"]
    line = health_of(tmp_path, **sentinel_keys(sentinel, sentinel_master="nosuchmaster"))
    assert "know no healthy master named 'nosuchmaster'" in line, line
    dead = f"{HOST}:{free_port()}"
    line = health_of(tmp_path, **sentinel_keys(sentinel, sentinels=[dead]))
    assert f"no Sentinel reachable ({dead})" in line, line
    assert "ConnectionError" in line and "Redis(" not in line, line
    line = health_of(tmp_path, **sentinel_keys(sentinel, sentinel_password="wrong-sentinel-secret"))
    assert f"refused the login of user '{REDIS_SENTINEL_USER}'" in line and "sentinel_password" in line, line
    assert "wrong-sentinel-secret" not in line and REDIS_SENTINEL_PASSWORD not in line


# --- last: a cluster node goes down ----------------------------------------------------------

def test_cluster_node_down_is_one_clear_line(redis_cluster, tmp_path):
    victim = redis_cluster[2]
    keys = {"url": redis_cluster[0].address, "mode": "cluster", "username": REDIS_RO_USER,
            "password": REDIS_RO_PASSWORD}
    victim.kill()
    try:
        line = health_of(tmp_path, **keys)
        assert f"Redis Cluster node {node(victim.address)} unreachable" in line \
            or "Redis Cluster is down" in line, line
        assert REDIS_RO_PASSWORD not in line
    finally:
        victim.restart()
        client = redis.Redis.from_url(victim.address, decode_responses=True)
        deadline = time.monotonic() + 20
        while "cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        client.execute_command("ACL", "SETUSER", REDIS_RO_USER, "reset", "on", ">" + REDIS_RO_PASSWORD,
                               "~*", "resetchannels", "-@all", "+@read", "-@dangerous", "+cluster|slots",
                               "+command")
        client.close()
