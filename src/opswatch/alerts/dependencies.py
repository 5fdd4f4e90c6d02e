"""Dependencies: one page instead of twenty when a database takes its clients down.

``OPSWATCH_DEPENDS="http:api -> postgres:main, redis:cache; http:web -> http:api"``: while an
alert of a parent's *down rule* fires (a rule on the collector's ``<kind>.up`` sample:
``postgres_down``, ``http_down``, ``tcp_down``, ...), every alert of its children is held as
in a silence: tracked and listed with the reason ``depends on postgres:main``, notified to
nobody, remediated by nothing. Chains hold transitively (a held child's own down alert still
holds its children). Built in, without configuration: a check's down alert holds that same
check's other alerts (``postgres:main is down (postgres_down)``: no connection figures while
PostgreSQL is down).

Release: the parent resolves, and a child's first run after that is still held (a child that
recovers with its parent never pages); from its next run on, a child alert still firing is
notified like a firing (``AlertTracker`` does that for every muter). A run is told apart by
the alert's ``last_seen_at`` (the time of its check's run), so the API listing alerts between
runs changes nothing. For the same check the resolution run itself is that first run: its
other alerts are notified at the next.

:class:`DependencyMuter` reads the tracker's active alerts: nothing is down, nothing is held,
and it costs one pass over the (few) active alerts per muted question, asked only about alerts.
With replicas a parent and its child must be run by the same replica for the child to be held
(each replica's tracker holds the alerts of the checks it runs).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from opswatch.config import PREFIX, ConfigError
from opswatch.model import Alert
from opswatch.rules.base import Rule, SetRule

DEPENDS = f"{PREFIX}DEPENDS"
#: how an entry reads, for the errors
_SHAPE = "expected CHECK -> PARENT, PARENT (entries separated by ';')"

Parents = Mapping[str, tuple[str, ...]]


def parse_depends(text: str | None, checks: Collection[str]) -> dict[str, tuple[str, ...]]:
    """``OPSWATCH_DEPENDS`` as each child's parents. A malformed entry, an unknown check, a
    check depending on itself and a cycle raise :class:`ConfigError` naming the entry."""
    parents: dict[str, tuple[str, ...]] = {}
    for entry in (e.strip() for e in (text or "").split(";")):
        if not entry:
            continue
        left, arrow, right = entry.partition("->")
        children = [c.strip() for c in left.split(",")]
        wanted = [p.strip() for p in right.split(",")]
        if not arrow or not all(children) or not all(wanted):
            raise ConfigError(DEPENDS, f"entry {entry!r}: {_SHAPE}")
        for check in (*children, *wanted):
            if check not in checks:
                listed = ", ".join(sorted(checks))
                raise ConfigError(
                    DEPENDS, f"entry {entry!r}: no check {check!r} (configured: {listed})"
                )
        for child in children:
            if child in wanted:
                raise ConfigError(DEPENDS, f"entry {entry!r}: {child} cannot depend on itself")
            parents[child] = tuple(dict.fromkeys((*parents.get(child, ()), *wanted)))
            cycle = _cycle(parents, child)
            if cycle:
                raise ConfigError(DEPENDS, f"entry {entry!r}: a cycle: {' -> '.join(cycle)}")
    return parents


def _cycle(parents: Parents, start: str) -> list[str]:
    """A path of dependencies from ``start`` back to it, if there is one."""
    path = [start]
    seen: set[str] = set()

    def walk(check: str) -> bool:
        for parent in parents.get(check, ()):
            path.append(parent)
            if parent == start:
                return True
            if parent not in seen:
                seen.add(parent)
                if walk(parent):
                    return True
            path.pop()
        return False

    return path if walk(start) else []


def down_rules(rules: Iterable[Rule | SetRule]) -> frozenset[str]:
    """The rules saying a check's target is down: those on its ``<kind>.up`` sample (a user
    rule too, when every metric it selects is one)."""
    return frozenset(
        r.name
        for r in rules
        if all(m.endswith(".up") for m in (r.metrics if isinstance(r, SetRule) else (r.metric,)))
    )


class ActiveAlerts(Protocol):
    """The alert tracker (:class:`opswatch.alerts.tracker.AlertTracker`)."""

    def each(self) -> Iterable[Alert]: ...


@dataclass(slots=True)
class _Hold:
    """A child check held for its ``parents``: its last run while one was down, and its first
    run after they all came back (held too)."""

    parents: tuple[str, ...]
    down_run: datetime
    grace_run: datetime | None = None


class DependencyMuter:
    """Holds the alerts of checks whose parent (or own target) is down; see the module."""

    def __init__(
        self,
        alerts: ActiveAlerts,
        interval: Callable[[], float],
        parents: Parents | None = None,
        rules: Collection[str] = (),
    ) -> None:
        self._alerts = alerts
        self._interval = interval
        self._parents: Parents = {}
        self._down_rules: frozenset[str] = frozenset()
        self._holds: dict[str, _Hold] = {}
        self.configure(parents or {}, rules)

    def configure(self, parents: Parents, rules: Collection[str]) -> None:
        """New dependencies and down rules (a reload); the holds of remaining children stay."""
        self._parents = dict(parents)
        self._down_rules = frozenset(rules)
        self._holds = {c: h for c, h in self._holds.items() if c in self._parents}

    def muted(self, alert: Alert, now: datetime) -> bool:
        return bool(self.muting(alert, now))

    def muting(self, alert: Alert, now: datetime) -> list[str]:
        """Why ``alert`` is held now: its own check down, each parent it waits for."""
        del now  # the run is the alert's: its last_seen_at
        down = {a.check: a.rule for a in self._alerts.each() if a.rule in self._down_rules}
        if not down and not self._holds:
            return []
        reasons = []
        own = down.get(alert.check)
        if own is not None and alert.rule not in self._down_rules:
            reasons.append(f"{alert.check} is down ({own})")
        reasons += [f"depends on {parent}" for parent in self._held_by(alert, down)]
        return reasons

    def _held_by(self, alert: Alert, down: Mapping[str, str]) -> tuple[str, ...]:
        check, run = alert.check, alert.last_seen_at
        parents = tuple(p for p in self._parents.get(check, ()) if p in down)
        hold = self._holds.get(check)
        if parents:
            if hold is None or run >= hold.down_run:
                self._holds[check] = _Hold(parents, run)
            return parents
        if hold is None:
            return ()
        if hold.grace_run is None and run > hold.down_run:
            if run - hold.down_run > timedelta(seconds=2 * self._interval()):
                del self._holds[check]  # no held alert for runs: a new story
                return ()
            hold.grace_run = run  # the first run after the parents came back
        if run <= (hold.grace_run or hold.down_run):
            return hold.parents
        del self._holds[check]
        return ()
