"""Which earlier event of a correlation chain caused each event: the rule the flow graph's
``causes`` edges and the trace page's hops share.

Taking the event just before (in time, within one correlation ID) is right on a pipeline
where each topic has one consumer. It is wrong as soon as a topic fans out: ``orders`` read
by payment-service and inventory-service makes a ``payments`` event and an ``inventory``
event race, and whichever lands second seems caused by the first. It is wrong again when
one correlation ID spans several requests (one per customer is common): a new order seems
caused by the previous order's last event.

A service can only cause an event from a topic it consumes. What each producer consumes is
learned from the traffic itself, per *producer* (a service and the event type it emits, so
one handler at a time):

1. its candidates are the topics an event of its kind was seen right after;
2. a candidate is consumed when an event on it precedes (within the same chain, and within
   the horizon) at least ``SUPPORT`` of the producer's events: a topic that only races with
   the real input precedes about half of them, one from an earlier request precedes them by
   far more than the horizon; unless another candidate's event almost always comes between
   (it is then an ancestor of the input: ``orders`` before the ``payments`` a shipment
   waits for, which would otherwise win when the customer's next order lands in between);
3. a producer with no such candidate but whose events almost always have *some* candidate
   within the horizon reads several topics (a handler fed by two): the candidates seen
   before a fair share of its events are its inputs;
4. a producer whose events have no candidate within the horizon starts its chains (an
   order placed over HTTP): its events have no cause;
5. too few events to judge (``MIN_EVENTS``): the event just before it, as before.

A causation ID in the envelope (``causation_id``: the event ID of the cause) needs no
learning: where an event carries one that names an earlier event of its chain, that
event is its cause. So do OpenTelemetry spans (:func:`span_causes`): an event whose send
span descends from a span that is, or links to, an earlier event's span was made while
that event was processed.

The horizon is the time a hop can take: twice the producer's 95th-percentile gap to the
event just before it, capped at ``HORIZON_CAP`` times the median gap over all producers (so
the gaps between a customer's requests do not count as hops). The cause of an event is
then the newest earlier event of its chain on a topic its producer consumes. When a
``topics_read`` set is given (topics some consumer group reads, from lag samples), a topic
no group reads causes nothing.

Arrays in, arrays out (numpy, vectorised per producer and candidate topic): a window of
800,000 events costs a few hundred milliseconds.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

SUPPORT = 0.9  # share of a producer's events a consumed topic precedes
SHARED = 0.1  # for a producer reading several topics: share each input precedes
MIN_EVENTS = 5  # fewer events with a predecessor: no learning, the event just before
HORIZON_FACTOR = 2.0
HORIZON_CAP = 50.0  # times the median gap over all producers
HORIZON_FLOOR_US = 1_000_000  # a cap never below one second


def chain_order(chain: np.ndarray, at_us: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """Row order by (chain, time); within one chain and one instant, by event-type rank.

    Two hops of one chain can share a timestamp (a fast consumer on the same host), and
    sorting by time alone would pair them in either order. Such ties are broken by where
    an event type usually stands in its chains (OrderPlaced first, PaymentRefunded late)."""
    span = int(at_us.max() - at_us.min()) + 1
    if (int(chain.max()) + 1) * span < 2 ** 62:
        key = chain.astype("int64") * span + (at_us - at_us.min())
        order = np.argsort(key)
    else:  # an enormous window: two-key sort
        order = np.lexsort((at_us, chain))
        key = None
    starts = np.r_[True, chain[order][1:] != chain[order][:-1]]
    index = np.arange(len(order))
    position = index - np.maximum.accumulate(np.where(starts, index, 0))
    bins = int(kind.max()) + 1
    rank = np.bincount(kind[order], weights=position, minlength=bins) / np.maximum(
        np.bincount(kind[order], minlength=bins), 1)
    if key is None:
        return np.lexsort((rank[kind], at_us, chain))
    sorted_key = key[order]
    tied = np.flatnonzero(sorted_key[1:] == sorted_key[:-1])
    if len(tied):
        spots = np.unique(np.r_[tied, tied + 1])  # positions inside a run of equal keys
        rows = order[spots]
        order[spots] = rows[np.lexsort((rank[kind[rows]], key[rows]))]
    return order


def previous_other_place(chain: np.ndarray, place: np.ndarray) -> np.ndarray:
    """Per row (rows in chain order): the row of the newest earlier event of its chain on
    another place (topic), -1 when there is none."""
    n = len(chain)
    if not n:
        return np.empty(0, dtype=np.int64)
    index = np.arange(n)
    run_start = np.r_[True, (chain[1:] != chain[:-1]) | (place[1:] != place[:-1])]
    first = np.maximum.accumulate(np.where(run_start, index, 0))  # start of each row's run
    before = first - 1
    same_chain = before >= 0
    same_chain[same_chain] = chain[before[same_chain]] == chain[same_chain]
    return np.where(same_chain, before, -1).astype(np.int64)


def _latest_on(rows_of_place: np.ndarray, chain: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """For each row in ``targets``: the newest earlier row of its chain among
    ``rows_of_place`` (sorted positions), -1 when none."""
    j = np.searchsorted(rows_of_place, targets, side="left") - 1
    found = j >= 0
    out = np.full(len(targets), -1, dtype=np.int64)
    hit = rows_of_place[j[found]]
    same = chain[hit] == chain[targets[found]]
    out[np.flatnonzero(found)[same]] = hit[same]
    return out


def learn(chain: np.ndarray, at_us: np.ndarray, place: np.ndarray, producer: np.ndarray,
          topics_read: np.ndarray | None = None, allowed: dict | None = None) -> dict[int, np.ndarray | None]:
    """Per producer code: the places it consumes (an array, maybe empty for one that starts
    chains), or None when it has too few events to tell. ``allowed`` maps a producer code to
    the places (a bool array) its service's consumer groups read, where that is known."""
    prev = previous_other_place(chain, place)
    has = prev >= 0
    gaps = (at_us - np.where(has, at_us[np.maximum(prev, 0)], 0)).astype("float64")
    cap = max(HORIZON_FLOOR_US, HORIZON_CAP * float(np.median(gaps[has]))) if has.any() else 0.0
    by_place = _rows_by_place(place)
    out: dict[int, np.ndarray | None] = {}
    for code in np.unique(producer[producer >= 0]):
        rows = np.flatnonzero((producer == code) & has)
        if len(rows) < MIN_EVENTS:
            out[int(code)] = None
            continue
        known = allowed is not None and int(code) in allowed
        if known:  # its service's groups say what it reads: every such topic is a candidate,
            # also one whose events never come right before (a faster sibling's always do)
            mask = allowed[int(code)] & (topics_read if topics_read is not None else True)
            candidates = np.array([c for c in np.flatnonzero(mask) if c in by_place], dtype=np.int64)
        else:
            candidates = np.unique(place[prev[rows]])
            if topics_read is not None:
                candidates = candidates[topics_read[candidates]]
        found_all = [_latest_on(by_place[c], chain, rows) for c in candidates]
        if known and found_all:  # a hop's time: to the nearest event it may have read
            nearest = np.min([np.where(f >= 0, at_us[rows] - at_us[np.maximum(f, 0)], np.inf)
                              for f in found_all], axis=0)
            nearest = nearest[np.isfinite(nearest)]
            spread = float(np.percentile(nearest, 95)) if len(nearest) else 0.0
        else:
            spread = float(np.percentile(gaps[rows], 95))
        horizon = min(HORIZON_FACTOR * spread, cap)
        support, latest, within_any = [], [], np.zeros(len(rows), dtype=bool)
        for found in found_all:
            near = (found >= 0) & (at_us[rows] - at_us[np.maximum(found, 0)] <= horizon)
            support.append(near.mean())
            latest.append(np.where(near, found, -1))
            within_any |= near
        support = np.asarray(support)
        if len(support) and support.max() >= SUPPORT:
            kept = [i for i in np.flatnonzero(support >= SUPPORT)
                    if not _shadowed(i, latest, support)]
            out[int(code)] = candidates[kept]
        elif len(support) and within_any.mean() >= SUPPORT:
            out[int(code)] = candidates[support >= SHARED]
        else:
            out[int(code)] = candidates[:0]  # starts its chains
    return out


def _shadowed(i: int, latest: list[np.ndarray], support: np.ndarray) -> bool:
    """True when one other consumed-looking candidate's event almost always lies between
    candidate ``i``'s and the produced event: ``i`` is then an ancestor of the real input
    (``orders`` before the ``payments`` a shipment waits for), not an input."""
    mine = latest[i]
    for j, other in enumerate(latest):
        if j != i and support[j] >= SUPPORT and ((mine >= 0) & (other > mine)).mean() >= SUPPORT:
            return True
    return False


def explicit_causes(chain: np.ndarray, event_ids, causation_ids) -> np.ndarray:
    """Per row (rows in chain order): the row of the earlier event of its chain whose event
    ID the row's causation ID names, -1 where it names none."""
    out = np.full(len(chain), -1, dtype=np.int64)
    seen: dict[tuple, int] = {}
    for i, (c, eid, cause) in enumerate(zip(chain.tolist(), event_ids, causation_ids)):
        if isinstance(cause, str) and cause:
            out[i] = seen.get((c, cause), -1)
        if isinstance(eid, str) and eid:
            seen[(c, eid)] = i
    return out


SPAN_DEPTH = 16  # ancestors walked up from a message's span
NO_CAUSE = -2  # explicitly no cause (span_causes)


def span_index(rows: pd.DataFrame) -> dict[str, tuple[str | None, tuple[str, ...]]]:
    """``spans`` rows (``span_id``, ``parent_span_id``, ``links``) as
    ``{span_id: (parent_span_id, linked span IDs)}``."""
    out: dict[str, tuple[str | None, tuple[str, ...]]] = {}
    if rows is None or rows.empty:
        return out
    for span, parent, links in zip(rows["span_id"].tolist(), rows["parent_span_id"].tolist(),
                                   rows["links"].tolist()):
        if isinstance(span, str):
            out[span] = (parent if isinstance(parent, str) and parent else None,
                         tuple(links.split()) if isinstance(links, str) and links else ())
    return out


def span_causes(chain: np.ndarray, span_ids, spans: dict) -> np.ndarray:
    """Per row (rows in chain order; ``span_ids`` the span each message carries in its
    ``traceparent``): the row of the earlier event of its chain that the message was made
    from, by OpenTelemetry spans, -1 where they do not say.

    The message's span and then its ancestors (``spans``: :func:`span_index`) are walked up
    to :data:`SPAN_DEPTH`: the first that is an earlier message's span (a context passed on
    unchanged), or links to one (the Kafka instrumentation's process span links to the send
    span of the message it processes, often in another trace), names the cause. Where a span
    is carried by several messages, the first of them is the one it stands for.

    :data:`NO_CAUSE` (-2) where the spans say there is none: the walk reached a root span,
    every span on the way known, without meeting a message (an order placed over HTTP, whose
    send span descends from the request's span). A walk that meets a span nobody exported
    says nothing (-1)."""
    out = np.full(len(chain), -1, dtype=np.int64)
    if not spans and not any(isinstance(s, str) for s in span_ids):
        return out
    first: dict[tuple, int] = {}  # (chain, span ID) -> the first row carrying it
    for i, (c, span) in enumerate(zip(chain.tolist(), span_ids)):
        if not isinstance(span, str) or not span:
            continue
        current, depth = span, 0
        while depth <= SPAN_DEPTH:
            hit = first.get((c, current))
            if hit is not None:
                out[i] = hit
                break
            known = spans.get(current)
            if known is None:
                break  # a span nobody exported: the spans say nothing
            parent, links = known
            hits = [first[(c, link)] for link in links if (c, link) in first]
            if hits:
                out[i] = max(hits)
                break
            if parent is None:
                out[i] = NO_CAUSE  # a root, every step known, no message met
                break
            current, depth = parent, depth + 1
        first.setdefault((c, span), i)
    return out


def cause_rows(chain: np.ndarray, at_us: np.ndarray, place: np.ndarray, producer: np.ndarray,
               topics_read: np.ndarray | None = None, allowed: dict | None = None,
               explicit: np.ndarray | None = None) -> np.ndarray:
    """Per row (rows in chain order; ``producer`` -1 where unknown): the row of the event
    that caused it, -1 for none. See the module docstring for the rule; ``explicit``
    (:func:`explicit_causes`, :func:`span_causes`) overrides it where the messages say,
    also where they say there is no cause (:data:`NO_CAUSE`)."""
    n = len(chain)
    cause = np.full(n, -1, dtype=np.int64)
    if n < 2:
        return cause
    prev = previous_other_place(chain, place)
    consumes = learn(chain, at_us, place, producer, topics_read, allowed)
    by_place = _rows_by_place(place)
    for code, inputs in consumes.items():
        rows = np.flatnonzero(producer == code)
        if inputs is None:
            cause[rows] = prev[rows]
            continue
        for topic in inputs:
            latest = _latest_on(by_place[topic], chain, rows)
            newer = (latest > cause[rows]) & (place[rows] != topic)
            cause[rows[newer]] = latest[newer]
    if explicit is not None:
        said = explicit >= 0
        cause[said] = explicit[said]
        cause[explicit == NO_CAUSE] = -1
    return cause


_SUFFIX = {"service", "svc", "consumer", "consumers", "group", "app", "worker"}
_TOKENS = re.compile(r"[-_.:/ ]+")


def _tokens(name: str) -> list[str]:
    """A name's words, without a trailing ``service``/``consumer``/… word."""
    words = [w for w in _TOKENS.split(str(name).strip().lower()) if w]
    return words[:-1] if len(words) > 1 and words[-1] in _SUFFIX else words


def _service_like(name: str) -> bool:
    words = [w for w in _TOKENS.split(str(name).strip().lower()) if w]
    return len(words) > 1 and words[-1] in _SUFFIX


def _named_after(group: str, service: str) -> bool:
    """True when ``group``'s name contains ``service``'s words in a row (``prod-payment-service``
    and ``payment-compensation`` for ``payment-service``; environment prefixes are common)."""
    words, mine = _tokens(group), _tokens(service)
    return bool(mine) and any(words[i:i + len(mine)] == mine for i in range(len(words) - len(mine) + 1))


def service_reads(services: list[str], places: list[tuple[str, str]], groups: pd.DataFrame | None
                  ) -> dict[int, np.ndarray]:
    """Per service (index into ``services``) whose consumer groups are known by name (a group
    whose name holds the service's words: ``payment-service``, ``prod-payment-consumer``,
    ``payment-compensation``): the places it may read, a bool array. Those are its own groups' topics and the topics of
    groups named after no service (``payment-compensation`` could be anyone's); never the
    topics only other services' groups read. A service without such a group is not limited."""
    if groups is None or groups.empty:
        return {}
    index = {p: i for i, p in enumerate(places)}
    owned: dict[int, set[int]] = {}
    free: set[int] = set()
    for group, rows in groups.groupby("group", observed=True):
        read = {index[(str(b), str(t))] for b, t in zip(rows["broker"], rows["topic"]) if (str(b), str(t)) in index}
        owners = [i for i, service in enumerate(services) if _named_after(str(group), service)]
        # a group named like a service (`email-service`) that produced nothing seen is that
        # service's: only a group named after no service could be anyone's
        if not owners and not _service_like(str(group)):
            free |= read
        for owner in owners:
            owned.setdefault(owner, set()).update(read)
    out = {}
    for service, read in owned.items():
        mask = np.zeros(len(places), dtype=bool)
        mask[list(read | free)] = True
        out[service] = mask
    return out


def _rows_by_place(place: np.ndarray) -> dict[int, np.ndarray]:
    order = np.argsort(place, kind="stable")
    bounds = np.flatnonzero(np.r_[True, place[order][1:] != place[order][:-1], True])
    return {int(place[order[a]]): order[a:b] for a, b in zip(bounds[:-1], bounds[1:])}


def consumed_topics(events: pd.DataFrame, groups: pd.DataFrame | None = None
                    ) -> dict[tuple[str, str], frozenset | None]:
    """What each producer consumes, learned from ``events`` (columns ``broker``, ``topic``,
    ``service``, ``event_type``, ``correlation_id``, ``at``, ``dead_letter``):
    ``{(service, event type): frozenset of (broker, topic)}``, empty for a producer that
    starts its chains, None for one with too few events to tell. ``groups`` (``lag_groups``
    rows) rules out topics no consumer group reads, as in the flow graph."""
    usable = events[~events["dead_letter"].fillna(False).astype(bool) & events["at"].notna()
                    & events["service"].fillna("").astype(str).ne("")
                    & events["correlation_id"].fillna("").astype(str).ne("")
                    & events["event_type"].ne("<undecodable>")]
    if len(usable) < 2:
        return {}
    chain = pd.factorize(usable["correlation_id"])[0]
    at_us = np.asarray(usable["at"].dt.tz_convert("UTC").dt.tz_localize(None), dtype="datetime64[us]").view("int64")
    kind = pd.factorize(usable["event_type"])[0]
    order = chain_order(chain, at_us, kind)
    rows = usable.iloc[order]
    place, places = pd.factorize(rows["broker"].astype(str) + "\x1f" + rows["topic"].astype(str))
    producer, producers = pd.factorize(rows["service"].astype(str) + "\x1f" + rows["event_type"].astype(str))
    read = None
    if groups is not None and not groups.empty:
        known = set(groups["broker"].astype(str) + "\x1f" + groups["topic"].astype(str))
        watched = set(groups["broker"].astype(str))
        read = np.array([p in known or p.split("\x1f", 1)[0] not in watched for p in places], dtype=bool)
    pairs = [tuple(p.split("\x1f", 1)) for p in places]
    service_of = [p.split("\x1f", 1)[0] for p in producers]
    names = sorted(set(service_of))
    by_service = service_reads(names, pairs, groups)
    allowed = {code: by_service[names.index(service)] for code, service in enumerate(service_of)
               if names.index(service) in by_service}
    learned = learn(chain[order], at_us[order], place, producer, read, allowed)
    out: dict[tuple[str, str], frozenset | None] = {}
    for code, inputs in learned.items():
        service, event_type = producers[code].split("\x1f", 1)
        out[(service, event_type)] = None if inputs is None else frozenset(
            tuple(places[i].split("\x1f", 1)) for i in inputs)
    return out
