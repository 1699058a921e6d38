"""What the store could not keep is said where people look: a damaged part's missing rows
in the dashboard's sidebar and on the CLI's standard error."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
from streamlit.testing.v1 import AppTest

from eventscope import schemas
from eventscope.store import Retention, Store

APP = str(Path(__file__).resolve().parents[2] / "app.py")
CLI = str(Path(sys.executable).with_name("eventscope"))


def _damaged_store(root: Path) -> str:
    """Three samples of DLQ rows, the middle part truncated; returns the damaged file's name."""
    now = pd.Timestamp.now(tz="UTC").floor("s")
    store = Store(root, Retention(compact_every=1000))
    for k in range(3):
        at = now - pd.Timedelta(minutes=3 - k)
        store.append("dlq", schemas.conform("dlq", [{"sampled_at": at, "source": "kafka", "broker": "kafka",
                                                      "dlq": "orders.DLT", "depth": k, "reasons": "{}"}]))
    part = store.part_entries("dlq")[1]["file"]
    path = root / "dlq" / part
    path.write_bytes(path.read_bytes()[:100])
    return part


def test_the_cli_names_the_missing_rows(tmp_path):
    """Found while answering (a warning naming the part and its time range), and once the
    collector has moved the part aside (a notice from the manifest's record)."""
    part = _damaged_store(tmp_path / "store")

    def dlq_command():
        done = subprocess.run([CLI, "dlq", "--json"], env={"EVENTSCOPE_STORE": str(tmp_path / "store"),
                                                           "PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done
    found = dlq_command()
    assert f"dlq part {part} (1 rows, " in found.stderr and "cannot be read and is skipped" in found.stderr
    assert '"depth": 2' in found.stdout  # the newest sample is still answered
    Store(tmp_path / "store").compact("dlq")  # what the collector's next compaction does
    moved = dlq_command()
    assert f"eventscope: 1 dlq rows from " in moved.stderr and part in moved.stderr, moved.stderr
    assert "could not be read" in moved.stderr and "cannot be read and is skipped" not in moved.stderr


def test_the_sidebar_names_the_missing_rows(tmp_path, monkeypatch):
    """On every page, whichever frames the page reads: from the manifest's record."""
    _damaged_store(tmp_path / "store")
    Store(tmp_path / "store").compact("dlq")
    monkeypatch.setenv("EVENTSCOPE_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("EVENTSCOPE_DASHBOARD_COLLECT", "off")
    for name in ("EVENTSCOPE_KAFKA_BOOTSTRAP", "EVENTSCOPE_REDIS_URL", "EVENTSCOPE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("pages/dead_letters.py").run()
    assert not at.exception
    notes = [c.value for c in at.sidebar.caption if "are missing" in c.value]
    assert len(notes) == 1 and "**dlq**: 1 rows from" in notes[0] and "could not be read" in notes[0], notes
