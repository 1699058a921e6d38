"""Lag status per partition and group, judged from the recent history of samples.

The verdict needs no hand-tuned threshold; it looks at how the committed offset and
the lag moved over the window (in the spirit of Burrow's evaluation rules):

* ``UNKNOWN`` — lag is not known (no committed offset, or Redis reports null), or
  the partition is behind and there is only one sample to judge by;
* ``OK`` — caught up, or committing and the lag did not rise at every sample;
* ``WARN`` — committing, but the lag rose at every sample (at least twice in a row)
  since it was last zero, or across the whole window;
* ``ERR`` — as WARN, and the oldest message has waited longer than the window;
* ``STALL`` — members present, lag > 0, but the committed offset has not stepped forward
  between two samples of the window, or not for ``stuck_after_s`` (a consumer that
  stopped mid-window);
* ``STOP`` — as STALL, with no members;
* ``REWIND`` — the committed offset went backwards.

Burrow tells STOP (no commits at all) from STALL (commits of the same offset) by
commit timestamps. Offsets read from the broker carry no commit time, so here the
difference is whether the group still has members: a group with live members that
does not advance is stalled; one with none has stopped. The group verdict is the
worst partition's (``group_summary``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

KEY = ["source", "broker", "kind", "group", "topic", "partition"]
STATUSES = ["OK", "WARN", "ERR", "STOP", "STALL", "REWIND", "UNKNOWN"]
NEVER = np.iinfo(np.int64).min  # "never happened" (older than any window)
SEVERITY = {"OK": 0, "UNKNOWN": 1, "WARN": 2, "REWIND": 3, "STALL": 4, "STOP": 4, "ERR": 5}


def latest_lag(lag: pd.DataFrame, window_s: float = 300.0, stuck_after_s: float = 60.0) -> pd.DataFrame:
    """The newest row per partition, with a ``status`` column judged over ``window_s``."""
    if lag.empty:
        out = lag.copy()
        out["status"] = pd.Series(dtype="string")
        return out
    newest = lag["sampled_at"].max()
    recent = lag[lag["sampled_at"] >= newest - pd.Timedelta(seconds=window_s)]
    recent = recent.sort_values("sampled_at", kind="stable")
    g = recent.groupby(KEY, observed=True, sort=False, dropna=False)
    latest = g.tail(1).set_index(KEY)
    first = g.head(1).set_index(KEY)
    committed = recent["committed"].astype("Float64")
    step = committed - committed.groupby([recent[k] for k in KEY], observed=True, dropna=False).shift()
    rewound = (step < 0).fillna(False).groupby([recent[k] for k in KEY], observed=True,
                                                 dropna=False).any()
    samples = g.size()
    keys = [recent[k] for k in KEY]
    lag_f = recent["lag"].astype("Float64")
    lag_step = lag_f - lag_f.groupby(keys, observed=True, dropna=False).shift()
    # "rising" is judged since the partition was last caught up (lag 0), if it was
    zero_at = recent["sampled_at"].where((lag_f == 0).fillna(False).to_numpy())
    last_zero = zero_at.groupby(keys, observed=True, dropna=False).transform("max")
    in_run = last_zero.isna() | (recent["sampled_at"] > last_zero)
    not_rising = ((lag_step <= 0).fillna(False) & in_run).groupby(keys, observed=True, dropna=False).any()
    run_steps = (lag_step.notna() & in_run).groupby(keys, observed=True, dropna=False).sum()
    forward = (step > 0).fillna(False).groupby([recent[k] for k in KEY], observed=True, dropna=False).any()
    moved_at = recent["sampled_at"].where((step != 0).fillna(False).to_numpy())
    last_move = moved_at.groupby([recent[k] for k in KEY], observed=True, dropna=False).max()
    stuck_s = (latest["sampled_at"] - last_move.reindex(latest.index).fillna(first["sampled_at"])
               ).dt.total_seconds()
    latest = latest.assign(x_stuck_s=stuck_s, x_rising=~not_rising.reindex(latest.index).fillna(False),
                           x_run_steps=run_steps.reindex(latest.index).fillna(0),
        x_forward=forward.reindex(latest.index).fillna(False),
        x_samples=samples, x_rewound=rewound.reindex(latest.index).fillna(False),
        x_span_s=(latest["sampled_at"] - first["sampled_at"]).dt.total_seconds())
    latest["status"] = [_verdict(r, window_s, stuck_after_s) for r in latest.itertuples()]
    return latest.drop(columns=[c for c in latest.columns if c.startswith("x_")]).reset_index()


def _verdict(r, window_s: float, stuck_after_s: float) -> str:
    if pd.isna(r.lag):
        return "UNKNOWN"
    if r.x_rewound:
        return "REWIND"
    if r.lag == 0:
        return "OK"
    if r.x_samples < 2:
        return "UNKNOWN"  # behind, but one sample cannot say whether it is moving
    if not r.x_forward or r.x_stuck_s >= stuck_after_s:
        no_members = pd.isna(r.members) or r.members == 0
        return "STOP" if no_members else "STALL"
    if r.x_rising and r.x_run_steps >= 2:
        too_old = not pd.isna(r.lag_seconds) and r.lag_seconds > max(window_s, r.x_span_s)
        return "ERR" if too_old else "WARN"
    return "OK"


def group_summary(latest: pd.DataFrame) -> pd.DataFrame:
    """Per broker/group/topic: partitions, total lag, worst lag_seconds, worst status."""
    cols = ["broker", "kind", "group", "topic", "partitions", "lag", "lag_seconds", "status", "members"]
    if latest.empty:
        return pd.DataFrame(columns=cols)
    g = latest.groupby(["broker", "kind", "group", "topic"], observed=True, sort=True)
    out = g.agg(partitions=("partition", "count"), lag=("lag", "sum"),
                lag_seconds=("lag_seconds", "max"), members=("members", "max"),
                status=("status", lambda s: max(s, key=lambda x: SEVERITY.get(x, 0))))
    unknown = g["lag"].apply(lambda s: s.isna().all())
    out.loc[unknown, "lag"] = pd.NA
    return out.reset_index()[cols]


def lag_history(lag: pd.DataFrame, group: str | None = None) -> pd.DataFrame:
    """Total lag per (time, broker, group) for charts."""
    frame = lag if group is None else lag[lag["group"] == group]
    if frame.empty:
        return pd.DataFrame(columns=["sampled_at", "series", "lag", "lag_seconds"])
    frame = frame.assign(series=frame["broker"] + ":" + frame["group"])
    out = frame.groupby(["sampled_at", "series"], observed=True).agg(
        lag=("lag", "sum"), lag_seconds=("lag_seconds", "max"))
    return out.reset_index()


def to_rows(latest: pd.DataFrame) -> list[dict]:
    """Rows for ``eventscope lag --json`` (the CLI contract's fields)."""
    rows = []
    for r in latest.itertuples(index=False):
        rows.append({
            "broker": r.broker, "kind": r.kind, "group": r.group, "topic": r.topic, "partition": int(r.partition),
            "committed": None if pd.isna(r.committed) else int(r.committed),
            "end": None if pd.isna(r.end) else int(r.end),
            "lag": None if pd.isna(r.lag) else int(r.lag),
            "lag_seconds": None if pd.isna(r.lag_seconds) else round(float(r.lag_seconds), 3),
            "status": r.status, "sampled_at": r.sampled_at.isoformat().replace("+00:00", "Z"),
            "group_state": None if pd.isna(r.group_state) else r.group_state,
            "members": None if pd.isna(r.members) else int(r.members),
        })
    return rows


class LagJudge:
    """:func:`latest_lag`, kept up to date one sample at a time, in memory that grows with
    partitions only.

    The collector's write path feeds every lag sample to :meth:`add`; :meth:`latest` then
    gives what ``latest_lag`` would give over all rows added so far. A verdict over the
    window needs, per partition, only the newest of a few kinds of event, each with its time:
    the last two samples, the last sample at lag 0, the last forward step of the committed
    offset, the last step back, the last step where the lag did not rise, and the last two
    steps whose lag was known. A step is in the window when its earlier sample is; an event
    older than the window cannot matter, and one inside it is never outweighed by an older
    one. So a partition costs a dozen numbers, not a row per sample (40,000 partitions:
    about 5 MB), and a sample costs a few array operations.

    The state is derived data: a restarted collector rebuilds it by adding the stored raw
    rows of the last ``window_s``. Rows of one partition are expected in time order (as
    samples are taken); a row no newer than the partition's newest is ignored.
    """

    TIMES = ("t_last", "t_prev", "zero", "back_a", "fwd_a", "fwd_b", "flat_a", "flat_b",
             "known_a", "known_b", "known2_a", "known2_b")

    def __init__(self, window_s: float = 300.0, stuck_after_s: float = 60.0):
        self.window_ns = int(window_s * 1e9)
        self.window_s = float(window_s)
        self.stuck_after_s = float(stuck_after_s)
        # partition keys, row i of the arrays being keys[i]: a MultiIndex holds them as a few
        # thousand names and integer codes, where tuples of strings cost ~250 bytes a partition
        # and left the heap fragmented after a restart's replay of 2.6 M rows
        self.keys = pd.MultiIndex.from_arrays([[]] * len(KEY), names=KEY)
        self.times = {name: np.full(0, NEVER, dtype=np.int64) for name in self.TIMES}
        self.committed = np.full(0, np.nan)  # of the newest sample
        self.lag = np.full(0, np.nan)
        # the newest full row of each partition, column by column, and the dtypes to hand them back in
        self.columns: dict[str, np.ndarray] = {}
        self.dtypes: dict = {}
        self.newest_ns: int | None = None

    # -- feeding ---------------------------------------------------------------------
    def add(self, lag: pd.DataFrame) -> pd.DataFrame:
        """Take lag rows of one or more samples (any mix of sources); returns the rows taken,
        each with the ``status`` it was judged to have when its sample was added and
        ``consumed``, how far its committed offset moved forward since the partition's
        previous sample (0 when it did not move, went back or is unknown)."""
        if lag.empty:
            return lag.assign(status=pd.Series(dtype="string"), consumed=pd.Series(dtype="int64"))
        lag = lag.sort_values("sampled_at", kind="stable")
        times = lag["sampled_at"].to_numpy(dtype="datetime64[ns]").view("int64")
        taken = []
        for at in np.unique(times):
            taken.append(self._add_sample(lag[times == at], int(at)))
        return pd.concat(taken, ignore_index=True) if len(taken) > 1 else taken[0]

    def _add_sample(self, sample: pd.DataFrame, at: int) -> pd.DataFrame:
        sample = sample.drop_duplicates(KEY, keep="last")
        ids = self._ids(sample)
        t = self.times
        fresh = t["t_last"][ids] < at
        if not fresh.all():
            sample, ids = sample[fresh], ids[fresh]
        committed = sample["committed"].to_numpy(dtype="float64", na_value=np.nan)
        lag = sample["lag"].to_numpy(dtype="float64", na_value=np.nan)
        before = t["t_last"][ids]
        with np.errstate(invalid="ignore"):
            step = committed - self.committed[ids]  # NaN without a previous sample or value
            lag_step = lag - self.lag[ids]
        consumed = np.where(step > 0, step, 0).astype("int64")
        if len(ids):
            self.newest_ns = at if self.newest_ns is None else max(self.newest_ns, at)
            with np.errstate(invalid="ignore"):
                self._remember(ids, step < 0, ("back_a",), (before,))
                self._remember(ids, step > 0, ("fwd_a", "fwd_b"), (before, at))
                self._remember(ids, lag_step <= 0, ("flat_a", "flat_b"), (before, at))
                known = ~np.isnan(lag_step)
                self._remember(ids, known, ("known2_a", "known2_b"), (t["known_a"][ids], t["known_b"][ids]))
                self._remember(ids, known, ("known_a", "known_b"), (before, at))
                self._remember(ids, lag == 0, ("zero",), (at,))
            t["t_prev"][ids] = before
            t["t_last"][ids] = at
            self.committed[ids] = committed
            self.lag[ids] = lag
            self._keep_rows(sample, ids)
        out = sample.reset_index(drop=True)
        out["status"] = pd.array(self._judge(ids), dtype="string")
        out["consumed"] = consumed
        if len(self.keys) > 1000 and self._stale_share() > 0.5:
            self._drop_stale()
        return out

    def _remember(self, ids: np.ndarray, when: np.ndarray, names: tuple, values: tuple) -> None:
        """Set the times ``names`` of the partitions where ``when`` holds (a new newest event)."""
        hit = ids[when]
        for name, value in zip(names, values):
            self.times[name][hit] = value[when] if isinstance(value, np.ndarray) else value

    def _keep_rows(self, sample: pd.DataFrame, ids: np.ndarray) -> None:
        # plain numpy per column (objects for text, float with NaN for numbers, int64 ns for
        # times): assigning 40,000 rows is a copy, not a pandas setitem. The key columns are
        # in self.keys already.
        for name in sample.columns:
            series = sample[name]
            if name in KEY:
                self.dtypes.setdefault(name, series.dtype)
                continue
            if name not in self.columns:
                self.dtypes[name] = series.dtype
                self.columns[name] = np.full(0, _EMPTY[_kind(series.dtype)], dtype=_NUMPY[_kind(series.dtype)])
            column = self.columns[name]
            if len(column) < len(self.keys):
                grown = np.full(len(self.keys), _EMPTY[_kind(series.dtype)], dtype=column.dtype)
                grown[:len(column)] = column
                column = self.columns[name] = grown
            column[ids] = _plain(series)

    def _ids(self, sample: pd.DataFrame) -> np.ndarray:
        """Row of each sample row's partition (``sample`` has one row per partition); new
        partitions get new rows."""
        wanted = pd.MultiIndex.from_arrays([sample[k] for k in KEY], names=KEY)
        ids = self.keys.get_indexer(wanted) if len(self.keys) else np.full(len(wanted), -1, dtype=np.int64)
        ids = ids.astype(np.int64, copy=False)
        new = ids < 0
        if new.any():
            start, count = len(self.keys), int(new.sum())
            self.keys = wanted[new] if not start else self.keys.append(wanted[new])
            ids[new] = np.arange(start, start + count)
            self.times = {name: np.concatenate([v, np.full(count, NEVER, dtype=np.int64)])
                          for name, v in self.times.items()}
            self.committed = np.concatenate([self.committed, np.full(count, np.nan)])
            self.lag = np.concatenate([self.lag, np.full(count, np.nan)])
        return ids

    def _stale_share(self) -> float:
        return float((self.times["t_last"] < self.newest_ns - self.window_ns).mean())

    def _drop_stale(self) -> None:
        keep = np.flatnonzero(self.times["t_last"] >= self.newest_ns - self.window_ns)
        self.times = {name: v[keep] for name, v in self.times.items()}
        self.committed, self.lag = self.committed[keep], self.lag[keep]
        self.keys = self.keys[keep].remove_unused_levels()
        self.columns = {name: column[keep] for name, column in self.columns.items()}

    # -- judging ---------------------------------------------------------------------
    def latest(self) -> pd.DataFrame:
        """The newest row of every partition in the window, with its ``status``."""
        if self.newest_ns is None:
            return latest_lag(pd.DataFrame(columns=KEY + ["sampled_at", "lag", "committed"]))
        ids = np.flatnonzero(self.times["t_last"] >= self.newest_ns - self.window_ns)
        rows = self._rows(ids)
        rows["status"] = pd.array(self._judge(ids), dtype="string")
        return rows

    def _judge(self, ids: np.ndarray) -> np.ndarray:
        """The verdict of each partition in ``ids`` (each with a row in the window) now."""
        if not len(ids):
            return np.array([], dtype=object)
        cutoff = self.newest_ns - self.window_ns
        t = {name: v[ids] for name, v in self.times.items()}
        zero = np.where(t["zero"] >= cutoff, t["zero"], NEVER)  # the last zero in the window
        rewound = t["back_a"] >= cutoff
        went_on = t["fwd_a"] >= cutoff
        stuck_s = (t["t_last"] - t["fwd_b"]) / 1e9  # up to the partition's own newest sample
        not_rising = (t["flat_a"] >= cutoff) & (t["flat_b"] > zero)
        two_steps = (t["known2_a"] >= cutoff) & (t["known2_b"] > zero)
        now_lag = self.lag[ids]
        members = self._numbers("members", ids)
        seconds = self._numbers("lag_seconds", ids)
        with np.errstate(invalid="ignore"):
            stopped = ~went_on | (stuck_s >= self.stuck_after_s)
            no_members = np.isnan(members) | (members == 0)
            # the window's first sample is inside it, so its span never exceeds the window
            too_old = seconds > self.window_s
            rising = ~not_rising & two_steps
            return np.select(
                [np.isnan(now_lag), rewound, now_lag == 0, t["t_prev"] < cutoff,
                 stopped & no_members, stopped, rising & too_old, rising],
                ["UNKNOWN", "REWIND", "OK", "UNKNOWN", "STOP", "STALL", "ERR", "WARN"], default="OK")

    def _numbers(self, name: str, ids: np.ndarray) -> np.ndarray:
        if name not in self.columns:
            return np.full(len(ids), np.nan)
        return self.columns[name][ids].astype("float64")

    def _rows(self, ids: np.ndarray) -> pd.DataFrame:
        keys = self.keys[ids]
        out = {name: pd.Series(keys.get_level_values(j), dtype=self.dtypes[name]).reset_index(drop=True)
               for j, name in enumerate(KEY)}
        out.update({name: _restore(column[ids], self.dtypes[name]) for name, column in self.columns.items()})
        order = [name for name in self.dtypes if name in out]  # the columns in the order they came
        return pd.DataFrame(out)[order]


def _kind(dtype) -> str:
    if isinstance(dtype, pd.DatetimeTZDtype) or str(dtype).startswith("datetime64"):
        return "time"
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        return "number"
    return "text"


_NUMPY = {"time": "int64", "number": "float64", "text": object}
_EMPTY = {"time": NEVER, "number": np.nan, "text": None}


def _plain(series: pd.Series) -> np.ndarray:
    kind = _kind(series.dtype)
    if kind == "time":
        return series.to_numpy(dtype="datetime64[ns]").view("int64")
    if kind == "number":
        return series.to_numpy(dtype="float64", na_value=np.nan)
    codes, names = pd.factorize(series)  # one str object per distinct text, not one per row
    values = np.asarray(names, dtype=object).take(np.maximum(codes, 0)) if len(names) \
        else np.full(len(codes), None, dtype=object)
    values[codes < 0] = None
    return values


def _restore(values: np.ndarray, dtype) -> pd.Series:
    """A column kept as plain numpy, back in the dtype it came in."""
    kind = _kind(dtype)
    if kind == "time":
        times = pd.Series(values.view("datetime64[ns]")).where(values != NEVER)
        return times.dt.tz_localize("UTC").dt.tz_convert(dtype.tz) if isinstance(dtype, pd.DatetimeTZDtype) \
            else times
    if kind == "number" and dtype == "int64":
        return pd.Series(values).astype("Int64").astype("int64") if not np.isnan(values).any() \
            else pd.Series(values).astype("Int64")
    return pd.Series(values).astype(dtype)
