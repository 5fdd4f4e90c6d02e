"""Robust trends and times to exhaustion, in pure Python (no numeric library in the daemon).

A resource's usage is fitted by Theil-Sen: the median of the slopes between every pair of
points, whose spread gives a confidence range (Sen's rank interval at 95 %). The points are
the maxima of whole days counted back from the newest roll-up: a log-rotation saw-tooth,
whose drops would drag a least-squares line (or Prometheus' ``predict_linear``) down and up
with its phase, contributes one peak per day, and the peaks rise with the real trend; a
one-off burst is one high day among seven, which the median of slopes ignores. The line's
level is the median of the points' residuals, so that burst does not raise it either.

From the line: when the usage reaches ``limit``, as a range (earliest from the steepest
slope of the interval, likely from the median, latest from the shallowest, open when that is
not rising). Nothing for a series that is flat or shrinking, shorter than the minimum span,
or that reaches the limit only beyond :data:`HORIZON`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opswatch.capacity.history import STEP
from opswatch.capacity.rollup import percentile
from opswatch.config import PREFIX, ConfigError, Env
from opswatch.model import Rollup

DAY = 86400
#: a limit reached further out than this is no forecast (seconds)
HORIZON = 365 * DAY
#: the normal quantile of a two-sided 95 % interval
_Z95 = 1.959964


@dataclass(frozen=True, slots=True)
class ForecastSettings:
    """``OPSWATCH_FORECAST_WINDOW`` (how far back the trend looks) and
    ``OPSWATCH_FORECAST_MIN_SPAN`` (how much history it needs before it says anything)."""

    window: float = 7 * DAY
    min_span: float = 3 * DAY
    #: the points of the fit are the maxima of blocks this long
    block: float = DAY

    @classmethod
    def from_env(cls, env: Env) -> ForecastSettings:
        window = env.duration(f"{PREFIX}FORECAST_WINDOW", 7 * DAY, minimum=2 * DAY)
        min_span = env.duration(f"{PREFIX}FORECAST_MIN_SPAN", 3 * DAY, minimum=2 * DAY)
        if min_span > window:
            raise ConfigError(
                f"{PREFIX}FORECAST_MIN_SPAN",
                f"must be at most OPSWATCH_FORECAST_WINDOW ({window:g}s), got {min_span:g}s",
            )
        return cls(window=window, min_span=min_span)

    def describe(self) -> dict[str, Any]:
        return {"window_s": self.window, "min_span_s": self.min_span, "block_s": self.block}


@dataclass(frozen=True, slots=True)
class Trend:
    """A fitted line: ``level`` at time ``at`` (epoch seconds), rising ``slope`` per second,
    within ``[low, high]`` at 95 %."""

    slope: float
    low: float
    high: float
    level: float
    at: float

    def value(self, at: float) -> float:
        return self.level + self.slope * (at - self.at)


@dataclass(frozen=True, slots=True)
class Exhaustion:
    """When a rising usage reaches its limit, in seconds from the forecast's time: soonest
    at the steepest slope of the interval, most likely, latest (None: maybe never)."""

    earliest: float
    likely: float
    latest: float | None


def theil_sen(points: Sequence[tuple[float, float]]) -> tuple[float, float, float]:
    """``(slope, low, high)``: the median of the pairwise slopes of ``points`` (time, value)
    and Sen's 95 % interval around it. Needs two points at different times."""
    slopes = sorted(
        (y2 - y1) / (t2 - t1)
        for i, (t1, y1) in enumerate(points)
        for t2, y2 in points[i + 1 :]
        if t2 != t1
    )
    if not slopes:
        raise ValueError("a trend needs two points at different times")
    n, count = len(points), len(slopes)
    spread = _Z95 * math.sqrt(n * (n - 1) * (2 * n + 5) / 18)
    low = slopes[max(0, round((count - spread) / 2) - 1)]
    high = slopes[min(count - 1, round((count + spread) / 2))]
    return percentile(slopes, 0.5), low, high


def daily_peaks(rollups: Sequence[Rollup], settings: ForecastSettings) -> list[tuple[float, float]]:
    """The highest value of each whole block (a day) back from the newest roll-up, within
    the window, with the time it was reached; ``[]`` when the roll-ups span less than the
    minimum span. ``rollups`` are one series' in time order."""
    if not rollups:
        return []
    end = rollups[-1].at + STEP
    block = int(settings.block)
    whole = min(int(settings.window), end - rollups[0].at) // block
    if end - rollups[0].at < settings.min_span or whole < 2:
        return []
    start = end - whole * block
    peaks: dict[int, tuple[float, float]] = {}
    for rollup in rollups:
        if rollup.at < start:
            continue
        index = (rollup.at - start) // block
        # the highest sample is, for a rising bucket, near its end
        point = (float(rollup.at + STEP), rollup.max)
        best = peaks.get(index)
        if best is None or point[1] > best[1]:
            peaks[index] = point
    return [peaks[i] for i in sorted(peaks)]


def fit(points: Sequence[tuple[float, float]], at: float) -> Trend:
    """The Theil-Sen line through ``points``, its level at ``at`` being the median of the
    points' residuals carried to ``at``."""
    slope, low, high = theil_sen(points)
    offset = percentile([y - slope * t for t, y in points], 0.5)
    return Trend(slope, low, high, offset + slope * at, at)


def exhaustion(trend: Trend, limit: float) -> Exhaustion | None:
    """When ``trend`` reaches ``limit`` (None: flat, shrinking, or beyond the horizon)."""
    if trend.slope <= 0:
        return None
    headroom = max(0.0, limit - trend.level)
    likely = headroom / trend.slope
    if likely > HORIZON:
        return None
    latest = headroom / trend.low if trend.low > 0 else None
    return Exhaustion(headroom / max(trend.high, trend.slope), likely, latest)


def trend_of(rollups: Sequence[Rollup], settings: ForecastSettings, at: float) -> Trend | None:
    """The trend of one series' roll-ups at ``at`` (None: too short a history)."""
    points = daily_peaks(rollups, settings)
    return fit(points, at) if len(points) >= 2 else None
