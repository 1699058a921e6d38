"""The docs keep up with the code: frame schemas, CLI fields, the two commands."""
from pathlib import Path

from eventscope import schemas

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_every_frame_schema_is_in_the_readme():
    for name in schemas.SCHEMAS:
        assert schemas.markdown_table(name) in README, f"README's table for frame {name!r} is stale"


def test_cli_fields_are_documented():
    for field in ("committed", "lag_seconds", "status", "sampled_at", "growth_per_min",
                  "oldest_age_seconds", "reasons", "correlation_id", "outcome", "hops", "--exit-code"):
        assert field in README, field


def test_two_commands_and_ci():
    assert "make run" in README and "make test" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    makefile = (ROOT / "Makefile").read_text()
    assert "STRICT_REAL_BROKERS=1" in makefile
