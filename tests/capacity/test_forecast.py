"""The forecast math against synthetic series with known answers: exact on a straight line,
within 10 % on a log-rotation saw-tooth at every phase of the saw, deaf to a one-off burst,
silent on a flat, shrinking or too short series."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from opswatch.capacity.forecast import (
    DAY,
    ForecastSettings,
    exhaustion,
    theil_sen,
    trend_of,
)
from opswatch.capacity.history import STEP
from opswatch.capacity.rollup import roll_up
from opswatch.model import RawPoint, Rollup

HOUR = 3600
#: a start far from the epoch, so that a wrong time origin would show
T0 = 1_767_225_600
SETTINGS = ForecastSettings()


def _rollups(
    usage: Callable[[int], float], until: int, days: float = 8, every: int = 30
) -> list[Rollup]:
    """What the history holds of ``usage(t)`` sampled every ``every`` seconds for ``days``."""
    start = until - int(days * DAY)
    start -= start % STEP
    points = [RawPoint(1, t, usage(t)) for t in range(start, until, every)]
    return roll_up(points)


def _time_to_full(usage: Callable[[int], float], now: int, limit: float = 100.0) -> float | None:
    trend = trend_of(_rollups(usage, now), SETTINGS, now)
    assert trend is not None
    found = exhaustion(trend, limit)
    return None if found is None else found.likely


def test_theil_sen_is_the_median_of_pairwise_slopes_and_ignores_an_outlier() -> None:
    points = [(0.0, 0.0), (1.0, 2.0), (2.0, 4.0), (3.0, 60.0), (4.0, 8.0), (5.0, 10.0)]
    slope, low, high = theil_sen(points)
    assert slope == 2.0
    assert low <= slope <= high


def test_linear_growth_gives_the_exact_time_to_full() -> None:
    now = T0 + 30 * DAY + 7 * HOUR
    rate = 0.5 / DAY  # half a percent a day

    def usage(t: int) -> float:
        return 40.0 + rate * (t - T0)

    trend = trend_of(_rollups(usage, now), SETTINGS, now)
    assert trend is not None
    found = exhaustion(trend, 100.0)
    assert found is not None
    true = (100.0 - usage(now)) / rate
    # within one sample period: the newest roll-up's peak is dated by its bucket's end
    assert found.likely == pytest.approx(true, abs=60)
    assert found.earliest == pytest.approx(true, abs=60)
    assert found.latest == pytest.approx(true, abs=60)
    assert trend.slope == pytest.approx(rate)


@pytest.mark.parametrize("phase_minutes", range(0, 24 * 60, 50))
def test_a_log_rotation_saw_tooth_is_forecast_within_10_percent_at_every_phase(
    phase_minutes: int,
) -> None:
    """Logs grow the disk 5 % a day and are rotated away at 03:00; the rest grows 0.1 % a
    day: the peaks reach 100 % in 172 days, wherever in the saw the forecast is made."""
    now = T0 + 20 * DAY + phase_minutes * 60
    full_at = now + 172 * DAY
    growth, logs = 0.1 / DAY, 5.0

    def usage(t: int) -> float:
        since_rotation = (t - T0 - 3 * HOUR) % DAY
        return 100.0 - growth * (full_at - t) - logs + logs * since_rotation / DAY

    likely = _time_to_full(usage, now)
    assert likely is not None
    assert likely == pytest.approx(172 * DAY, rel=0.10)


@pytest.mark.parametrize("hours_after", [0, 1, 2, 6, 30, 100])
def test_a_one_off_8_gb_burst_on_a_slowly_growing_disk_moves_no_forecast(
    hours_after: int,
) -> None:
    """A 100 GB disk at 60 GB growing 200 MB a day (full in about 200 days); someone copies
    8 GB and deletes it two hours later. A line through the last hour would say full within
    hours; the forecast, during the burst and after it, stays that of the slow growth."""
    burst = T0 + 10 * DAY + 11 * HOUR
    now = burst + hours_after * HOUR + 600
    rate = 0.2 / DAY

    def usage(t: int) -> float:
        base = 60.0 + rate * (t - burst)
        return base + (8.0 if burst <= t < burst + 2 * HOUR else 0.0)

    likely = _time_to_full(usage, now)
    assert likely is not None
    true = (100.0 - 60.0 - rate * (now - burst)) / rate
    assert likely == pytest.approx(true, rel=0.02)
    assert likely > 48 * HOUR


def test_a_flat_series_gives_no_forecast() -> None:
    now = T0 + 10 * DAY
    assert _time_to_full(lambda t: 42.0, now) is None


def test_a_flat_noisy_series_gives_no_forecast() -> None:
    noise = random.Random(7)
    values = {t: 50.0 + noise.uniform(-2, 2) for t in range(T0, T0 + 11 * DAY, 30)}
    now = T0 + 10 * DAY
    assert _time_to_full(values.__getitem__, now) is None


def test_a_shrinking_series_gives_no_forecast() -> None:
    now = T0 + 10 * DAY
    assert _time_to_full(lambda t: 80.0 - 0.5 * (t - T0) / DAY, now) is None


def test_nothing_is_said_before_the_minimum_span() -> None:
    now = T0 + 10 * DAY
    rising = _rollups(lambda t: 10.0 + (t - T0) / DAY, now, days=2.5)
    assert trend_of(rising, SETTINGS, now) is None
    assert trend_of(_rollups(lambda t: 10.0 + (t - T0) / DAY, now, days=3), SETTINGS, now)


def test_a_usage_already_past_its_limit_is_exhausted_now() -> None:
    now = T0 + 10 * DAY
    trend = trend_of(_rollups(lambda t: 90.0 + (t - T0) / DAY, now), SETTINGS, now)
    assert trend is not None
    found = exhaustion(trend, 95.0)
    assert found is not None
    assert (found.earliest, found.likely) == (0.0, 0.0)
