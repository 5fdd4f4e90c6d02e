"""Whether an alert is flapping: the one definition, for notifications and for recovery.

Per alert identity (the fingerprint, so the score outlives an episode that resolves and fires
again) the detector keeps its last ``window`` evaluations (firing or not). Its score is the
weighted share of those evaluations where the state changed, as Icinga computes it: a change
weighs from 0.8 (the oldest) to 1.2 (the newest), so recent changes count more; 100 is a
state change at every evaluation. An identity starts flapping when its score reaches
``high`` and stops when it falls below ``low`` (hysteresis: no flapping about flapping).
With the defaults (20 evaluations, 20 and 10), a 1-0-1-0 series is flapping at its fourth
state change; an alert that fires, resolves and fires again a few minutes apart is not.

Cheap in the cycle: only identities whose state changed in their last ``window`` evaluations
are held (one firing for days is not), so an evaluation costs one dictionary look-up per
finding; an identity quiet for a whole window is forgotten at once, one not evaluated for
:data:`FORGET_AFTER` (its check or rule is gone) at the next sweep.

Recovery asks :func:`flapping_reason`: the live score first, then the long view of its own
guard (``OPSWATCH_RECOVERY_FLAP_COUNT`` firings within ``OPSWATCH_RECOVERY_FLAP_WINDOW``,
from the stored history): something that keeps falling over is not restarted again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from opswatch.config import PREFIX, ConfigError, Env
from opswatch.model import Alert

ENABLED_VAR = f"{PREFIX}FLAPPING"
HIGH_VAR = f"{PREFIX}FLAPPING_HIGH"
LOW_VAR = f"{PREFIX}FLAPPING_LOW"
WINDOW_VAR = f"{PREFIX}FLAPPING_WINDOW"
#: an identity not evaluated for this long is forgotten
FORGET_AFTER = timedelta(days=1)
_OLDEST_WEIGHT, _NEWEST_WEIGHT = 0.8, 1.2


@dataclass(frozen=True, slots=True)
class FlapSettings:
    """``OPSWATCH_FLAPPING`` (on), ``_WINDOW`` (evaluations), ``_HIGH`` and ``_LOW`` (%)."""

    enabled: bool = True
    window: int = 20
    high: float = 20.0
    low: float = 10.0

    def __post_init__(self) -> None:
        if self.window < 3:
            raise ValueError(f"flapping window must be at least 3 evaluations, got {self.window}")
        if not 0 < self.low < self.high <= 100:
            raise ValueError(f"flapping thresholds need 0 < low < high <= 100, got {self}")

    @classmethod
    def from_env(cls, env: Env) -> FlapSettings:
        enabled = env.boolean(ENABLED_VAR, True)
        window = env.integer(WINDOW_VAR, 20, minimum=3, maximum=100)
        high = env.number(HIGH_VAR, 20.0, minimum=0.1, maximum=100.0)
        low = env.number(LOW_VAR, min(10.0, high / 2), minimum=0.0, maximum=100.0)
        if low >= high:
            raise ConfigError(LOW_VAR, f"must be below {HIGH_VAR} ({high:g}), got {low:g}")
        if low <= 0:
            raise ConfigError(LOW_VAR, f"must be above 0, got {low:g}")
        return cls(enabled, window, high, low)

    def describe(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "window": self.window,
            "high": self.high,
            "low": self.low,
        }


def flap_score(states: Iterable[bool], window: int) -> float:
    """The weighted share (0-100) of state changes among the last ``window`` ``states``
    (oldest first; fewer count as unchanged before them)."""
    recent = list(states)[-window:]
    slots = window - 1
    total = 0.0
    for index in range(1, len(recent)):
        if recent[index] != recent[index - 1]:
            age = len(recent) - 1 - index  # 0: the newest change slot
            total += _NEWEST_WEIGHT - (_NEWEST_WEIGHT - _OLDEST_WEIGHT) * age / (slots - 1)
    return 100.0 * total / slots


class _Series:
    __slots__ = ("check", "flapping", "rule", "score", "seen_at", "states")

    def __init__(self, check: str, rule: str, states: deque[bool], seen_at: datetime) -> None:
        self.check = check
        self.rule = rule
        self.states = states
        self.flapping = False
        self.score = 0.0
        self.seen_at = seen_at


class FlapDetector:
    """The flapping state of every alert identity with recent state changes."""

    def __init__(self, settings: FlapSettings) -> None:
        self.settings = settings
        self._series: dict[str, _Series] = {}
        self._by_check: dict[str, dict[str, _Series]] = {}
        self._swept_at: datetime | None = None

    def configure(self, settings: FlapSettings) -> None:
        """New settings (a reload): the identities keep their recent states."""
        self.settings = settings
        for series in self._series.values():
            series.states = deque(series.states, settings.window)

    def flapping(self, fingerprint: str) -> bool:
        series = self._series.get(fingerprint)
        return series is not None and series.flapping

    def score(self, fingerprint: str) -> float:
        series = self._series.get(fingerprint)
        return 0.0 if series is None else series.score

    def __len__(self) -> int:
        return len(self._series)

    def reason(self, fingerprint: str) -> str | None:
        """Why ``fingerprint`` is flapping now (``None``: it is not)."""
        series = self._series.get(fingerprint)
        if series is None or not series.flapping:
            return None
        changes = sum(1 for a, b in pairwise(series.states) if a != b)
        return (
            f"the alert is flapping: {changes} state changes in its last "
            f"{len(series.states)} evaluations (score {series.score:.0f}%)"
        )

    def observe(
        self,
        check: str,
        rules: frozenset[str],
        changed: Mapping[str, str],
        firing: Callable[[str], bool],
        now: datetime,
    ) -> dict[str, bool]:
        """One evaluation of ``check`` whose ``rules`` ran. ``changed``: the identities whose
        state changed in it (fingerprint -> rule); ``firing``: each one's state now. Returns
        the identities that started (``True``) or stopped (``False``) flapping."""
        settings = self.settings
        held = self._by_check.setdefault(check, {})
        for fingerprint, rule in changed.items():
            if fingerprint not in held:
                series = _Series(
                    check, rule, deque([not firing(fingerprint)], settings.window), now
                )
                held[fingerprint] = self._series[fingerprint] = series
        events: dict[str, bool] = {}
        quiet: list[str] = []
        for fingerprint, series in held.items():
            if series.rule not in rules:
                continue
            series.states.append(firing(fingerprint))
            series.seen_at = now
            series.score = flap_score(series.states, settings.window)
            if not series.flapping and series.score >= settings.high:
                series.flapping = events[fingerprint] = True
            elif series.flapping and series.score < settings.low:
                series.flapping = events[fingerprint] = False
            if not series.flapping and series.score == 0.0:
                quiet.append(fingerprint)
        for fingerprint in quiet:
            del held[fingerprint], self._series[fingerprint]
        self._sweep(now)
        return events

    def seed(self, alert: Alert, now: datetime) -> None:
        """An alert loaded flapping from the store (a restart): flapping until a window of
        evaluations without a change says otherwise. One already held (a reload loading the
        alerts again) keeps its states."""
        if alert.fingerprint in self._series:
            return
        window = self.settings.window
        states = deque((i % 2 == 0 for i in range(window)), window)
        series = _Series(alert.check, alert.rule, states, now)
        series.flapping, series.score = True, flap_score(states, window)
        self._by_check.setdefault(alert.check, {})[alert.fingerprint] = series
        self._series[alert.fingerprint] = series

    def _sweep(self, now: datetime) -> None:
        if self._swept_at is not None and now - self._swept_at < FORGET_AFTER:
            return
        self._swept_at = now
        for fingerprint, series in list(self._series.items()):
            if now - series.seen_at >= FORGET_AFTER:
                del self._series[fingerprint], self._by_check[series.check][fingerprint]


def flapping_reason(
    detector: FlapDetector | None,
    fingerprint: str,
    fired: Iterable[datetime],
    now: datetime,
    *,
    count: int,
    window: timedelta,
    window_text: str,
) -> str | None:
    """Why recovery leaves the alert ``fingerprint`` alone as flapping, or ``None``: its live
    score (``detector``), else it fired ``count`` times (``fired``: its firings, from the
    history) within ``window`` (``window_text``, its wording)."""
    live = None if detector is None else detector.reason(fingerprint)
    if live is not None:
        return live
    fires = sum(1 for at in fired if at >= now - window)
    if fires >= count:
        return f"the alert fired {fires} times in {window_text}"
    return None
