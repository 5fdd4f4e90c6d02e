"""Dependencies through the real daemon: while a parent's down alert fires its children's
alerts are held (visible with the reason, not notified, not remediated); a child that
recovers with its parent never pages, one still firing a cycle after the parent resolved is
notified; a check's own down alert holds its other alerts. Then ``OPSWATCH_DEPENDS``'s
errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from opswatch.alerts.dependencies import DependencyMuter, down_rules, parse_depends
from opswatch.alerts.tracker import AlertTracker
from opswatch.config import ConfigError
from opswatch.daemon.configure import load_config
from opswatch.model import Alert, AlertState, Severity, TransitionKind, fingerprint
from opswatch.rules.builtin import BUILTIN
from tests.conftest import ManualClock
from tests.peers import Receiver

from .conftest import Daemon

FIRED, RESOLVED = TransitionKind.FIRED, TransitionKind.RESOLVED
API_DOWN, API_UP = ("http.up", 0.0), ("http.up", 1.0)
PG_DOWN, PG_UP = ("postgres.up", 0.0), ("postgres.up", 1.0)
PG_BUSY, PG_CALM = ("postgres.connections_percent", 97.0), ("postgres.connections_percent", 5.0)
CHECKS = ["host", "http:api", "http:web", "postgres:main", "redis:cache"]


def _environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "OPSWATCH_CHECKS": "http,postgres",
        "OPSWATCH_HTTP_TARGETS": "api=http://127.0.0.1:9/health",
        "OPSWATCH_POSTGRES_TARGETS": "main=postgresql://127.0.0.1:9/app",
        "OPSWATCH_RULE_HTTP_DOWN_FOR_CYCLES": "1",
        "OPSWATCH_RULE_POSTGRES_DOWN_FOR_CYCLES": "1",
        "OPSWATCH_DEPENDS": "http:api -> postgres:main",
        "OPSWATCH_STATE_PATH": str(tmp_path / "state.sqlite3"),
        **extra,
    }


@pytest.fixture
async def daemon(tmp_path: Path, clock: ManualClock, hook: Receiver) -> AsyncIterator[Daemon]:
    daemon = Daemon(_environ(tmp_path), clock, hook)
    await daemon.open()
    yield daemon
    await daemon.stop()


async def _tick(daemon: Daemon, *runs: tuple[str, tuple[str, float]]) -> list[list[str]]:
    """The runs of one interval, in order; then the clock moves on 30 s."""
    kinds = [[k.value for k in await daemon.run(check, sample)] for check, sample in runs]
    daemon.clock.advance(30)
    return kinds


async def test_a_parent_down_holds_its_child_and_releases_it_a_cycle_after_if_still_firing(
    daemon: Daemon,
) -> None:
    assert await _tick(daemon, ("postgres:main", PG_DOWN), ("http:api", API_DOWN)) == [
        ["fired"],
        ["fired"],
    ]
    assert daemon.muted_by() == {"postgres_down": [], "http_down": ["depends on postgres:main"]}
    assert daemon.sent() == [("firing", "postgres_down")]
    # the parent is back; the child's first run after is still held (it may recover with it)
    assert await _tick(daemon, ("postgres:main", PG_UP), ("http:api", API_DOWN)) == [
        ["resolved"],
        [],
    ]
    assert daemon.sent() == [("firing", "postgres_down"), ("resolved", "postgres_down")]
    assert daemon.muted_by() == {"http_down": ["depends on postgres:main"]}
    # a survivor: still down a full cycle later, so it is paged
    assert await _tick(daemon, ("http:api", API_DOWN)) == [["fired"]]
    assert daemon.sent()[2:] == [("firing", "http_down")]
    assert daemon.muted_by() == {"http_down": []}


@pytest.mark.parametrize("child_first", [False, True])
async def test_a_child_that_recovers_with_its_parent_never_pages(
    daemon: Daemon, child_first: bool
) -> None:
    def order(*runs: tuple[str, tuple[str, float]]) -> tuple[tuple[str, tuple[str, float]], ...]:
        return tuple(reversed(runs)) if child_first else runs

    await _tick(daemon, ("postgres:main", PG_DOWN), ("http:api", API_DOWN))
    await _tick(daemon, *order(("postgres:main", PG_DOWN), ("http:api", API_DOWN)))
    await _tick(daemon, *order(("postgres:main", PG_UP), ("http:api", API_DOWN)))
    # run before the parent's resolution (child first), its next run is the first after it
    assert await _tick(daemon, ("http:api", API_DOWN if child_first else API_UP)) == [
        [] if child_first else ["resolved"]
    ]
    if child_first:
        assert await _tick(daemon, ("http:api", API_UP)) == [["resolved"]]
    assert daemon.sent() == [("firing", "postgres_down"), ("resolved", "postgres_down")]


async def test_a_check_of_a_target_that_is_down_holds_its_other_alerts(daemon: Daemon) -> None:
    app = daemon.app
    check = "postgres:main"
    kinds = [k.value for k in await daemon.run(check, PG_DOWN, PG_BUSY)]
    assert kinds == ["fired", "fired"]
    assert daemon.muted_by() == {
        "postgres_down": [],
        "postgres_connections_high": ["postgres:main is down (postgres_down)"],
    }
    assert daemon.sent() == [("firing", "postgres_down")]
    (busy,) = [a for a in app.tracker.active() if a.rule == "postgres_connections_high"]
    assert not busy.notified
    daemon.clock.advance(30)
    # back up, still busy: held through the run that resolves the down alert, paged after
    assert [k.value for k in await daemon.run(check, PG_UP, PG_BUSY)] == ["resolved"]
    daemon.clock.advance(30)
    assert [k.value for k in await daemon.run(check, PG_UP, PG_BUSY)] == ["fired"]
    assert daemon.sent()[1:] == [
        ("resolved", "postgres_down"),
        ("firing", "postgres_connections_high"),
    ]


async def test_figures_that_recover_with_their_target_send_nothing(daemon: Daemon) -> None:
    await daemon.run("postgres:main", PG_DOWN, PG_BUSY)
    daemon.clock.advance(30)
    assert [k.value for k in await daemon.run("postgres:main", PG_UP, PG_CALM)] == [
        "resolved",
        "resolved",
    ]
    assert daemon.sent() == [("firing", "postgres_down"), ("resolved", "postgres_down")]


async def test_a_held_child_is_not_remediated(
    tmp_path: Path, clock: ManualClock, hook: Receiver
) -> None:
    environ = _environ(
        tmp_path,
        OPSWATCH_RECOVERY_HTTP_DOWN="command:/bin/true",
        OPSWATCH_RECOVERY_ALLOW="/bin/true",
    )
    daemon = Daemon(environ, clock, hook)
    app = await daemon.open()
    try:
        await daemon.run("postgres:main", PG_DOWN)
        await daemon.run("http:api", API_DOWN)
        assert app.remediation.in_progress == set()
        assert {a.rule: a.state for a in app.tracker.active()}["http_down"] is AlertState.FIRING
    finally:
        await daemon.stop()


async def test_a_reload_changes_the_dependencies(daemon: Daemon, tmp_path: Path) -> None:
    app = daemon.app
    await daemon.run("postgres:main", PG_DOWN)
    await daemon.run("http:api", API_DOWN)
    assert daemon.muted_by()["http_down"] == ["depends on postgres:main"]
    app.reloader.enable()  # as start() does
    assert await app.reload({**daemon.environ, "OPSWATCH_DEPENDS": ""})
    assert daemon.muted_by()["http_down"] == []
    assert load_config(_environ(tmp_path)).describe()["depends"] == {"http:api": ["postgres:main"]}


# -- the muter alone -------------------------------------------------------------------------

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DOWN_RULES = down_rules(load_config({"OPSWATCH_CHECKS": "host"}).rules)


def _alert(rule: str, check: str, at: datetime = NOW) -> Alert:
    labels = {"target": check.partition(":")[2]}
    return Alert(
        fingerprint(rule, labels), rule, check, labels, AlertState.FIRING, Severity.CRITICAL,
        "s", 0.0, at, at,
    )  # fmt: skip


class Tracked(AlertTracker):
    """A tracker holding exactly the alerts a test puts in it."""

    def __init__(self, *alerts: Alert) -> None:
        super().__init__({})
        self.load(alerts)


def test_down_rules_are_those_on_a_collectors_up_sample() -> None:
    assert {"http_down", "postgres_down", "redis_down", "tcp_down", "app_metrics_down"} <= (
        DOWN_RULES
    )
    assert "redis_replica_link_down" not in DOWN_RULES
    assert "postgres_connections_high" not in DOWN_RULES


def test_each_kinds_down_rule_comes_before_its_other_rules() -> None:
    """Findings are applied in rule order: the down alert is tracked before the others."""
    first: dict[str, int] = {}
    for index, spec in enumerate(BUILTIN):
        kind = spec.metric.partition(".")[0]
        first.setdefault(kind, index)
        if spec.metric == f"{kind}.up":
            assert first[kind] == index, spec.name


def test_holds_chain_and_nothing_is_held_when_nothing_is_down() -> None:
    parents = parse_depends("http:web -> http:api; http:api -> postgres:main", CHECKS)
    db_down = _alert("postgres_down", "postgres:main")
    api_down, web_slow = _alert("http_down", "http:api"), _alert("http_slow", "http:web")
    muter = DependencyMuter(Tracked(db_down, api_down), lambda: 30.0, parents, DOWN_RULES)
    assert muter.muting(api_down, NOW) == ["depends on postgres:main"]
    assert muter.muting(web_slow, NOW) == ["depends on http:api"]
    assert muter.muting(db_down, NOW) == []
    idle = DependencyMuter(Tracked(web_slow), lambda: 30.0, parents, DOWN_RULES)
    assert not idle.muted(web_slow, NOW)


def test_a_hold_long_forgotten_does_not_hold_a_new_alert() -> None:
    parents = parse_depends("http:api -> postgres:main", CHECKS)
    tracker = Tracked(_alert("postgres_down", "postgres:main"))
    muter = DependencyMuter(tracker, lambda: 30.0, parents, DOWN_RULES)
    assert muter.muted(_alert("http_down", "http:api"), NOW)
    tracker.retain(lambda alert: False)  # the database came back; the api alert resolved
    later = NOW + timedelta(hours=5)
    assert muter.muting(_alert("http_down", "http:api", later), later) == []


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("http:api", "entry 'http:api': expected CHECK -> PARENT, PARENT"),
        ("http:api -> ", "entry 'http:api ->': expected CHECK -> PARENT, PARENT"),
        (" -> postgres:main", "entry '-> postgres:main': expected CHECK -> PARENT"),
        ("http:api -> postgres:main,", "entry 'http:api -> postgres:main,': expected CHECK"),
        ("http:api -> pg:main", "entry 'http:api -> pg:main': no check 'pg:main' (configured: "),
        ("http:apx -> postgres:main", "entry 'http:apx -> postgres:main': no check 'http:apx'"),
        ("http:api -> http:api", "entry 'http:api -> http:api': http:api cannot depend on itself"),
        (
            "http:api -> postgres:main; postgres:main -> redis:cache; redis:cache -> http:api",
            "entry 'redis:cache -> http:api': a cycle: "
            "redis:cache -> http:api -> postgres:main -> redis:cache",
        ),
    ],
)
def test_a_malformed_depends_names_the_variable_and_the_entry(value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_depends(value, CHECKS)
    assert raised.value.variable == "OPSWATCH_DEPENDS"
    assert raised.value.problem.startswith(problem)


def test_depends_lists_merge_and_empty_entries_are_ignored() -> None:
    value = "http:api, http:web -> postgres:main; ; http:api -> redis:cache, postgres:main;"
    assert parse_depends(value, CHECKS) == {
        "http:api": ("postgres:main", "redis:cache"),
        "http:web": ("postgres:main",),
    }
    assert parse_depends(None, CHECKS) == {}


def test_an_unknown_check_in_depends_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="OPSWATCH_DEPENDS: entry 'http:api -> redis:x'"):
        load_config({**_environ(tmp_path), "OPSWATCH_DEPENDS": "http:api -> redis:x"})
