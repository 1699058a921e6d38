"""Alert evaluation on every sample: the glue between the runner, the store and webhooks.

The runner calls :meth:`AlertEvaluator.evaluate` after each pass over its collectors,
so rules are evaluated whether or not a browser is open, in live collection and in
sample-data replay alike. It reads the snapshots the recorder keeps (each group's status
was judged when its sample was written), steps the pure state machine with only the
observations that changed or belong to an active alert, appends the transitions to the
store's ``alerts`` frame and hands them to the notifier (which never blocks). On start
the state is rebuilt from the stored history, so a restart neither re-fires nor forgets
a firing alert.
"""
from __future__ import annotations

import logging
import time

import pandas as pd

from eventscope.analysis import alert_state, alerts
from eventscope.notify import Notifier
from eventscope.query import Queries, ResultCache
from eventscope.store import Store

log = logging.getLogger("eventscope.alerting")
RESEND_WINDOW_S = 900.0  # undelivered transitions this recent are re-sent after a restart
SEED_WINDOW_S = 900.0  # a never-evaluated store: the rules are first replayed over this much
MARKER = "alerts-evaluated"
EVALUATOR_CACHE_BYTES = 4 * 1024 * 1024  # each evaluation asks new questions: little to reuse  # touched on every evaluation: readers trust the stored state


class AlertEvaluator:
    """Evaluates the rules against a store and records and notifies what changes."""

    def __init__(self, store: Store, alerts_config, notifier: Notifier | None = None):
        self.store = store
        self.config = alerts_config
        self.rules = alerts_config.all_rules()
        self.metrics = {r.metric for r in self.rules if not r.silent}  # compute only what is judged
        self.notifier = notifier
        # small reads (snapshots, minutes of DLQ and health rows): no DuckDB in the collector
        self.queries = Queries(store, ResultCache(EVALUATOR_CACHE_BYTES), engine="pyarrow")
        self.stepper: alert_state.Stepper | None = None
        self.observations = pd.DataFrame(columns=alert_state.OBSERVATION_COLUMNS)

    @property
    def state(self) -> dict | None:
        """The alert state (None before the first evaluation)."""
        return None if self.stepper is None else self.stepper.state

    def evaluate(self, now: pd.Timestamp | None = None) -> list[dict]:
        """One evaluation at ``now``; returns the transitions it recorded."""
        now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
        if self.stepper is None:
            history = self.store.read("alerts")
            self.stepper = alert_state.Stepper(self.rules, alert_state.from_history(history))
            if history.empty:
                self._seed(now)  # no alert history: judge the samples the store already holds
            elif self.notifier is not None:
                recent = history[history["at"] >= now - pd.Timedelta(seconds=RESEND_WINDOW_S)]
                self.notifier.submit(recent.to_dict("records"))
        self.observations = self.queries.observations(now, frozenset(self.metrics))
        transitions = self.stepper.step(self.observations, now)
        if transitions or self.store.version("alerts_active") == "empty":
            self.store.append("alerts", alert_state.transitions_frame(transitions))
            # readers take the state from here instead of replaying the whole history
            self.store.put("alerts_active", alert_state.state_frame(self.stepper.state))
        _touch(self.store.root / MARKER)
        if transitions:
            for t in transitions:
                log.info("alert %s: %s [%s] %s", t["transition"], t["rule"], t["severity"], t["subject"])
            if self.notifier is not None:
                self.notifier.submit(transitions)
        return transitions

    def _seed(self, now: pd.Timestamp) -> None:
        """Replay the rules over the store's last 15 minutes, once, when there is no alert history.

        A sample-data replay starts with minutes of backfilled history, and a collector may
        start on a store that already holds samples: an incident under way then fires as
        soon as it has held for `for_s` in those samples, not `for_s` after the start."""
        since = now - pd.Timedelta(seconds=min(SEED_WINDOW_S, self.store.retention.raw_window_s))
        samples = self.store.read("lag_samples", since=since)
        dlq = self.store.read("dlq", since=since)
        state, history = alerts.replay_samples(samples[samples["sampled_at"] < now], dlq[dlq["sampled_at"] < now],
                                               self.rules, health=self.store.read("health", since=since),
                                               max_steps=20)
        self.stepper = alert_state.Stepper(self.rules, state)
        if not history.empty:
            self.store.append("alerts", history)
            self.store.put("alerts_active", alert_state.state_frame(state))
            if self.notifier is not None:
                self.notifier.submit(history.to_dict("records"))

    def close(self, flush_s: float = 5.0) -> None:
        """Give queued notifications ``flush_s`` seconds (a `collect --once` run), then stop."""
        if self.notifier is not None:
            self.notifier.flush(flush_s)
            self.notifier.close()


def _touch(path) -> None:
    try:
        path.touch(mode=0o600)
    except OSError as exc:  # a read-only store still evaluates; readers fall back to replaying
        log.debug("cannot mark the store as evaluated: %s", exc)


def evaluated_recently(store, within_s: float = 900.0) -> bool:
    """True when a collector evaluated the rules on this store in the last ``within_s`` seconds."""
    try:
        return time.time() - (store.root / MARKER).stat().st_mtime <= within_s
    except OSError:
        return False


def build_evaluator(config, store: Store) -> AlertEvaluator:
    """The evaluator (and its notifier) for a config and the store it writes."""
    a = config.alerts
    webhooks = a.all_webhooks()
    notifier = Notifier(webhooks, state_dir=config.store_dir, retries=a.notify_retries,
                        backoff_s=a.notify_backoff_s, timeout_s=a.notify_timeout_s) if webhooks else None
    return AlertEvaluator(store, a, notifier)
