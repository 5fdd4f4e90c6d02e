"""``GET /``: the status page, one self-contained HTML document (no script, no external
asset, inline SVG) that refreshes itself every :data:`REFRESH` seconds.

What it shows: every check (at most :data:`MAX_CHECKS`, failing ones first) with its state
and a 90-day availability bar (the daily means of its ``up`` roll-ups); the active alerts
with severity, age, acknowledgement and what mutes them; the incidents of the last
:data:`INCIDENT_DAYS` days from the alert history, and the recoveries; a sparkline of each
key metric (the last day) and of each forecast's series (its window, with the trend dashed),
each linking to its chart (:mod:`opswatch.api.charts`).

:func:`gather` reads the services into a :class:`StatusView`; :func:`render` is pure and
escapes every value it prints (summaries, labels and notes are untrusted). The expensive
reads are cached by :class:`PageCache`: a day's availability once the day has settled, the
forecasts for :data:`opswatch.capacity.check.EVERY` seconds, so a page left open costs a
few small queries per refresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from html import escape
from urllib.parse import quote

from aiohttp import web

from opswatch.api.charts import Point, availability_bar, sparkline
from opswatch.api.services import ALERTS, CAPACITY, CHECKS, MUTES, SILENCES, STORE
from opswatch.capacity.check import EVERY as FORECAST_EVERY
from opswatch.capacity.forecast import DAY
from opswatch.capacity.resources import Capacity, merge
from opswatch.model import (
    Alert,
    CheckStatus,
    Forecast,
    Health,
    Labels,
    MetricSeries,
    RecoveryResult,
    Rollup,
    TransitionKind,
)
from opswatch.notifiers.render import format_duration, format_value, utc_iso
from opswatch.ports import StateStore, StoreError

#: the page reloads itself this often (seconds)
REFRESH = 30
#: the availability bar's length (days)
BAR_DAYS = 90
#: incidents and recoveries of this many days
INCIDENT_DAYS = 7
#: at most this many checks listed (failing first), and of incidents and recoveries
MAX_CHECKS, MAX_INCIDENTS, MAX_RECOVERIES = 100, 20, 10
#: how many transitions of the alert history are read for the incidents
HISTORY_READ = 1000
#: the metrics with a sparkline (by name or suffix), at most :data:`MAX_SPARKS` series
KEY_METRICS = (
    "host.cpu_percent",
    "host.memory_percent",
    "host.swap_percent",
    "host.load_per_core",
    "host.disk_used_percent",
)
KEY_SUFFIXES = ("latency_seconds", "connect_seconds", "ping_seconds")
MAX_SPARKS = 24
#: a sparkline's points: the last day in half-hours, a forecast's window in 6-hour maxima
SPARK_STEP, FORECAST_STEP = 1800, 6 * 3600
#: a day's roll-ups are final this long after it ended (the roll-up job's settle time)
SETTLED = 3600


@dataclass(frozen=True, slots=True)
class CheckLine:
    check: str
    #: up, down, error
    state: str
    detail: str | None
    alerts: int
    #: availability per day, oldest first (None: no data that day)
    days: tuple[float | None, ...] = ()


@dataclass(frozen=True, slots=True)
class Incident:
    alert: Alert
    started_at: datetime
    resolved_at: datetime | None
    note: str | None


@dataclass(frozen=True, slots=True)
class Spark:
    check: str
    metric: str
    labels: Labels
    points: tuple[Point, ...]
    trend: tuple[Point, ...] = ()
    forecast: Forecast | None = None


@dataclass(frozen=True, slots=True)
class StatusView:
    """Everything the page shows, read at ``now``."""

    now: datetime
    health: Health
    checks: Sequence[CheckLine]
    hidden_checks: int
    alerts: Sequence[tuple[Alert, list[str]]]
    incidents: Sequence[Incident]
    recoveries: Sequence[RecoveryResult]
    history: bool
    sparks: Sequence[Spark] = ()
    forecasts: Sequence[Spark] = ()
    #: what kept part of the page from being read
    problem: str | None = None


@dataclass(slots=True)
class PageCache:
    """The slow parts of the page, kept between views: each ``up`` series' availability of
    the days that have settled (only those of the checks listed), and the forecasts."""

    days: dict[int, dict[int, float]] = field(default_factory=dict)
    settled_until: int = 0
    forecasts: tuple[datetime, list[Spark]] | None = None

    async def availability(
        self, capacity: Capacity, series: Sequence[MetricSeries], now: datetime
    ) -> dict[int, dict[int, float]]:
        """Per series id, per day start: the mean of its ``up`` that day (the last
        :data:`BAR_DAYS` days, today included)."""
        at = int(now.timestamp())
        first = at - at % DAY - (BAR_DAYS - 1) * DAY
        settled = (at - SETTLED) - (at - SETTLED) % DAY
        for gone in set(self.days) - {s.id for s in series}:
            del self.days[gone]
        known = [s.id for s in series if s.id in self.days]
        fresh = [s.id for s in series if s.id not in self.days]
        reads = [(known, max(self.settled_until, first)), (fresh, first)]
        today: dict[int, dict[int, float]] = {}
        for ids, since in reads:
            if not ids:
                continue
            for day in await capacity.store.history_rollups_merged(ids, since, at + 1, DAY):
                target = self.days if day.at < settled else today
                target.setdefault(day.series, {})[day.at] = day.mean
        self.settled_until = settled
        for days in self.days.values():
            for old in [d for d in days if d < first]:
                del days[old]
        return {s.id: {**self.days.get(s.id, {}), **today.get(s.id, {})} for s in series}

    async def forecast_sparks(self, capacity: Capacity, now: datetime) -> list[Spark]:
        """A spark per forecast, recomputed every :data:`FORECAST_EVERY` seconds."""
        if (
            self.forecasts is not None
            and (now - self.forecasts[0]).total_seconds() < FORECAST_EVERY
        ):
            return self.forecasts[1]
        forecasts = await capacity.forecasts()
        window = capacity.forecast.window
        since = now - timedelta(seconds=window)
        sparks: list[Spark] = []
        for forecast in forecasts:
            found = [
                h
                for h in await capacity.series(
                    forecast.check, forecast.metric, since, FORECAST_STEP
                )
                if dict(h.series.labels) == dict(forecast.labels)
            ]
            points = tuple((float(r.at), r.max) for h in found for r in h.rollups)
            end = now.timestamp()
            trend = (
                (end - window, forecast.value - forecast.per_day * window / DAY),
                (end, forecast.value),
            )
            sparks.append(
                Spark(forecast.check, forecast.metric, forecast.labels, points, trend, forecast)
            )
        self.forecasts = (now, sparks)
        return sparks


PAGE: web.AppKey[PageCache] = web.AppKey("status_page")


def check_line(status: CheckStatus, alerts: int, days: tuple[float | None, ...] = ()) -> CheckLine:
    """A check's state from its last run: error (its collector failed), down (an ``up``
    sample is 0) or up."""
    if status.error is not None:
        state = "error"
    elif any(s.metric.endswith(".up") and s.value != 1 for s in status.samples):
        state = "down"
    else:
        state = "up"
    return CheckLine(status.check, state, status.error, alerts, days)


_ORDER = {"error": 0, "down": 1, "up": 2}


def listed(lines: Sequence[CheckLine]) -> tuple[list[CheckLine], int]:
    """The checks the page lists (failing ones first, then by alerts and name, at most
    :data:`MAX_CHECKS`) and how many are left out."""
    ordered = sorted(lines, key=lambda line: (_ORDER[line.state], -line.alerts, line.check))
    return ordered[:MAX_CHECKS], max(0, len(ordered) - MAX_CHECKS)


async def gather(request: web.Request) -> StatusView:
    """Read the services into a :class:`StatusView`."""
    app = request.app
    now = app[SILENCES].now()
    capacity = app[CAPACITY]
    history = capacity is not None and capacity.history.enabled
    alerts = sorted(
        app[ALERTS].active(), key=lambda a: (-a.severity.rank, a.started_at, a.fingerprint)
    )
    per_check: dict[str, int] = {}
    for alert in alerts:
        per_check[alert.check] = per_check.get(alert.check, 0) + 1
    statuses = app[CHECKS].statuses()
    shown, hidden = listed([check_line(s, per_check.get(name, 0)) for name, s in statuses.items()])
    view = StatusView(
        now=now,
        health=app[CHECKS].health(),
        checks=shown,
        hidden_checks=hidden,
        alerts=[(a, app[MUTES].muting(a, now)) for a in alerts],
        incidents=(),
        recoveries=(),
        history=history,
    )
    try:
        return await _stored(view, app, capacity if history else None)
    except StoreError as exc:  # an outage: what is in memory, and why the rest is missing
        return replace(view, history=False, problem=f"the state store is unavailable: {exc}")


async def _stored(view: StatusView, app: web.Application, capacity: Capacity | None) -> StatusView:
    """``view`` with what the state store holds: incidents, recoveries and, with
    ``capacity``, the availability bars and the sparklines."""
    now = view.now
    since = now - timedelta(days=INCIDENT_DAYS)
    store = app[STORE]
    view = replace(
        view,
        incidents=await incidents(store, since),
        recoveries=[r for r in await store.recovery_history(MAX_RECOVERIES) if r.at >= since],
    )
    if capacity is None:
        return view
    cache = app[PAGE]
    series = await capacity.store.history_series()
    return replace(
        view,
        checks=await _with_days(cache, capacity, series, view.checks, now),
        sparks=await _key_sparks(capacity, series, now),
        forecasts=await cache.forecast_sparks(capacity, now),
    )


async def _with_days(
    cache: PageCache,
    capacity: Capacity,
    series: Sequence[MetricSeries],
    lines: Sequence[CheckLine],
    now: datetime,
) -> list[CheckLine]:
    checks = {line.check for line in lines}
    ups = [s for s in series if s.check in checks and s.metric.endswith(".up")]
    daily = await cache.availability(capacity, ups, now)
    at = int(now.timestamp())
    first = at - at % DAY - (BAR_DAYS - 1) * DAY
    result: list[CheckLine] = []
    for line in lines:
        mine = [daily[s.id] for s in ups if s.check == line.check]
        days: list[float | None] = []
        for day in range(first, first + BAR_DAYS * DAY, DAY):
            values = [d[day] for d in mine if day in d]
            days.append(sum(values) / len(values) if values else None)
        result.append(CheckLine(line.check, line.state, line.detail, line.alerts, tuple(days)))
    return result


def _key(series: MetricSeries) -> bool:
    return series.metric in KEY_METRICS or series.metric.endswith(KEY_SUFFIXES)


async def _key_sparks(
    capacity: Capacity, series: Sequence[MetricSeries], now: datetime
) -> list[Spark]:
    """The last day of each key metric's series (host first), in half-hour means."""
    chosen = sorted(
        (s for s in series if _key(s)),
        key=lambda s: (s.check != "host", s.check, s.metric, sorted(s.labels.items())),
    )[:MAX_SPARKS]
    if not chosen:
        return []
    at = int(now.timestamp())
    rollups = await capacity.store.history_rollups([s.id for s in chosen], at - DAY, at + 1)
    by_series: dict[int, list[Rollup]] = {}
    for rollup in rollups:
        by_series.setdefault(rollup.series, []).append(rollup)
    return [
        Spark(
            s.check,
            s.metric,
            s.labels,
            tuple((float(r.at), r.mean) for r in merge(by_series.get(s.id, []), SPARK_STEP)),
        )
        for s in chosen
    ]


async def incidents(store: StateStore, since: datetime) -> list[Incident]:
    """The alerts that fired since ``since``, newest first, each with when it resolved
    (None: still active) and the resolution's note."""
    transitions = [t for t in await store.history(HISTORY_READ) if t.at >= since]
    opened: dict[str, Incident] = {}
    found: list[Incident] = []
    for transition in reversed(transitions):
        fp = transition.alert.fingerprint
        if transition.kind is TransitionKind.FIRED:
            opened[fp] = Incident(transition.alert, transition.at, None, None)
        elif transition.kind is TransitionKind.RESOLVED and fp in opened:
            start = opened.pop(fp)
            found.append(Incident(start.alert, start.started_at, transition.at, transition.note))
    found += opened.values()
    return sorted(found, key=lambda i: i.started_at, reverse=True)[:MAX_INCIDENTS]


async def page_handler(request: web.Request) -> web.Response:
    """``GET /``."""
    page = render(await gather(request))
    return web.Response(text=page, content_type="text/html", headers={"Cache-Control": "no-cache"})


_CSS = (
    "body{font:15px/1.4 system-ui,sans-serif;margin:0 auto;max-width:960px;padding:0 12px;"
    "color:#111;background:#f7f7f8}h1{font-size:1.3em;margin:.6em 0 .2em}"
    "h2{font-size:1.05em;margin:1.2em 0 .4em}ul{list-style:none;margin:0;padding:0}"
    "li{background:#fff;border:1px solid #e3e3e6;border-radius:6px;margin:0 0 6px;"
    "padding:6px 8px;overflow-wrap:anywhere}.row{display:flex;flex-wrap:wrap;gap:4px 10px;"
    "align-items:center}.name{font-weight:600;flex:1 1 12em}.muted{color:#666;font-size:.9em}"
    ".tag{border-radius:4px;padding:0 5px;font-size:.85em;background:#eee}"
    ".up .tag,.ok{background:#d1fae5}.down .tag,.error .tag,.bad{background:#fee2e2}"
    ".critical .tag,.emergency .tag{background:#dc2626;color:#fff}.warning .tag{background:#fde68a}"
    ".mark{font-size:.85em;border:1px solid #999;border-radius:4px;padding:0 4px}"
    "svg.bar{width:100%;height:14px;display:block;margin-top:4px}.bar .g{fill:#10b981}"
    ".bar .w{fill:#f59e0b}.bar .b{fill:#dc2626}.bar .n{fill:#d4d4d8}"
    "svg.spark{width:120px;height:28px;flex:none}.spark polyline{fill:none;stroke:#2563eb;"
    "stroke-width:1.5}.spark .trend{stroke:#dc2626;stroke-dasharray:3 2}"
    ".banner{padding:8px;border-radius:6px}a{color:#1d4ed8}"
    "@media(max-width:480px){body{font-size:14px}.name{flex-basis:100%}}"
)


def render(view: StatusView) -> str:
    """The page: a whole HTML document, every value escaped."""
    problems = [line for line in view.checks if line.state != "up"]
    if view.alerts or problems:
        banner = (
            f'<p class="banner bad">{len(view.alerts)} active alert(s), '
            f"{len(problems)} check(s) not up</p>"
        )
    else:
        banner = '<p class="banner ok">All checks up, no active alert</p>'
    health = "".join(
        f'<p class="banner bad">{escape(problem)}</p>'
        for problem in (None if view.health.healthy else view.health.reason, view.problem)
        if problem is not None
    )
    sections = [
        _alerts(view),
        _checks(view),
        _incidents(view),
        _recoveries(view),
        _sparks("Key metrics, last 24 h", view.sparks, view, forecasts=False),
        _sparks("Forecasts", view.forecasts, view, forecasts=True),
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="refresh" content="{REFRESH}">'
        f"<title>opswatch status</title><style>{_CSS}</style></head><body>"
        f'<h1>opswatch status</h1><p class="muted">as of {utc_iso(view.now)}, '
        f"refreshed every {REFRESH} s</p>{health}{banner}{''.join(sections)}</body></html>\n"
    )


def _labels(labels: Labels) -> str:
    text = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return escape(text if len(text) <= 120 else text[:119] + "\u2026")


def _alerts(view: StatusView) -> str:
    if not view.alerts:
        return '<section id="alerts"><h2>Active alerts</h2><p class="muted">none</p></section>'
    items = []
    for alert, muting in view.alerts:
        marks = [f'<span class="mark">{escape(reason)}</span>' for reason in muting]
        if alert.acked_by is not None:
            until = (
                "" if alert.ack_expires_at is None else f" until {utc_iso(alert.ack_expires_at)}"
            )
            marks.append(f'<span class="mark">acked by {escape(alert.acked_by)}{until}</span>')
        items.append(
            f'<li class="{escape(alert.severity.value)}"><div class="row">'
            f'<span class="tag">{escape(alert.severity.value)}</span>'
            f'<span class="name">{escape(alert.rule)} on {escape(alert.check)}</span>'
            f'<span class="muted">{escape(alert.state.value)} for '
            f"{format_duration((view.now - alert.started_at).total_seconds())}</span>"
            f"{''.join(marks)}</div><div>{escape(alert.summary)}</div></li>"
        )
    return (
        f'<section id="alerts"><h2>Active alerts ({len(view.alerts)})</h2>'
        f"<ul>{''.join(items)}</ul></section>"
    )


def _checks(view: StatusView) -> str:
    first = (view.now - timedelta(days=BAR_DAYS - 1)).astimezone(UTC)
    items = []
    for line in view.checks:
        known = [d for d in line.days if d is not None]
        figure = f"{100 * sum(known) / len(known):.2f}% over {len(known)} d" if known else ""
        detail = "" if line.detail is None else f'<div class="muted">{escape(line.detail)}</div>'
        alerts = f'<span class="mark">{line.alerts} alert(s)</span>' if line.alerts else ""
        bar = availability_bar(line.days, first) if line.days else ""
        items.append(
            f'<li class="{line.state}"><div class="row"><span class="tag">{line.state}</span>'
            f'<span class="name">{escape(line.check)}</span>{alerts}'
            f'<span class="muted">{figure}</span></div>{detail}{bar}</li>'
        )
    more = (
        f'<p class="muted">and {view.hidden_checks} more (see /status)</p>'
        if view.hidden_checks
        else ""
    )
    empty = "" if items else '<p class="muted">no check has run yet</p>'
    title = f"Checks, {BAR_DAYS}-day availability" if view.history else "Checks"
    return f'<section id="checks"><h2>{title}</h2>{empty}<ul>{"".join(items)}</ul>{more}</section>'


def _incidents(view: StatusView) -> str:
    items = []
    for incident in view.incidents:
        alert = incident.alert
        if incident.resolved_at is None:
            end = "ongoing"
        else:
            took = format_duration((incident.resolved_at - incident.started_at).total_seconds())
            end = f"resolved after {took}" + (
                "" if incident.note is None else f" ({escape(incident.note)})"
            )
        items.append(
            f'<li class="{escape(alert.severity.value)}"><div class="row">'
            f'<span class="tag">{escape(alert.severity.value)}</span>'
            f'<span class="name">{escape(alert.rule)} on {escape(alert.check)}</span>'
            f'<span class="muted">{utc_iso(incident.started_at)}, {end}</span></div>'
            f"<div>{escape(alert.summary)}</div></li>"
        )
    body = f"<ul>{''.join(items)}</ul>" if items else '<p class="muted">none</p>'
    return f'<section id="incidents"><h2>Incidents, last {INCIDENT_DAYS} days</h2>{body}</section>'


def _recoveries(view: StatusView) -> str:
    items = [
        f'<li><div class="row"><span class="tag">{escape(r.outcome.value)}</span>'
        f'<span class="name">{escape(r.action)} {escape(r.target)}</span>'
        f'<span class="muted">{utc_iso(r.at)}, {r.attempts} attempt(s), {r.duration_s:.1f} s'
        f'</span></div><div class="muted">{escape(r.detail[:200])}</div></li>'
        for r in view.recoveries
    ]
    body = f"<ul>{''.join(items)}</ul>" if items else '<p class="muted">none</p>'
    return (
        f'<section id="recoveries"><h2>Recoveries, last {INCIDENT_DAYS} days</h2>{body}</section>'
    )


def chart_url(check: str, metric: str) -> str:
    return f"/charts/{quote(check, safe=':')}/{quote(metric, safe='')}.svg"


def _sparks(title: str, sparks: Sequence[Spark], view: StatusView, *, forecasts: bool) -> str:
    if not view.history:
        return ""
    items = []
    for spark in sparks:
        name = f"{spark.check} {spark.metric}"
        if spark.forecast is None:
            value = format_value(round(spark.points[-1][1], 3)) if spark.points else "no data yet"
        else:
            value = _forecast(spark.forecast)
        url = chart_url(spark.check, spark.metric)
        items.append(
            f'<li><div class="row"><a class="name" href="{escape(url)}">{escape(name)}</a>'
            f"{sparkline(spark.points, name, trend=spark.trend)}<span>{escape(value)}</span>"
            f'</div><div class="muted">{_labels(spark.labels)}</div></li>'
        )
    if not items:
        empty = "no rising trend" if forecasts else "no history yet (roll-ups every 5 min)"
        return f'<section><h2>{title}</h2><p class="muted">{empty}</p></section>'
    return f"<section><h2>{title}</h2><ul>{''.join(items)}</ul></section>"


def _forecast(forecast: Forecast) -> str:
    growth = f"{forecast.resource} {format_value(round(forecast.value, 2))}, "
    growth += f"+{format_value(round(forecast.per_day, 3))}/day"
    if forecast.likely_s is None:
        return growth
    earliest = format_duration(forecast.earliest_s or 0.0)
    latest = "never" if forecast.latest_s is None else format_duration(forecast.latest_s)
    return f"{growth}, full in {format_duration(forecast.likely_s)} ({earliest} to {latest})"
