"""Alerts: what fires now, the last hour on a timeline, every rule against its threshold,
and a what-if that replays edited thresholds over the last hour before they are saved.
Each lists the subjects of the clusters chosen in the sidebar; a subject names its cluster
(``prod-eu:orders-svc/orders``)."""
from __future__ import annotations

import html
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from eventscope.ui import data, format as fmt, session, widgets
from eventscope.alerts_view import detail_link, episodes, format_value
from eventscope.analysis.rules import METRICS, STATUSES, RuleError, parse_rule
from eventscope.palette import PHASE_COLORS

cfg = session.config()
st.title("Alerts")
SEVERITY_ORDER = {"critical": 0, "warning": 1}
TABLE_ROWS = 200  # rows a table shows at most; an incident on a big cluster fires thousands
TIMELINE_ROWS = 40  # episodes drawn on a timeline at most


def _firing_table(firing: pd.DataFrame) -> None:
    now = pd.Timestamp.now(tz="UTC")
    order = firing["severity"].map(SEVERITY_ORDER).fillna(2)
    firing = firing.assign(_o=order).sort_values(["_o", "since"]).drop(columns="_o")
    total = len(firing)
    firing = firing.head(TABLE_ROWS)
    view = pd.DataFrame({
        "severity": firing["severity"], "rule": firing["rule"].map(fmt.safe_text),
        "cluster": firing["subject"].map(lambda s: fmt.safe_text(data.subject_cluster(s))),
        "subject": firing["subject"].map(fmt.safe_text),
        "value": [format_value(m, v, d) for m, v, d in zip(firing["metric"], firing["value"], firing["detail"])],
        "threshold": [format_value(m, t, "STALL, STOP" if m == "lag_status" else "")
                      for m, t in zip(firing["metric"], firing["threshold"])],
        "firing for": [fmt.duration((now - pd.Timestamp(f)).total_seconds()) if f else "—"
                       for f in firing["fired_at"]],
        "since": pd.to_datetime(firing["since"], utc=True)})
    st.dataframe(fmt.styled(view, "severity"), hide_index=True, placeholder="—", key="alerts_table",
                 column_config={"since": st.column_config.DatetimeColumn(
                     "condition since (UTC)", format="YYYY-MM-DD HH:mm:ss")})
    if total > TABLE_ROWS:
        st.caption(f"The {TABLE_ROWS} most severe and oldest of {total:,} firing alerts; "
                   "`eventscope alerts --json` lists every one.")
    links = [(s, detail_link(s)) for s in dict.fromkeys(firing["subject"])]
    links = [(s, link) for s, link in links if link][:6]
    if links:
        cols = st.columns(min(3, len(links)))
        for i, (subject, (page, query)) in enumerate(links):
            with cols[i % len(cols)]:
                widgets.page_link(page, label=f"Open {fmt.md(fmt.safe_text(subject, 60))}",
                             icon=":material/arrow_forward:", query_params=query)


def timeline(eps: pd.DataFrame, now: pd.Timestamp, height: int | None = None) -> go.Figure:
    """Episodes as bars: grey while pending, then orange (warning) or red (critical)."""
    fig = go.Figure()
    labels = [html.escape(f"{r} · {s}")[:90] for r, s in zip(eps["rule"], eps["subject"])]
    for phase in ("pending", "warning", "critical"):
        starts, ends, ys = [], [], []
        for label, e in zip(labels, eps.itertuples(index=False)):
            end = e.ended_at if not pd.isna(e.ended_at) else now
            fired = e.fired_at
            if phase == "pending":
                segment = (e.since, end if pd.isna(fired) else fired)
            elif not pd.isna(fired) and e.severity == phase:
                segment = (fired, end)
            else:
                continue
            starts.append(segment[0])
            ends.append(max(segment[1], segment[0] + pd.Timedelta(seconds=2)))
            ys.append(label)
        if ys:
            fig.add_trace(go.Bar(base=starts, x=[(b - a).total_seconds() * 1000 for a, b in zip(starts, ends)],
                                 y=ys, orientation="h", name=phase, marker_color=PHASE_COLORS[phase],
                                 hovertemplate="%{y}<br>%{base|%H:%M:%S} for %{x:.0f} ms<extra>" + phase
                                 + "</extra>"))
    fig.update_layout(barmode="overlay", height=height or max(160, 60 + 28 * len(set(labels))),
                      margin=dict(l=0, r=0, t=28, b=0),
                      legend=dict(orientation="h", x=1, xanchor="right", y=1.02, yanchor="bottom"),
                      xaxis=dict(type="date", title="time (UTC)"), yaxis=dict(autorange="reversed"))
    return fig


@st.fragment(run_every=cfg.dashboard.refresh_s)
def alerts_now() -> None:
    """Firing alerts worst first, pending ones, and the last hour's timeline; refreshes itself."""
    firing = data.firing_alerts()
    history = data.alert_history()
    if firing.empty and history.empty and data.newest_sample("lag") is None and data.newest_sample("dlq") is None:
        widgets.empty_state("This page lists firing alerts (lag, stalled groups, dead letters, stuck "
                       "entries, collector failures) with their value, threshold and since when.")
        return
    critical = int((firing["severity"] == "critical").sum())
    if firing.empty:
        st.success("No alert is firing.", icon=":material/check_circle:")
    else:
        words = f"{len(firing)} alert{'s' if len(firing) != 1 else ''} firing"
        (st.error if critical else st.warning)(
            f"**{words}**" + (f", {critical} critical" if critical else ""), icon=":material/notifications_active:")
        _firing_table(firing)
    now = pd.Timestamp.now(tz="UTC")
    eps = episodes(history, now)
    pending = eps[eps["state"] == "pending"]
    if not pending.empty:
        st.caption("Pending (over the line, waiting out `for_s`): " + ", ".join(
            f"{fmt.md(r.rule)} on {fmt.md(r.subject)}" for r in pending.head(8).itertuples(index=False)))
    st.subheader("Last hour")
    shown = eps[eps["fired_at"].notna() | (eps["state"] == "pending")]
    if shown.empty:
        st.caption("Nothing fired in the last hour.")
    else:
        # the ones to look at first: critical, still firing, then the newest
        order = shown.assign(_c=shown["severity"] != "critical", _f=shown["state"] != "firing")
        drawn = order.sort_values(["_c", "_f", "since"], ascending=[True, True, False], kind="stable")
        st.plotly_chart(timeline(drawn.head(TIMELINE_ROWS), now), key="alerts_timeline",
                        config={"displayModeBar": False})
        if len(shown) > TIMELINE_ROWS:
            st.caption(f"{TIMELINE_ROWS} of {len(shown):,} episodes drawn: critical and still firing first.")


def rules_table() -> None:
    """Every rule with each subject's current value against its thresholds."""
    table = data.alert_rules_now()
    st.subheader("Rules")
    if table.empty:
        st.caption("No values to judge yet.")
        return
    silent = table[table["state"] == "silenced"]
    table = table[table["state"] != "silenced"]
    needle = st.text_input("Subject or rule contains", key="alert_rules_filter", placeholder="e.g. payment",
                           help="case-insensitive substring")
    if needle:
        hit = (table["subject"].astype(str).str.contains(needle, case=False, regex=False)
               | table["rule"].astype(str).str.contains(needle, case=False, regex=False))
        table = table[hit.fillna(False)]
    order = table["state"].map({"firing": 0, "pending": 1}).fillna(2)
    table = table.assign(_o=order).sort_values(["_o", "rule", "subject"], kind="stable").drop(columns="_o")
    total = len(table)
    table = table.head(TABLE_ROWS)

    def formatted(column):
        return [v if isinstance(v, str) else format_value(m, v) for m, v in zip(table["metric"], table[column])]
    view = table.assign(value=[v if isinstance(v, str) else format_value(m, v)
                               for m, v in zip(table["metric"], table["value"])],
                        warning=formatted("warning"), critical=formatted("critical"), clear=formatted("clear"),
                        subject=table["subject"].map(fmt.safe_text))
    st.dataframe(fmt.styled(view, "severity"), hide_index=True, placeholder="—", key="alert_rules",
                 height=min(38 + 35 * len(view), 420),
                 column_config={"for_s": st.column_config.NumberColumn("for (s)", format="%g")})
    if total > TABLE_ROWS:
        st.caption(f"{TABLE_ROWS} of {total:,} rows (firing and pending first): filter by name to find a subject.")
    if not silent.empty:
        names = ", ".join(sorted(fmt.md(r) for r in set(silent["rule"])))
        st.caption(f"No threshold set (silenced): {names} on {silent['subject'].nunique()} subject(s).")
    st.caption("Built-in rules plus `[[alerts.rules]]` from the config; for each metric and subject "
               "the last matching rule applies. `eventscope alerts --json --exit-code` exits 1 when a "
               "critical alert fires.")


def _threshold(value) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "—"
    return value if isinstance(value, str) else fmt.number(value)


def what_if() -> None:
    """Edit one rule, replay the last hour with it, then copy the TOML."""
    st.subheader("Try thresholds")
    st.caption("Change a rule and replay the last hour of samples with it: what would have fired? "
               "Nothing is saved: copy the TOML into your config file when it looks right.")
    rules = cfg.alerts.all_rules()
    by_name = {r.name: r for r in rules}
    name = st.selectbox("Rule", list(by_name), key="whatif_rule",
                        format_func=lambda n: f"{n} ({by_name[n].metric}: {METRICS[by_name[n].metric][2]})")
    rule = by_name[name]
    c1, c2, c3, c4 = st.columns(4)
    if rule.metric == "lag_status":
        warning = c1.multiselect("Warning statuses", STATUSES, default=list(rule.warning or ()), key=f"whatif_w_{name}")
        critical = c2.multiselect("Critical statuses", STATUSES, default=list(rule.critical or ()),
                                  key=f"whatif_c_{name}")
        clear = None
    else:
        unit = METRICS[rule.metric][1]
        warning = c1.number_input(f"Warning ({unit})", value=rule.warning or 0.0, min_value=0.0,
                                  key=f"whatif_w_{name}", help="0 = no warning threshold")
        critical = c2.number_input(f"Critical ({unit})", value=rule.critical or 0.0, min_value=0.0,
                                   key=f"whatif_c_{name}", help="0 = no critical threshold")
        clear = c4.number_input("Clear below", value=rule.clear or 0.0, min_value=0.0, key=f"whatif_clear_{name}",
                                help="a firing alert resolves only below this (0: "
                                     f"{cfg.alerts.clear_ratio:g} × the lowest threshold)")
    for_s = c3.number_input("For (s)", value=float(rule.for_s), min_value=0.0, key=f"whatif_for_{name}")
    match = st.text_input("Match (globs, comma-separated)", value=", ".join(rule.match), key=f"whatif_match_{name}")
    raw = {"name": rule.name, "metric": rule.metric, "for_s": for_s,
           "match": [m.strip() for m in match.split(",") if m.strip()] or ["*"]}
    for key, value in (("warning", warning), ("critical", critical), ("clear", clear)):
        if value not in (None, [], 0.0):
            raw[key] = value
    try:
        edited = parse_rule(raw, "rule", cfg.alerts.for_s, cfg.alerts.clear_ratio)
    except RuleError as exc:
        st.error(f"Not a valid rule: {fmt.md(exc)}")
        return
    if st.button("Replay the last hour", key="whatif_run", type="primary"):
        same = [r for r in rules if r.metric == rule.metric]  # only this metric needs replaying
        with st.spinner("Replaying the last hour…"):
            before = episodes(data.what_if_transitions(same))
            after = episodes(data.what_if_transitions([r for r in same if r.name != rule.name] + [edited]))
        st.session_state["whatif_result"] = (edited, before[before["rule"] == rule.name],
                                             after[after["rule"] == rule.name])
    result = st.session_state.get("whatif_result")
    if not result or result[0].name != rule.name:
        return
    edited, before, after = result
    fired_before = before[before["fired_at"].notna()]
    fired_after = after[after["fired_at"].notna()]
    st.markdown(f"Over the last hour **{fmt.md(rule.name)}** fired **{len(fired_before)}** time(s) as "
                f"configured, and would have fired **{len(fired_after)}** time(s) with these settings "
                f"({int((fired_after['severity'] == 'critical').sum())} critical).")
    if not fired_after.empty:
        st.plotly_chart(timeline(fired_after, pd.Timestamp.now(tz="UTC")), key="whatif_timeline",
                        config={"displayModeBar": False})
    snippet = edited.to_toml() + "\n"
    st.code(snippet, language="toml")
    st.download_button("Download as TOML", snippet, file_name=f"alert-rule-{rule.name}.toml",
                       mime="application/toml", key="whatif_download")
    st.caption("Append it to your config file (a later rule of the same metric overrides the built-in "
               "one for the subjects it matches), then restart the collector.")


def webhooks() -> None:
    hooks = cfg.alerts.all_webhooks()
    if not hooks:
        st.caption("Webhook notifications: none configured (`[[alerts.webhooks]]`).")
        return
    st.caption("Webhook notifications (on firing, escalation and resolve): " + "; ".join(
        f"{fmt.md(h.label)} ({h.format}, {h.min_severity} and above)" for h in hooks))


alerts_now()
rules_table()
webhooks()
what_if()
