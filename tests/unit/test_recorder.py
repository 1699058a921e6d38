"""The recorder's snapshots and rollups equal what the raw rows they stand for say."""
from __future__ import annotations

import numpy as np
import pandas as pd

from eventscope import schemas
from eventscope.analysis import lag as lag_analysis
from eventscope.recorder import Recorder
from eventscope.store import Store

SEVERITY = lag_analysis.SEVERITY


def samples(start: pd.Timestamp, count: int, every_s: float = 5.0, seed: int = 7) -> list[pd.DataFrame]:
    """Lag samples of 6 groups × 2 topics × 3 partitions: healthy, lagging, stalled, rewinding,
    unknown and one that vanishes halfway."""
    rng = np.random.default_rng(seed)
    frames, committed = [], {}
    for i in range(count):
        at = start + pd.Timedelta(seconds=every_s * i)
        rows = []
        for g in range(6):
            if g == 5 and i > count // 2:
                continue  # a group deleted mid-run
            for topic in ("orders", "payments"):
                for p in range(3):
                    key = (g, topic, p)
                    end = 1000 + 20 * i + p
                    step = {0: 20, 1: 12, 2: 0, 3: 20, 4: 20, 5: 20}[g]
                    c = committed.get(key, 900) + step + (int(rng.integers(0, 3)) if step else 0)
                    if g == 3 and i % 7 == 6:
                        c -= 50  # a reset to an earlier offset
                    c = min(c, end)
                    committed[key] = c
                    known = not (g == 4 and p == 0)
                    rows.append({"sampled_at": at, "source": "kafka", "broker": "kafka", "group": f"g{g}",
                                 "topic": topic, "partition": p, "committed": c if known else None,
                                 "end": end, "lag": max(0, end - c) if known else None,
                                 "lag_seconds": float(rng.uniform(0, 90)), "members": 1,
                                 "group_state": "Stable"})
        frames.append(schemas.conform("lag", rows))
    return frames


def reference_minutes(raw: pd.DataFrame, window_s: float, stuck_after_s: float) -> pd.DataFrame:
    """lag_1m computed the slow way from the raw rows: each sample judged by latest_lag over
    everything up to it, summed per group and topic, then per minute."""
    per_sample = []
    raw = raw.sort_values("sampled_at", kind="stable")
    keys = ["source", "broker", "group", "topic", "partition"]
    previous = raw.groupby(keys)["committed"].shift()
    raw = raw.assign(consumed=(raw["committed"] - previous).where(lambda s: s > 0).fillna(0).astype("int64"))
    for at in raw["sampled_at"].unique():
        judged = lag_analysis.latest_lag(raw[raw["sampled_at"] <= at].drop(columns="consumed"), window_s=window_s,
                                         stuck_after_s=stuck_after_s)
        judged = judged[judged["sampled_at"] == at].merge(
            raw[raw["sampled_at"] == at][keys + ["consumed"]], on=keys)
        for (source, broker, group, topic), rows in judged.groupby(["source", "broker", "group", "topic"]):
            worst = max(rows["status"], key=lambda s: SEVERITY.get(s, 0))
            per_sample.append({"sampled_at": at, "minute": at.floor("1min"), "source": source, "broker": broker,
                               "group": group, "topic": topic, "partitions": len(rows),
                               "lag": rows["lag"].sum(min_count=1), "lag_seconds": rows["lag_seconds"].max(),
                               "status": worst, "members": rows["members"].max(),
                               "committed": rows["committed"].sum(min_count=1),
                               "consumed": int(rows["consumed"].sum())})
    table = pd.DataFrame(per_sample).sort_values("sampled_at", kind="stable")
    out = []
    for key, rows in table.groupby(["minute", "source", "broker", "group", "topic"]):
        last = rows.iloc[-1]
        out.append(dict(zip(["minute", "source", "broker", "group", "topic"], key),
                        partitions=last["partitions"], lag=last["lag"],
                        lag_max=rows["lag"].max(), lag_seconds=rows["lag_seconds"].max(),
                        status=max(rows["status"], key=lambda s: SEVERITY.get(s, 0)),
                        members=last["members"], committed=last["committed"],
                        consumed=rows["consumed"].sum(), samples=len(rows)))
    return schemas.conform("lag_1m", out)


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["minute", "group", "topic"]).reset_index(drop=True)


def test_rollup_equals_the_aggregate_of_the_raw_rows(tmp_path):
    start = pd.Timestamp.now(tz="UTC").floor("1min") - pd.Timedelta(minutes=4)
    frames = samples(start, 40)  # 200 s: four minutes, the last one still open
    store = Store(tmp_path)
    recorder = Recorder(store, window_s=60.0, stuck_after_s=20.0)
    for frame in frames:
        recorder.record({"lag": frame})
    stored = pd.concat([store.read("lag_1m"), store.get("lag_1m_open")], ignore_index=True)
    reference = reference_minutes(pd.concat(frames, ignore_index=True), 60.0, 20.0)
    assert set(reference["status"]) >= {"OK", "STALL", "REWIND", "UNKNOWN"}
    pd.testing.assert_frame_equal(_sorted(stored), _sorted(reference), check_dtype=False)
    closed = store.read("lag_1m")
    assert closed["minute"].nunique() == 3 and store.get("lag_1m_open")["minute"].nunique() == 1


def test_a_restarted_recorder_continues_exactly(tmp_path):
    """Kill the writer after any sample: a new one, built from the store alone, ends with the
    same rollups and snapshots as one that never stopped."""
    start = pd.Timestamp.now(tz="UTC").floor("1min") - pd.Timedelta(minutes=4)
    frames = samples(start, 40, seed=11)
    whole = Store(tmp_path / "whole")
    one = Recorder(whole, window_s=60.0, stuck_after_s=20.0)
    for frame in frames:
        one.record({"lag": frame})
    restarted = Store(tmp_path / "restarted")
    for cut in (13, 27):
        recorder = Recorder(restarted, window_s=60.0, stuck_after_s=20.0)
        for frame in frames[cut - 13 if cut == 13 else 13:cut]:
            recorder.record({"lag": frame})
    recorder = Recorder(restarted, window_s=60.0, stuck_after_s=20.0)
    for frame in frames[27:]:
        recorder.record({"lag": frame})
    for name in ("lag_1m",):
        pd.testing.assert_frame_equal(_sorted(restarted.read(name)), _sorted(whole.read(name)))
    for name in ("lag_1m_open", "lag_groups", "lag_latest"):
        key = ["group", "topic"] + (["partition"] if name == "lag_latest" else [])
        a = restarted.get(name).sort_values(key).reset_index(drop=True)
        b = whole.get(name).sort_values(key).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)


def test_group_table_and_members_follow_the_newest_sample(tmp_path):
    now = pd.Timestamp.now(tz="UTC")
    store = Store(tmp_path)
    recorder = Recorder(store)
    members = schemas.conform("consumers", [
        {"sampled_at": now, "source": "kafka", "broker": "kafka", "group": "g0", "topic": "orders",
         "consumer": "c1", "host": "/10.0.0.1"},
        {"sampled_at": now, "source": "kafka", "broker": "kafka", "group": "g1", "topic": "orders",
         "consumer": "c2", "host": "/10.0.0.2"}])
    first = samples(now, 1)[0].assign(sampled_at=now)
    recorder.record({"lag": first, "consumers": members})
    assert set(store.get("consumers_latest")["consumer"]) == {"c1", "c2"}
    later = now + pd.Timedelta(seconds=5)
    # g0's members left; g1 was not in this sample (its members stand until it is sampled again)
    second = first[first["group"] == "g0"].assign(sampled_at=later)
    recorder.record({"lag": second, "consumers": schemas.empty("consumers")})
    assert set(store.get("consumers_latest")["consumer"]) == {"c2"}
    groups = store.get("lag_groups")
    assert len(groups) == 12 and (groups["partitions"] == 3).all()
    g0 = groups[(groups["group"] == "g0") & (groups["topic"] == "orders")].iloc[0]
    latest = store.get("lag_latest")
    rows = latest[(latest["group"] == "g0") & (latest["topic"] == "orders")]
    assert g0["lag"] == rows["lag"].sum() and g0["max_lag"] == rows["lag"].max()
    assert g0["sampled_at"] == later


def test_rollup_minutes_closed_while_the_store_refused_writes_are_written_later(tmp_path, monkeypatch):
    """A full disk for a few samples around a minute's end: the samples it refused are
    missing, but every minute the rollup closed meanwhile is written once the disk has
    room, and the open minute's snapshot too."""
    import errno
    start = pd.Timestamp.now(tz="UTC").floor("1min") - pd.Timedelta(minutes=4)
    frames = samples(start, 40)
    store = Store(tmp_path)
    recorder = Recorder(store, window_s=60.0, stuck_after_s=20.0)
    real_append = Store.append

    def refuse_rollups(self, name, frame):  # the raw rows still fit, the rollup does not
        if name == "lag_1m":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_append(self, name, frame)
    for i, frame in enumerate(frames):
        monkeypatch.setattr(Store, "append", refuse_rollups if 10 <= i < 30 else real_append)
        try:
            recorder.record({"lag": frame})
        except OSError:
            assert 10 <= i < 30
    stored = pd.concat([store.read("lag_1m"), store.get("lag_1m_open")], ignore_index=True)
    reference = reference_minutes(pd.concat(frames, ignore_index=True), 60.0, 20.0)
    pd.testing.assert_frame_equal(_sorted(stored), _sorted(reference), check_dtype=False)
