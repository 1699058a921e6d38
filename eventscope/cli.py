"""The ``eventscope`` command line. Query commands read the store and print JSON with ``--json``."""
from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import re
import signal
import sys
import threading
from pathlib import Path

import pandas as pd

from eventscope import __version__, exporter, memory
from eventscope.alerts_view import firing_now, format_value
from eventscope.analysis import dlq as dlq_analysis
from eventscope.analysis import lag as lag_analysis
from eventscope.analysis import traces
from eventscope.config import ConfigError, load_config
from eventscope.launch import dashboard_command
from eventscope.query import Queries
from eventscope.runner import StoreLock, build_collectors, build_runner, open_store
from eventscope.trace_index import StoreTraceIndex


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"eventscope: config error: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "store", None):
        config.store.dir = args.store
    try:
        return args.func(args, config)
    except BrokenPipeError:
        return 0


STORE_HELP = "store directory (default: $EVENTSCOPE_STORE or .eventscope/)"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="eventscope", description="Observability for Kafka, Redis Streams and RabbitMQ.")
    p.add_argument("--version", action="version", version=f"eventscope {__version__}")
    p.add_argument("--config", metavar="FILE", help="TOML config file (default: $EVENTSCOPE_CONFIG)")
    sub = p.add_subparsers(dest="command", required=True)

    def query(name, helptext, func):
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument("--store", metavar="DIR", help=STORE_HELP)
        sp.add_argument("--json", action="store_true", help="print one JSON document")
        sp.set_defaults(func=func)
        return sp

    c = sub.add_parser("collect", help="sample the configured brokers into the store")
    c.add_argument("--store", metavar="DIR", help=STORE_HELP)
    c.add_argument("--once", action="store_true", help="one sample, then exit")
    c.add_argument("--duration", type=float, metavar="S", help="run for S seconds")
    c.add_argument("--interval", type=float, metavar="S", help="seconds between samples")
    c.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    c.add_argument("--parent", type=int, help=argparse.SUPPRESS)  # the dashboard that started it
    c.set_defaults(func=cmd_collect)
    query("lag", "consumer lag per group/topic/partition", cmd_lag)
    query("dlq", "dead-letter queues", cmd_dlq)
    t = query("trace", "every event that carried an ID", cmd_trace)
    t.add_argument("id", metavar="ID", help="correlation ID, W3C trace ID or event ID")
    g = query("graph", "the producer/consumer graph", cmd_graph)
    g.add_argument("--format", choices=["json", "dot", "asyncapi"], default="json",
                   help="{nodes, edges} as JSON (default), Graphviz DOT, or AsyncAPI 3.0 per service")
    g.add_argument("--window", type=float, metavar="S", help="only the last S seconds of traffic (default: all stored)")
    g.add_argument("--service", metavar="NAME", help="asyncapi: the document of this one service")
    g.add_argument("--out", metavar="DIR", help="asyncapi: write one NAME.asyncapi.json per service into this directory")
    a = query("alerts", "firing alerts", cmd_alerts)
    a.add_argument("--exit-code", action="store_true", help="exit 1 when a critical alert fires")
    e = sub.add_parser("exporter", help="serve /metrics for Prometheus from the store")
    e.add_argument("--store", metavar="DIR", help=STORE_HELP)
    e.add_argument("--host", help="address to bind (default: exporter.host, 127.0.0.1; "
                   "/metrics has no authentication: see README, Security)")
    e.add_argument("--port", type=int, help=f"port to listen on (default: exporter.port, {exporter.DEFAULT_PORT}, "
                   "eventscope's own; /healthz answers there too)")
    e.set_defaults(func=cmd_exporter)
    d = sub.add_parser("dashboard", help="the Streamlit dashboard, on 127.0.0.1 by default")
    d.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; the dashboard has no authentication: "
                        "beyond loopback, put a reverse proxy with authentication in front)")
    d.add_argument("--port", type=int, default=8501, help="port to listen on (default 8501)")
    d.add_argument("--store", metavar="DIR", help=STORE_HELP)
    d.set_defaults(func=cmd_dashboard)
    m = sub.add_parser("demo", help="local brokers + simulator + dashboard")
    m.add_argument("--port", type=int, default=8501, help="the dashboard's port (default 8501)")
    m.add_argument("--store", metavar="DIR", help="store directory (default: .eventscope/demo/store)")
    m.set_defaults(func=cmd_demo)
    return p


def commands() -> dict[str, argparse.ArgumentParser]:
    """``{"eventscope": the parser, "eventscope lag": its sub-parser, ...}``."""
    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"eventscope": parser, **{f"eventscope {n}": c for n, c in sub.choices.items()}}


def reference(width: int = 100) -> str:
    """Every command's ``--help`` at ``width`` columns: docs/cli.md (``make cli-docs``)."""
    parts = ["# eventscope command line", "",
             "Every command's `--help`, written by `make cli-docs` from the program itself.", ""]
    for name, command in commands().items():
        command.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=width)
        parts += [f"## `{name}`", "", "```text", command.format_help().rstrip(), "```", ""]
    return "\n".join(parts)


def _store(config):
    return open_store(config)


def _queries(config) -> Queries:
    queries = Queries(open_store(config))
    for cap in queries.store.caps():
        since = cap["kept_since"].strftime("%Y-%m-%d %H:%M:%S")
        print(f"eventscope: {cap['frame']} history in {config.store_dir} starts {since} UTC: "
              f"store.max_rows ({cap['max_rows']:,}) cut it short of the "
              f"{cap['retention_hours']:g} h retention", file=sys.stderr)
    for lost in queries.store.damage():
        span = "" if lost["tmin"] is None else (f" from {lost['tmin']:%Y-%m-%d %H:%M:%S} to "
                                                f"{lost['tmax']:%Y-%m-%d %H:%M:%S} UTC")
        rows = "some" if lost["rows"] is None else f"{lost['rows']:,}"
        print(safe_text(f"eventscope: {rows} {lost['frame']} rows{span} are missing: "
                        f"{lost['file']} in {config.store_dir} could not be read ({lost['error']})"),
              file=sys.stderr)
    return queries


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def safe_text(value):
    """``value`` with control characters written as ``\\x1b`` (other values as they are)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", value) if isinstance(value, str) else value


def terminal_safe(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with control characters in its text cells written as ``\\x1b``: a topic or
    group named with terminal escape sequences must not recolour, move or retitle the
    terminal that prints it."""
    text = [c for c in table.columns if table[c].dtype == object or pd.api.types.is_string_dtype(table[c])]
    return table.assign(**{c: table[c].map(safe_text, na_action="ignore") for c in text}) if text else table


def _print(doc, as_json: bool, table: pd.DataFrame | None) -> None:
    """``doc`` as one JSON line with ``--json``, else ``table`` for people (whole: every row
    and column, unwrapped; ``table`` may be None only with ``--json``)."""
    if as_json:
        print(json.dumps(doc, default=str))  # JSON escapes control characters itself
    elif not table.empty:
        print(terminal_safe(table).to_string(index=False))
    else:
        print("(nothing yet: is a collector writing this store? see `eventscope collect`)")


def cmd_collect(args, config) -> int:
    if args.interval:
        config.collect.interval_s = args.interval
    lock = StoreLock(config.store_dir)
    if not lock.acquire():
        print(f"eventscope: another collector already writes {config.store_dir}", file=sys.stderr)
        return 2
    for s in config.sources_summary():
        print(f"collecting {s['source']} ({s['address']}) into {config.store_dir}", file=sys.stderr)
    if "MALLOC_ARENA_MAX" not in os.environ:  # before the collectors start their threads
        memory.limit_arenas(2)
    memory.tune_gc()
    runner = build_runner(config, _store(config), build_collectors(config))
    # SIGTERM (systemd, `timeout`, a container runtime) and SIGHUP stop like Ctrl-C: the sample in
    # progress ends, the clients close, the exit status is 0
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, lambda *_: runner.stop_event.set())
    try:
        if args.once:
            health = runner.run_once(force=True)
            for r in health.itertuples(index=False):
                state = "ok" if r.ok else f"FAILED: {r.error}"
                print(f"{r.source}/{r.collector}: {state} ({r.rows} rows, {r.duration_ms:.0f} ms)",
                      file=sys.stderr)
            return 0 if health["ok"].all() else 1
        runner.run(duration_s=args.duration, parent=args.parent)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        runner.close()
        lock.release()


def cmd_lag(args, config) -> int:
    latest = _queries(config).lag_partitions()
    latest = latest.sort_values(["broker", "group", "topic", "partition"], kind="stable")
    _print(lag_analysis.to_rows(latest), args.json, latest.drop(columns=["source"], errors="ignore"))
    return 0


def cmd_dlq(args, config) -> int:
    frame = _queries(config).dlq_summary(now=pd.Timestamp.now(tz="UTC"))
    _print(dlq_analysis.to_rows(frame), args.json, frame.drop(columns=["sampled_at"], errors="ignore"))
    return 0


def cmd_trace(args, config) -> int:
    queries = _queries(config)
    store = queries.store
    rows = StoreTraceIndex(store).lookup(args.id)
    found = None
    if not rows.empty:
        # the samples over the trace's own span split its hops (while the raw window holds
        # them); the newest decide the outcome
        topics = sorted(set(rows["topic"].astype(str)))
        first, last = rows["at"].min(), rows["at"].max()
        history = queries.scan("lag", since=first - pd.Timedelta(seconds=60),
                             until=last + pd.Timedelta(seconds=300), where={"topic": topics})
        # what each service reads, learned from the last hour's traffic (as the dashboard does)
        found = traces.from_rows(rows, lag=queries.lag_partitions(topics=tuple(topics)), lag_history=history,
                                 quiet_s=config.traces.quiet_s,
                                 consumes=queries.consumed_topics(pd.Timestamp.now(tz="UTC") - pd.Timedelta(hours=1)),
                                 spans=queries.trace_spans(rows["trace_id"], rows["observed_at"].min()))
    if found is None:
        print(f"eventscope: no event carries the ID {args.id!r} in {config.store_dir}", file=sys.stderr)
        return 1
    _print(found, args.json, None if args.json else pd.DataFrame(found["events"]))
    return 0


def cmd_graph(args, config) -> int:
    from eventscope.graph.build import build_graph  # networkx (12 MiB): not for `collect`
    from eventscope.graph.export import to_dot, to_json  # networkx, as the line above
    queries = _queries(config)
    since = _since(args.window) if args.window else None
    events = queries.scan("events", since=since)
    dlq = queries.scan("dlq_1m", since=since).rename(columns={"minute": "sampled_at"})
    consumed = queries.scan("lag_1m", since=since, columns=["minute", "broker", "group", "topic", "consumed"])
    g = build_graph(events, None, dlq, groups=queries.lag_groups(), consumed=consumed,
                    spans=queries.span_links(since if since is not None else
                                             pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=3650)),
                    bindings=queries.store.get("bindings_latest"), queues=queries.store.get("queues_latest"))
    if args.format == "asyncapi":
        return _asyncapi(args, config, g, events)
    if args.format == "dot":
        print(to_dot(g))
    else:
        print(json.dumps(to_json(g), default=str, indent=None if args.json else 2))
    return 0


def _asyncapi(args, config, g, events) -> int:
    """All services as ``{name: document}``, one with ``--service``, or files with ``--out``."""
    from eventscope.graph import asyncapi  # networkx, as in cmd_graph
    docs = asyncapi.asyncapi_documents(g, events, asyncapi.server_hosts(config.all_sources()))
    indent = None if args.json else 2
    if args.service is not None:
        if args.service not in docs:
            print(f"eventscope: no service {args.service!r} in the observed traffic; known: "
                  f"{', '.join(docs) or 'none'}", file=sys.stderr)
            return 1
        docs = {args.service: docs[args.service]}
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        written = {}
        for name, doc in docs.items():
            stem, n = asyncapi.component_key(name), 1
            while f"{stem}.asyncapi.json" in {Path(p).name for p in written.values()}:
                n += 1
                stem = f"{asyncapi.component_key(name)}-{n}"
            path = out / f"{stem}.asyncapi.json"
            path.write_text(json.dumps(doc, default=str, indent=2) + "\n", encoding="utf-8")
            written[name] = str(path)
        print(json.dumps(written, indent=indent))
    elif args.service is not None:
        print(json.dumps(docs[args.service], default=str, indent=indent))
    else:
        print(json.dumps(docs, default=str, indent=indent))
    return 0


def _cluster_kinds(store) -> dict:
    """Cluster name -> kind, from what the store holds now."""
    out = {}
    for frame in ("lag_groups", "dlq_latest", "topics_latest"):
        rows = store.get(frame, columns=["broker", "kind"]).dropna().drop_duplicates()
        out.update(zip(rows["broker"], rows["kind"]))
    return out


def cmd_alerts(args, config) -> int:
    store = _store(config)
    firing = firing_now(store, config.alerts)
    newest = store.newest_time("health")
    if newest is not None:
        age = (pd.Timestamp.now(tz="UTC") - pd.Timestamp(newest)).total_seconds()
        if age > max(300.0, 3 * config.collect.interval_s):
            print(f"eventscope: the newest sample in {config.store_dir} is {age / 60:.0f} min old; "
                  "these alerts are as of then (is `eventscope collect` running?)", file=sys.stderr)
    rows = [{k: (None if not isinstance(v, (list, dict, str)) and pd.isna(v) else v)
             for k, v in r.items()} for r in firing.to_dict("records")]
    kinds = _cluster_kinds(store)
    for row in rows:  # the cluster a subject is about: `BROKER:group/topic`, `BROKER:dlq`, `SOURCE/collector`
        broker = str(row.get("subject") or "").split(":", 1)[0].split("/", 1)[0]
        row["broker"], row["kind"] = broker or None, kinds.get(broker)
    table = pd.DataFrame({
        "severity": firing["severity"], "rule": firing["rule"], "subject": firing["subject"],
        "value": [format_value(m, v, d) for m, v, d in zip(firing["metric"], firing["value"], firing["detail"])],
        "threshold": [format_value(m, t) if m != "lag_status" else "STALL/STOP"
                      for m, t in zip(firing["metric"], firing["threshold"])],
        "since": firing["since"], "firing since": firing["fired_at"]})
    _print(rows, args.json, table)
    if args.exit_code and (firing["severity"] == "critical").any():
        return 1
    return 0


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps a server to this machine: ``localhost`` or a loopback
    address (127.0.0.0/8, ``::1``); ``0.0.0.0``, ``::`` and every other address do not."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def exposure_warning(what: str, host: str, port: int) -> str | None:
    """The warning to print when ``what`` (the dashboard, the exporter) binds beyond loopback:
    neither has authentication of its own. None on loopback."""
    if is_loopback(host):
        return None
    where = f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
    return (f"eventscope: WARNING: {what} listens on {where}, beyond loopback, and has no "
            "authentication: anyone who can reach that port sees the brokers' topics, groups, "
            "services and (masked) messages. Bind it to 127.0.0.1 (the default) and put a "
            "reverse proxy with authentication and TLS in front of it (README: Security).")


def _warn_exposure(what: str, host: str, port: int) -> None:
    warning = exposure_warning(what, host, port)
    if warning:
        print(warning, file=sys.stderr, flush=True)


def cmd_exporter(args, config) -> int:
    host = args.host if args.host is not None else config.exporter.host
    port = args.port if args.port is not None else config.exporter.port
    _warn_exposure("the Prometheus exporter", host, port)
    print(f"serving Prometheus metrics on http://{host}:{port}/metrics "
          f"from {config.store_dir}", file=sys.stderr)
    try:
        exporter.serve(_store(config), config, host=host, port=port, timeout_s=config.exporter.timeout_s,
                       stale_after_s=config.exporter.stale_after_s)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_dashboard(args, config) -> int:
    env = dict(os.environ)
    if args.store:
        env["EVENTSCOPE_STORE"] = args.store
    if args.config:  # the Streamlit script (and its collector) load the config from the environment
        env["EVENTSCOPE_CONFIG"] = str(Path(args.config).resolve())
    # Streamlit runs each session's script on its own thread, and glibc gives threads up to
    # 8 × cores heaps of their own, each keeping what it freed: on a big cluster's pages the
    # server grew by hundreds of MB in such heaps. Two are enough for its threads.
    env.setdefault("MALLOC_ARENA_MAX", "2")
    _warn_exposure("the dashboard", args.host, args.port)
    command = dashboard_command(args.port, args.host)
    # Streamlit takes this process's place: signals (Ctrl-C, SIGTERM from systemd or a test)
    # reach the server itself, and no parent lingers holding memory.
    os.execve(command[0], command, env)


def cmd_demo(args, config) -> int:
    from eventscope.demo import run_demo  # the simulator, pika, asyncio: ~8 MiB `collect` does not need
    return run_demo(port=args.port, store=args.store)


def _since(seconds: float) -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=seconds)


if __name__ == "__main__":
    sys.exit(main())
