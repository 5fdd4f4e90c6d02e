"""``/api/v1/metrics/{check}`` (the metric history of a check) and ``/api/v1/capacity`` (the
forecasts of every resource with a trend, and the scaling advice)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from aiohttp import web

from opswatch.api.services import CAPACITY
from opswatch.capacity.history import STEP
from opswatch.capacity.resources import Capacity, SeriesHistory
from opswatch.codec import JSON, advice_to_json, forecast_to_json
from opswatch.config import ConfigError, Env

#: without ``step``, a range up to this long answers raw samples (seconds)
RAW_UP_TO = 6 * 3600
#: without ``step``, a longer range is merged into at most this many points per series
MAX_POINTS = 1000


def capacity_of(request: web.Request) -> Capacity:
    capacity = request.app[CAPACITY]
    if capacity is None or not capacity.history.enabled:
        raise web.HTTPNotFound(text="metric history is off (OPSWATCH_HISTORY=off)")
    return capacity


async def metrics(request: web.Request) -> web.Response:
    capacity = capacity_of(request)
    check = request.match_info["check"]
    metric = request.query.get("metric") or None
    now = capacity.clock()
    oldest = now - timedelta(seconds=capacity.history.retention)
    since = max(since_param(request.query.get("since", "1h"), now), oldest)
    step = step_param(request.query.get("step"), (now - since).total_seconds())
    found = await capacity.series(check, metric, since, step)
    if not found:
        what = f"check {check!r}" + ("" if metric is None else f" metric {metric!r}")
        raise web.HTTPNotFound(text=f"no metric history for {what}")
    return web.json_response(
        {
            "check": check,
            "since": since.isoformat(),
            "step": "raw" if step is None else step,
            "series": [_series_json(one) for one in found],
        }
    )


async def capacity(request: web.Request) -> web.Response:
    service = request.app[CAPACITY]
    if service is None or not service.history.enabled:
        return web.json_response({"history": False, "forecasts": [], "advice": []})
    forecasts = await service.forecasts()
    advice = await service.advice()
    return web.json_response(
        {
            "history": True,
            "forecasts": [forecast_to_json(f) for f in forecasts],
            "advice": [advice_to_json(a) for a in advice],
        }
    )


def since_param(value: str, now: datetime) -> datetime:
    """``1h``, ``7d`` (back from now) or an ISO 8601 time with its offset."""
    try:
        return now - timedelta(seconds=Env({"since": value}).duration("since", 0.0))
    except ConfigError:
        pass
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise web.HTTPBadRequest(
            text="since: expected a duration such as 6h or 7d, or an ISO 8601 time with "
            f"its offset, got {value[:60]!r}"
        )
    return when


def step_param(value: str | None, span: float) -> int | None:
    """None for raw samples, else a whole number of 5-minute buckets (seconds)."""
    if value is None:
        if span <= RAW_UP_TO:
            return None
        return max(1, math.ceil(span / MAX_POINTS / STEP)) * STEP
    if value == "raw":
        return None
    try:
        seconds = Env({"step": value}).duration("step", 0.0)
    except ConfigError:
        seconds = 0.0
    if seconds < STEP or seconds % STEP:
        raise web.HTTPBadRequest(
            text=f"step: expected raw or a multiple of 5m (5m, 1h, 1d), got {value[:60]!r}"
        )
    return int(seconds)


def _series_json(history: SeriesHistory) -> JSON:
    points: list[list[float]] = (
        [[p.at, p.value] for p in history.raw]
        if history.raw
        else [[r.at, r.min, r.max, r.mean, r.p95, r.count] for r in history.rollups]
    )
    return {
        "metric": history.series.metric,
        "labels": dict(history.series.labels),
        "points": points,
    }
