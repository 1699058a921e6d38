"""Config: TOML + env overrides, validation with one-line errors, secrets hidden."""
import json
import subprocess
import sys

import pytest

from eventscope.config import ConfigError, load_config


def write(tmp_path, text):
    path = tmp_path / "eventscope.toml"
    path.write_text(text)
    return str(path)


def test_defaults_mean_sample_data_replay():
    cfg = load_config(env={})
    assert not cfg.live
    assert cfg.sources_summary()[0]["source"] == "replay"


def test_toml_and_env_override(tmp_path):
    path = write(tmp_path, '[kafka]\nbootstrap = "k1:9092"\n[collect]\ninterval_s = 3\n')
    cfg = load_config(path, env={"EVENTSCOPE_KAFKA_BOOTSTRAP": "k2:9092",
                                 "EVENTSCOPE_COLLECT_INTERVAL_S": "7.5"})
    assert cfg.kafka.bootstrap == "k2:9092"
    assert cfg.collect.interval_s == 7.5
    assert cfg.live


@pytest.mark.parametrize("text, env, expected", [
    ("[kafka\nbootstrap = 1", {}, "invalid TOML"),
    ("[kafka]\nbootstrp = 'x'\n", {}, "unknown config key kafka.bootstrp"),
    ("[kafkaa]\n", {}, "unknown config section [kafkaa]"),
    ("[collect]\ninterval_s = 'fast'\n", {}, "collect.interval_s: expected float"),
    ("", {"EVENTSCOPE_COLLECT_INTERVAL_S": "soon"}, "EVENTSCOPE_COLLECT_INTERVAL_S: expected float"),
    ("", {"EVENTSCOPE_KAFKA_BOOTSTRAPS": "x"}, "unknown config key EVENTSCOPE_KAFKA_BOOTSTRAPS"),
    ("", {"EVENTSCOPE_NOPE": "x"}, "unknown environment variable EVENTSCOPE_NOPE"),
    ("[collect]\ninterval_s = -1\n", {}, "collect.interval_s must be > 0"),
    ("[redis]\nurl = 'http://x'\n", {}, "redis.url must start with"),
    ("[kafka]\ntopics = '('\n", {}, "kafka.topics: invalid regular expression"),
])
def test_bad_config_gives_one_line_error_naming_the_problem(tmp_path, text, env, expected):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), env=env)
    message = str(err.value)
    assert expected in message
    assert "\n" not in message


def test_secrets_never_print(tmp_path):
    path = write(tmp_path, '[kafka]\nbootstrap = "k:1"\nsasl_password = "hunter2"\n'
                           '[redis]\nurl = "redis://u:topsecret@h:6379/0"\n')
    cfg = load_config(path, env={"EVENTSCOPE_REDIS_PASSWORD": "s3cr3t"})
    shown = repr(cfg) + str(cfg.sources_summary())
    for secret in ("hunter2", "topsecret", "s3cr3t"):
        assert secret not in shown
    assert cfg.kafka.sasl_password.get() == "hunter2"
    assert cfg.redis.password.get() == "s3cr3t"


def test_a_secret_is_read_from_its_file_and_again_on_each_use(tmp_path):
    """``password_file`` (a Kubernetes secret mount): the file's text without its newline,
    read again when the secret is used, so a rotated secret reaches the next connection."""
    secret = tmp_path / "pw"
    secret.write_text("m0unted\n")
    path = write(tmp_path, f'[redis]\nurl = "redis://h:6379/0"\npassword_file = "{secret}"\n')
    cfg = load_config(path, env={"EVENTSCOPE_KAFKA_BOOTSTRAP": "k:1",
                                 "EVENTSCOPE_KAFKA_SASL_PASSWORD_FILE": str(secret)})
    assert cfg.redis.password.get() == "m0unted" and cfg.kafka.sasl_password.get() == "m0unted"
    assert "m0unted" not in repr(cfg) + str(cfg.sources_summary())
    secret.write_text("r0tated")
    assert cfg.redis.password.get() == "r0tated"
    secret.unlink()  # a mount being swapped: the last value read, not an error
    assert cfg.redis.password.get() == "r0tated"


@pytest.mark.parametrize("value, expected", [("/nonexistent/pw", "cannot read '/nonexistent/pw': No such file"),
                                             ("", "expected the path of a file holding password")])
def test_an_unreadable_secret_file_is_a_one_line_error(value, expected):
    with pytest.raises(ConfigError, match=f"^EVENTSCOPE_REDIS_PASSWORD_FILE: {expected}"):
        load_config(env={"EVENTSCOPE_REDIS_URL": "redis://h", "EVENTSCOPE_REDIS_PASSWORD_FILE": value})


def test_only_a_secret_has_a_file_twin():
    with pytest.raises(ConfigError, match="^unknown config key EVENTSCOPE_REDIS_URL_FILE$"):
        load_config(env={"EVENTSCOPE_REDIS_URL_FILE": "/etc/hostname"})


@pytest.mark.parametrize("url", ["redis://h:6379/0?password=qu3ry&db=1", "unix:///run/redis.sock?password=qu3ry",
                                 "rediss://u:qu3ry@h:6380/0?ssl_cert_reqs=none&password=qu3ry"])
def test_a_password_in_the_url_query_never_prints(url):
    """redis-py takes ``?password=`` in the URL too: shown like a userinfo password."""
    cfg = load_config(env={"EVENTSCOPE_REDIS_URL": url})
    shown = repr(cfg) + str(cfg.sources_summary())
    assert "qu3ry" not in shown and "password=***" in shown
    assert cfg.redis.url == url  # what the client is given is untouched


def test_cli_reports_config_error_in_one_line(tmp_path):
    path = write(tmp_path, "[store]\nretention = 3\n")
    proc = subprocess.run([sys.executable, "-m", "eventscope.cli", "--config", path, "lag", "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "eventscope: config error: unknown config key store.retention"


def test_reference_config_loads_and_documents_every_key():
    from dataclasses import fields
    from pathlib import Path

    from eventscope.config import sections
    path = Path(__file__).resolve().parents[2] / "eventscope.example.toml"
    load_config(str(path), env={})
    text = path.read_text()
    for section, cls in sections().items():  # every broker kind's section too
        assert f"[{section}]" in text
        for f in fields(cls):
            assert f"{f.name} " in text or f"{f.name}=" in text, f"{section}.{f.name} undocumented"
            assert f"EVENTSCOPE_{section.upper()}_{f.name.upper()}" in text


# -- [[sources]]: named clusters of any registered kind ---------------------------------------
TWO_KAFKAS = '''
[[sources]]
name = "prod-eu"
kind = "kafka"
bootstrap = "eu:9092"

[[sources]]
name = "prod-us"
kind = "kafka"
bootstrap = "us:9092"
'''


def test_sources_are_named_clusters_of_their_kind(tmp_path):
    cfg = load_config(write(tmp_path, TWO_KAFKAS + '[[sources]]\nname = "cache"\nkind = "redis"\n'
                                                   'url = "redis://r:6379/0"\n'), env={})
    assert [(s.name, s.kind, s.address()) for s in cfg.all_sources()] == [
        ("prod-eu", "kafka", "eu:9092"), ("prod-us", "kafka", "us:9092"), ("cache", "redis", "redis://r:6379/0")]
    assert cfg.live
    assert [(s["source"], s["broker"], s["kind"]) for s in cfg.sources_summary()] == [
        ("prod-eu", "prod-eu", "kafka"), ("prod-us", "prod-us", "kafka"), ("cache", "cache", "redis")]


def test_a_kind_s_section_alone_is_one_cluster_named_after_the_kind(tmp_path):
    cfg = load_config(env={"EVENTSCOPE_KAFKA_BOOTSTRAP": "k:9092", "EVENTSCOPE_RABBITMQ_URL": "http://mq:15672"})
    assert [(s.name, s.kind) for s in cfg.all_sources()] == [("kafka", "kafka"), ("rabbitmq", "rabbitmq")]
    both = load_config(write(tmp_path, TWO_KAFKAS), env={"EVENTSCOPE_KAFKA_BOOTSTRAP": "k:9092"})
    assert [s.name for s in both.all_sources()] == ["kafka", "prod-eu", "prod-us"]


def test_a_kind_s_section_gives_its_sources_their_defaults_but_not_its_address(tmp_path):
    cfg = load_config(write(tmp_path, '[kafka]\ntopics = "^shop\\\\."\nsasl_username = "watcher"\n'
                                      'sasl_password = "s3cret-default"\ntimeout_s = 3.0\n' + TWO_KAFKAS +
                            '[[sources]]\nname = "legacy"\nkind = "kafka"\nbootstrap = "old:9092"\n'
                            'topics = "^legacy"\n'), env={})
    assert not cfg.kafka.bootstrap and [s.name for s in cfg.all_sources()] == ["prod-eu", "prod-us", "legacy"]
    eu, us, legacy = (s.settings for s in cfg.all_sources())
    assert (eu.topics, eu.sasl_username, eu.sasl_password.get(), eu.timeout_s) == ("^shop\\.", "watcher",
                                                                                  "s3cret-default", 3.0)
    assert (us.bootstrap, us.topics) == ("us:9092", "^shop\\.")
    assert (legacy.bootstrap, legacy.topics, legacy.sasl_username) == ("old:9092", "^legacy", "watcher")
    assert eu is not us and eu.dlq_topics is not us.dlq_topics  # each its own copy
    # the section's address is its own cluster's, never a default: a source without one is an error
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, '[kafka]\nbootstrap = "k:9092"\n[[sources]]\nname = "b"\nkind = "kafka"\n'),
                    env={})
    assert str(err.value) == "sources[0] (b): set bootstrap"


@pytest.mark.parametrize("entry, expected", [
    ('name = "a"\nkind = "kafkaa"\nbootstrap = "k:1"', "sources[0].kind: expected one of kafka, rabbitmq, redis, got 'kafkaa'"),
    ('name = "a"\nbootstrap = "k:1"', "sources[0].kind: expected one of kafka, rabbitmq, redis, got None"),
    ('kind = "kafka"\nbootstrap = "k:1"', "sources[0].name: expected 1-63 letters"),
    ('name = "eu west"\nkind = "kafka"\nbootstrap = "k:1"', "sources[0].name: expected 1-63 letters"),
    ('name = "a:b"\nkind = "kafka"\nbootstrap = "k:1"', "sources[0].name: expected 1-63 letters"),
    ('name = "-a"\nkind = "kafka"\nbootstrap = "k:1"', "sources[0].name: expected 1-63 letters"),
    (f'name = "{"a" * 64}"\nkind = "kafka"\nbootstrap = "k:1"', "sources[0].name: expected 1-63 letters"),
    ('name = 7\nkind = "kafka"\nbootstrap = "k:1"', "sources[0].name: expected 1-63 letters"),
    ('name = "replay"\nkind = "kafka"\nbootstrap = "k:1"', "(not otel, replay), got 'replay'"),
    ('name = "otel"\nkind = "redis"\nurl = "redis://r:1/0"', "(not otel, replay), got 'otel'"),
    ('name = "a"\nkind = "kafka"', "sources[0] (a): set bootstrap"),
    ('name = "a"\nkind = "redis"', "sources[0] (a): set url"),
    ('name = "a"\nkind = "rabbitmq"\nusername = "u"', "sources[0] (a): set url"),
    ('name = "a"\nkind = "kafka"\nbootstrp = "k:1"', "unknown config key sources[0].bootstrp"),
    ('name = "a"\nkind = "kafka"\nbootstrap = "k:1"\ntimeout_s = "soon"', "sources[0].timeout_s: expected float"),
    ('name = "a"\nkind = "kafka"\nbootstrap = "k:1"\nsecurity_protocol = "TLS"',
     "sources[0].security_protocol must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (a)"),
    ('name = "a"\nkind = "redis"\nurl = "http://r"', "sources[0].url must start with redis://, rediss:// or unix:// (a)"),
    ('name = "a"\nkind = "rabbitmq"\nurl = "amqp://mq"', "sources[0].url: 'amqp://mq' is not an http:// or https:// URL (a)"),
])
def test_a_bad_source_is_a_one_line_error_naming_it(tmp_path, entry, expected):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, f"[[sources]]\n{entry}\n"), env={})
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_a_name_names_one_source(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, TWO_KAFKAS.replace("prod-us", "prod-eu")), env={})
    assert str(err.value) == "sources[1].name: 'prod-eu' names two sources"
    # a kind's own section is the source named after the kind
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, '[[sources]]\nname = "redis"\nkind = "redis"\nurl = "redis://r:1/0"\n'),
                    env={"EVENTSCOPE_REDIS_URL": "redis://other:1/0"})
    assert str(err.value) == "sources[0].name: 'redis' names two sources"
    with pytest.raises(ConfigError):  # not even across kinds
        load_config(write(tmp_path, TWO_KAFKAS + '[[sources]]\nname = "prod-us"\nkind = "redis"\n'
                                                 'url = "redis://r:1/0"\n'), env={})


@pytest.mark.parametrize("text", ["[sources]\nname = 'a'\n", "sources = 'a'\n", "sources = ['a']\n"])
def test_sources_must_be_an_array_of_tables(tmp_path, text):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), env={})
    assert str(err.value).startswith("sources") and "\n" not in str(err.value)


def test_sources_from_the_environment_replace_the_file_s(tmp_path):
    env = {"EVENTSCOPE_SOURCES": json.dumps([{"name": "cache-a", "kind": "redis", "url": "redis://a:6379/0"},
                                             {"name": "mq", "kind": "rabbitmq", "url": "http://mq:15672",
                                              "vhosts": ["/", "shop"]}]),
           "EVENTSCOPE_REDIS_STREAM_PATTERN": "orders*"}  # the kind's section still gives defaults
    cfg = load_config(write(tmp_path, TWO_KAFKAS), env=env)
    assert [(s.name, s.kind) for s in cfg.all_sources()] == [("cache-a", "redis"), ("mq", "rabbitmq")]
    assert cfg.all_sources()[0].settings.stream_pattern == "orders*"
    assert cfg.all_sources()[1].settings.vhosts == ["/", "shop"]
    for value, expected in [("not json", "EVENTSCOPE_SOURCES: expected a JSON array of objects"),
                            ('{"name": "a"}', "EVENTSCOPE_SOURCES: expected an array of tables"),
                            ('[{"name": "a", "kind": "kafka"}]', "EVENTSCOPE_SOURCES[0] (a): set bootstrap"),
                            ('["a"]', "EVENTSCOPE_SOURCES[0]: expected a table")]:
        with pytest.raises(ConfigError) as err:
            load_config(env={"EVENTSCOPE_SOURCES": value})
        assert str(err.value).startswith(expected), (value, str(err.value))


SOURCE_SECRETS = ("kafka-pw-1", "redis-url-pw-2", "redis-pw-3", "mq-pw-4", "mq-url-pw-5", "connect-pw-6",
                  "default-pw-7")


def test_secrets_of_sources_never_print(tmp_path):
    path = write(tmp_path, '''
[kafka]
sasl_password = "default-pw-7"
[[sources]]
name = "k"
kind = "kafka"
bootstrap = "k:9092"
sasl_username = "u"
sasl_password = "kafka-pw-1"
connect_urls = ["http://admin:connect-pw-6@connect:8083"]
[[sources]]
name = "k2"
kind = "kafka"
bootstrap = "k2:9092"
[[sources]]
name = "r"
kind = "redis"
url = "redis://u:redis-url-pw-2@r:6379/0"
password = "redis-pw-3"
[[sources]]
name = "mq"
kind = "rabbitmq"
url = "http://admin:mq-url-pw-5@mq:15672"
password = "mq-pw-4"
''')
    cfg = load_config(path, env={})
    shown = repr(cfg) + str(cfg) + repr(cfg.all_sources()) + json.dumps(cfg.sources_summary())
    for secret in SOURCE_SECRETS:
        assert secret not in shown, secret
    assert [s["address"] for s in cfg.sources_summary()] == [
        "k:9092", "k2:9092", "redis://u:***@r:6379/0", "http://admin:***@mq:15672"]
    k, k2, r, mq = (s.settings for s in cfg.all_sources())
    assert (k.sasl_password.get(), k2.sasl_password.get(), r.password.get(), mq.password.get()) == (
        "kafka-pw-1", "default-pw-7", "redis-pw-3", "mq-pw-4")
    assert k.connect_urls == ["http://admin:connect-pw-6@connect:8083"]  # what the client is given is whole


def test_the_cli_prints_no_secret_of_a_source(tmp_path):
    path = write(tmp_path, '[[sources]]\nname = "mq"\nkind = "rabbitmq"\nurl = "http://admin:mq-url-pw-5@127.0.0.1:9/"\n'
                           'password = "mq-pw-4"\ntimeout_s = 1.0\n'
                           f'[store]\ndir = "{tmp_path / "store"}"\n')
    proc = subprocess.run([sys.executable, "-m", "eventscope.cli", "--config", path, "collect", "--once"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1  # nobody listens there
    assert "collecting mq (http://admin:***@127.0.0.1:9/)" in proc.stderr
    assert "mq/rabbitmq" in proc.stderr and "FAILED" in proc.stderr
    for secret in ("mq-pw-4", "mq-url-pw-5"):
        assert secret not in proc.stderr + proc.stdout
