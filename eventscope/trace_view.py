"""The trace waterfall: a trace document (``analysis.traces.from_rows``) as a plotly figure.

One row per event, first at the top; a bar per hop from the event that caused it to
the event it produced, split into "waiting in the broker" and "in the service" when
the split is known (estimated, see ``analysis/traces.py``), red when the hop ends in a
dead-letter queue. Every name is HTML-escaped before plotly sees it: plotly renders a
subset of HTML in labels and hover text, and names are data.
"""
from __future__ import annotations

import html

import pandas as pd
import plotly.graph_objects as go

from eventscope import palette

HOP, WAIT, WORK, DEAD, EVENT = "#9ecae1", "#bdbdbd", "#3182bd", palette.RED, "#31363f"


def _e(value, limit: int = 80) -> str:
    text = "" if value is None else str(value)
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return html.escape(text.encode("utf-8", "backslashreplace").decode("utf-8"), quote=True)


def _ms(value) -> str:
    if value is None or pd.isna(value):
        return "unknown"
    value = float(value)
    return f"{value:,.0f} ms" if value < 10_000 else f"{value / 1000:,.1f} s"


def labels(trace: dict) -> list[str]:
    """The y-axis label of each event: ``n. topic · event type`` (escaped), and its cluster
    (``n. topic (prod-eu) · event type``) when the trace crosses more than one."""
    several = len({e.get("broker") for e in trace["events"]}) > 1
    return [f"{i + 1}. {_e(e['topic'], 40)}" + (f" ({_e(e.get('broker'), 30)})" if several else "")
            + f" · {_e(e['event_type'], 40)}" for i, e in enumerate(trace["events"])]


def waterfall(trace: dict) -> go.Figure:
    """The figure; x is milliseconds since the trace's first event."""
    events = pd.DataFrame(trace["events"])
    at = pd.to_datetime(events["at"], utc=True, format="ISO8601")
    t0 = at.min()
    offset = ((at - t0).dt.total_seconds() * 1000).tolist()
    names = labels(trace)
    row_of = {}
    for i, e in enumerate(trace["events"]):
        row_of.setdefault((e["topic"], e["event_id"]), i)
    fig = go.Figure()
    legend_shown: set[str] = set()

    def bar(row: int, start: float, length: float, color: str, name: str, hover: str) -> None:
        fig.add_trace(go.Bar(y=[names[row]], x=[max(length, 0.5)], base=[start], orientation="h",
                             marker_color=color, name=name, legendgroup=name,
                             showlegend=name not in legend_shown, hovertemplate=hover + "<extra></extra>",
                             width=0.55))
        legend_shown.add(name)

    for hop in trace["hops"]:
        row = row_of.get((hop["to_topic"], hop.get("to_event_id")))
        src = row_of.get((hop["from_topic"], hop.get("from_event_id")))
        if row is None or src is None:
            continue
        start, end = offset[src], offset[row]
        head = (f"{_e(hop['from_topic'])} → {_e(hop['to_topic'])}<br>service: {_e(hop['service'] or 'unknown')}"
                f"<br>latency: {_ms(hop['latency_ms'])}")
        if hop.get("dead_letter"):
            bar(row, start, end - start, DEAD, "into a dead-letter queue", head + "<br><b>dead-lettered</b>")
        elif hop.get("split"):
            wait = float(hop["broker_wait_ms"])
            note = f"<br>(estimated ± {_ms(hop['split_error_ms'])})"
            bar(row, start, wait, WAIT, "waiting in the broker (estimated)",
                head + f"<br>in the broker: {_ms(wait)}" + note)
            bar(row, start + wait, end - start - wait, WORK, "in the service (estimated)",
                head + f"<br>in the service: {_ms(hop['service_ms'])}" + note)
        else:
            bar(row, start, end - start, HOP, "hop (broker + service)", head)
        fig.add_annotation(y=names[row], x=end, text=f"+{_ms(hop['latency_ms'])}", showarrow=False,
                           xanchor="left", xshift=8, font={"size": 11})
    dead = events["dead_letter"].astype(bool).tolist()
    hover = [f"{_e(e['event_type'])} in {_e(e['topic'])} ({_e(e['broker'])})<br>offset {_e(e['offset'])}"
             f"<br>service: {_e(e['source'] or 'unknown')}<br>+{_ms(x)}" for e, x in zip(trace["events"], offset)]
    fig.add_trace(go.Scatter(x=offset, y=names, mode="markers", name="event", hovertemplate="%{text}<extra></extra>",
                             text=hover, marker={"symbol": ["x" if d else "diamond" for d in dead], "size": 12,
                                                 "color": [DEAD if d else EVENT for d in dead]}))
    span = max(offset) if offset else 0
    fig.update_layout(barmode="overlay", height=110 + 38 * len(names), margin={"l": 10, "r": 90, "t": 30, "b": 40},
                      legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
                      xaxis={"title": "milliseconds since the first event", "range": [-0.02 * span - 1, span * 1.12 + 1],
                             "zeroline": False},
                      yaxis={"autorange": "reversed", "categoryorder": "array", "categoryarray": names})
    return fig
