"""Config: TOML + env overrides, validation with one-line errors, secrets hidden."""
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

    from eventscope.config import SECTIONS
    path = Path(__file__).resolve().parent.parent / "eventscope.example.toml"
    load_config(str(path), env={})
    text = path.read_text()
    for section, cls in SECTIONS.items():
        assert f"[{section}]" in text
        for f in fields(cls):
            assert f"{f.name} " in text or f"{f.name}=" in text, f"{section}.{f.name} undocumented"
            assert f"EVENTSCOPE_{section.upper()}_{f.name.upper()}" in text
