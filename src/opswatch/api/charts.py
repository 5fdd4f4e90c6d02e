"""SVG drawn by hand: the status page's sparklines and availability bars, and
``GET /charts/{check}/{metric}.svg``, a chart of every series of one metric of a check.

No library and no script: polylines in a ``viewBox`` scaled by CSS, coordinates rounded to
one decimal so a day of 5-minute points stays a few KB. Every text (labels come from targets
and are untrusted) is escaped; the page's SVG is inline, the chart a standalone document.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from html import escape

from aiohttp import web

from opswatch.api.capacity import capacity_of, since_param, step_param
from opswatch.capacity.resources import SeriesHistory
from opswatch.notifiers.render import format_value

#: the chart's content type
SVG = "image/svg+xml"
#: the lines' colours, in turn
PALETTE = ("#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2")
#: at most this many series in one chart (a metric with more label sets: the first ones)
MAX_SERIES = len(PALETTE)
#: an availability at least this high is good (green), at least ``FAIR`` amber, else red
GOOD, FAIR = 0.999, 0.99

Point = tuple[float, float]


def _scale(points: Sequence[Point], box: tuple[float, float, float, float]) -> list[Point]:
    """``points`` (time, value) into ``box`` (x, y, width, height), the highest at the top."""
    x, y, width, height = box
    t0, t1 = min(p[0] for p in points), max(p[0] for p in points)
    lo, hi = min(p[1] for p in points), max(p[1] for p in points)
    span_t, span_v = (t1 - t0) or 1.0, (hi - lo) or 1.0
    return [
        (x + (t - t0) / span_t * width, y + height - (v - lo) / span_v * height) for t, v in points
    ]


def _coords(points: Sequence[Point]) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in points)


def sparkline(
    points: Sequence[Point],
    label: str,
    *,
    trend: Sequence[Point] = (),
    width: int = 120,
    height: int = 28,
) -> str:
    """An inline SVG line of ``points`` (time, value) with ``label`` as its accessible name;
    ``trend`` (two points or more, in the same units) drawn dashed on the same scale."""
    name = escape(label)
    finite = [p for p in points if math.isfinite(p[1])]
    opening = f'<svg class="spark" viewBox="0 0 {width} {height}" role="img" aria-label="{name}">'
    if not finite:
        return f"{opening}</svg>"
    scaled = _scale([*finite, *trend], (1, 2, width - 2, height - 4))
    line, dashed = scaled[: len(finite)], scaled[len(finite) :]
    extra = f'<polyline class="trend" points="{_coords(dashed)}"/>' if dashed else ""
    return f'{opening}<polyline points="{_coords(line)}"/>{extra}</svg>'


def availability_class(fraction: float | None) -> str:
    if fraction is None:
        return "n"
    if fraction >= GOOD:
        return "g"
    return "w" if fraction >= FAIR else "b"


def availability_bar(days: Sequence[float | None], first: datetime) -> str:
    """One cell per day (``first`` the oldest) coloured by its availability: runs of good
    days and of days without data drawn as one shape, a day not all good on its own with
    its figure on hover (kept small: a page lists many checks)."""
    cell = 3
    parts: list[str] = []
    index = 0
    while index < len(days):
        kind = availability_class(days[index])
        end = index + 1
        while end < len(days) and availability_class(days[end]) == kind and kind in "gn":
            end += 1
        x, width = index * cell, (end - index) * cell - 0.5
        shape = f'<path class="{kind}" d="M{x} 0h{width:g}v9H{x}z"'
        if kind in "gn":
            parts.append(shape + "/>")
        else:
            tip = f"{_day(first, index)}: {100 * (days[index] or 0.0):.2f}%"
            parts.append(f"{shape}><title>{tip}</title></path>")
        index = end
    return (
        f'<svg class="bar" viewBox="0 0 {len(days) * cell} 9" preserveAspectRatio="none">'
        f"{''.join(parts)}</svg>"
    )


def _day(first: datetime, index: int) -> str:
    return (first + timedelta(days=index)).strftime("%Y-%m-%d")


def chart(title: str, found: Sequence[SeriesHistory]) -> str:
    """A standalone SVG document: each series' line (the means of roll-ups, their min-max
    as a band), a value axis, the time span and a legend of the series' labels."""
    width, height, left, top, plot_w, plot_h = 720, 320, 64, 28, 640, 220
    lines = [(s, _points(s)) for s in found[:MAX_SERIES]]
    every = [p for _, (line, band) in lines for p in (*line, *band) if math.isfinite(p[1])]
    body: list[str] = [
        f'<text x="{left}" y="18" class="t">{escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" class="plot"/>',
    ]
    if every:
        box = (left, top, plot_w, plot_h)
        lo, hi = min(v for _, v in every), max(v for _, v in every)
        t0, t1 = min(t for t, _ in every), max(t for t, _ in every)
        for fraction in (0.0, 0.5, 1.0):
            y = top + plot_h - fraction * plot_h
            value = format_value(round(lo + fraction * (hi - lo), 6))
            body.append(f'<text x="{left - 6}" y="{y + 4:.1f}" class="v">{escape(value)}</text>')
            body.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}"/>')
        for x, moment, anchor in ((left, t0, "start"), (left + plot_w, t1, "end")):
            stamp = datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M UTC")
            body.append(
                f'<text x="{x}" y="{top + plot_h + 16}" text-anchor="{anchor}">{stamp}</text>'
            )
        # every line on the chart's one scale: the bounds come first, then are cut off
        corners = [(t0, lo), (t1, hi)]
        for index, (series, (line, band)) in enumerate(lines):
            colour = PALETTE[index]
            if band:
                scaled = _scale([*corners, *band], box)[2:]
                body.append(f'<polygon points="{_coords(scaled)}" fill="{colour}" opacity="0.15"/>')
            scaled = _scale([*corners, *line], box)[2:]
            body.append(
                f'<polyline points="{_coords(scaled)}" stroke="{colour}" fill="none" '
                'stroke-width="1.5"/>'
            )
            legend = ", ".join(f"{k}={v}" for k, v in sorted(series.series.labels.items()))
            body.append(
                f'<text x="{left + 150 * index}" y="{height - 12}" fill="{colour}">'
                f"{escape(legend or series.series.metric)}</text>"
            )
    else:
        body.append(f'<text x="{left + 8}" y="{top + 20}">no points in this range</text>')
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" font-family="sans-serif" font-size="11">'
        "<style>.plot{fill:#fff;stroke:#ccc}line{stroke:#eee}.v{text-anchor:end}"
        ".t{font-size:13px;font-weight:bold}</style>"
        f"{''.join(body)}</svg>\n"
    )


def _points(history: SeriesHistory) -> tuple[list[Point], list[Point]]:
    """(the line, the band's outline) of one series: raw values, or the roll-ups' means
    with their min-max band (the maxima forwards, the minima back)."""
    if history.raw:
        return [(float(p.at), p.value) for p in history.raw], []
    rollups = history.rollups
    line = [(float(r.at), r.mean) for r in rollups]
    band = [(float(r.at), r.max) for r in rollups] + [(float(r.at), r.min) for r in rollups[::-1]]
    return line, band


async def chart_handler(request: web.Request) -> web.Response:
    """``GET /charts/{check}/{metric}.svg?since=24h``."""
    capacity = capacity_of(request)
    check, metric = request.match_info["check"], request.match_info["metric"]
    now = capacity.clock()
    since = max(
        since_param(request.query.get("since", "24h"), now),
        now - timedelta(seconds=capacity.history.retention),
    )
    step = step_param(None, (now - since).total_seconds())
    found = await capacity.series(check, metric, since, step)
    if step is not None and not any(h.rollups for h in found):  # not rolled up yet
        found = await capacity.series(check, metric, since, None)
    if not found:
        raise web.HTTPNotFound(
            text=f"no metric history for check {check!r} metric {metric!r} "
            f"(GET /api/v1/metrics/{check} lists its series)"
        )
    text = chart(f"{check} {metric} since {since.astimezone(UTC):%Y-%m-%d %H:%M} UTC", found)
    return web.Response(text=text, content_type=SVG, headers={"Cache-Control": "no-cache"})
