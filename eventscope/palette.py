"""The colours of every view: soft fills behind text (table cells, graph nodes) and strong
marks (dots, bars, lines), for the same verdicts everywhere."""
from __future__ import annotations

#: fills: backgrounds that dark text stays readable on
RED_FILL, AMBER_FILL, GREEN_FILL, GREY_FILL, BLUE_FILL = "#f9c0c0", "#fde3a7", "#d9f0d3", "#e8e8e8", "#dbe8f7"
#: marks: dots, bars and lines
RED, AMBER, GREEN, GREY, LIGHT_GREY = "#d62728", "#f0a020", "#2ca02c", "#9e9e9e", "#c8c8c8"

#: a table cell by the status, verdict or severity it shows
STATUS_FILL = {"OK": GREEN_FILL, "WARN": AMBER_FILL, "ERR": RED_FILL, "STOP": RED_FILL, "STALL": RED_FILL,
               "REWIND": RED_FILL, "UNKNOWN": GREY_FILL, "completed": GREEN_FILL, "in_flight": BLUE_FILL,
               "dead_lettered": RED_FILL, "critical": RED_FILL, "warning": AMBER_FILL}
#: a flow-graph node by its health
HEALTH_FILL = {"ok": GREEN_FILL, "warn": AMBER_FILL, "critical": RED_FILL, "unknown": GREY_FILL}
#: a status dot (any status not named is red)
STATUS_DOT = {"OK": GREEN, "WARN": AMBER, "UNKNOWN": GREY}
#: an alert's phases on its timeline
PHASE_COLORS = {"pending": LIGHT_GREY, "warning": AMBER, "critical": RED}
