"""Maintenance windows: parsing ``OPSWATCH_MAINTENANCE_<NAME>`` (errors naming the variable and
the field), cron's day fields ANDed (the first Sunday), croniter's backwards search across DST
changes, midnight and month ends, the muter's reasons and its cached spans, and one-off
windows kept in both stores (a replica sees another's)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog.testing
from croniter import croniter

from opswatch.alerts.maintenance import (
    Maintenance,
    MaintenanceError,
    MaintenanceMuter,
    RecurringWindow,
    Span,
    parse_window,
    windows_from_env,
)
from opswatch.alerts.silences import parse_matcher
from opswatch.config import ConfigError, Env
from opswatch.daemon.configure import load_config
from opswatch.model import Alert, AlertState, Severity, fingerprint
from opswatch.state.postgres import PostgresStore
from opswatch.state.sqlite import SQLiteStore
from tests.conftest import ManualClock
from tests.pgschema import fresh_schema, two_replicas

VAR = "OPSWATCH_MAINTENANCE_DB"
EXAMPLE = "cron=0 2 1-7 * SUN; duration=4h; tz=UTC; match=check=~postgres:.*"
MINUTE = timedelta(minutes=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def window(cron: str, duration: str = "4h", tz: str = "Europe/Berlin") -> RecurringWindow:
    return parse_window(
        VAR, "db", f"cron={cron}; duration={duration}; tz={tz}; match=rule=disk_full"
    )


def _alert(rule: str = "disk_full", check: str = "postgres:main") -> Alert:
    now = utc(2026, 1, 1)
    return Alert(
        fingerprint=fingerprint(rule, {}),
        rule=rule,
        check=check,
        labels={},
        state=AlertState.FIRING,
        severity=Severity.CRITICAL,
        summary="s",
        value=1.0,
        started_at=now,
        last_seen_at=now,
    )


def test_the_issues_example_parses_into_a_window() -> None:
    parsed = parse_window(VAR, "db", EXAMPLE)
    assert (parsed.name, parsed.cron, parsed.tz.key) == ("db", "0 2 1-7 * SUN", "UTC")
    assert parsed.duration == timedelta(hours=4)
    assert [m.text for m in parsed.matchers] == ["check=~postgres:.*"]


def test_several_match_fields_all_must_match() -> None:
    parsed = parse_window(VAR, "db", f"{EXAMPLE}; match=rule=disk_full")
    muter = MaintenanceMuter([parsed])
    at = utc(2026, 2, 1, 3)
    assert muter.muting(_alert(), at) == ["maintenance db"]
    assert muter.muting(_alert(rule="replication_lag"), at) == []
    assert muter.muting(_alert(check="redis:cache"), at) == []


def test_1_to_7_and_sunday_is_the_first_sunday_not_classic_crons_or() -> None:
    first_sunday = parse_window(VAR, "db", EXAMPLE)
    starts = [s.starts_at for s in first_sunday.next_spans(utc(2026, 1, 1), 6)]
    assert starts == [
        utc(2026, 1, 4, 2),
        utc(2026, 2, 1, 2),
        utc(2026, 3, 1, 2),
        utc(2026, 4, 5, 2),
        utc(2026, 5, 3, 2),
        utc(2026, 6, 7, 2),
    ]
    muter = MaintenanceMuter([first_sunday])
    assert muter.muted(_alert(), utc(2026, 2, 1, 2))
    assert not muter.muted(_alert(), utc(2026, 2, 2, 3))  # a Monday among the first seven
    assert not muter.muted(_alert(), utc(2026, 2, 8, 3))  # the second Sunday
    # what classic cron (croniter's default, day_or=True) would have made of it
    classic = croniter("0 2 1-7 * SUN", utc(2026, 1, 1))
    assert classic.get_next(datetime) == utc(2026, 1, 1, 2)  # a Thursday


def test_a_start_in_the_skipped_spring_hour_opens_after_the_gap_for_its_whole_duration() -> None:
    last_sunday = window("0 2 25-31 * SUN")  # 2026-03-29: 02:00 CET is 03:00 CEST
    assert last_sunday.next_spans(utc(2026, 3, 1), 1) == [
        Span(utc(2026, 3, 29, 1), utc(2026, 3, 29, 5))
    ]
    muter = MaintenanceMuter([last_sunday])
    assert not muter.muted(_alert(), utc(2026, 3, 29, 0, 59))
    assert muter.muted(_alert(), utc(2026, 3, 29, 1))
    assert muter.muted(_alert(), utc(2026, 3, 29, 4, 59))
    assert not muter.muted(_alert(), utc(2026, 3, 29, 5))


def test_a_start_in_the_repeated_autumn_hour_opens_once_for_its_duration() -> None:
    daily = window("30 2 * * *", duration="2h")  # 02:30 happens at 00:30 and 01:30 UTC
    assert daily.next_spans(utc(2026, 10, 24, 12), 3) == [
        Span(utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 2, 30)),
        Span(utc(2026, 10, 26, 1, 30), utc(2026, 10, 26, 3, 30)),
        Span(utc(2026, 10, 27, 1, 30), utc(2026, 10, 27, 3, 30)),
    ]
    # from inside, between the two 02:30s and after the second: the same one occurrence
    for now in (utc(2026, 10, 25, 1), utc(2026, 10, 25, 1, 45)):
        assert daily.latest_start(now) == utc(2026, 10, 25, 0, 30)
        assert daily.next_spans(now, 1) == [
            Span(utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 2, 30))
        ]
    muter = MaintenanceMuter([daily])
    assert muter.muted(_alert(), utc(2026, 10, 25, 2, 29))
    assert not muter.muted(_alert(), utc(2026, 10, 25, 2, 30))  # not stretched to 03:30


def test_a_window_over_midnight_and_a_month_end_is_open_on_both_sides() -> None:
    last_day = window("0 22 L * *")
    muter = MaintenanceMuter([last_day])
    assert [s.starts_at for s in last_day.next_spans(utc(2026, 1, 15), 3)] == [
        utc(2026, 1, 31, 21),
        utc(2026, 2, 28, 21),
        utc(2026, 3, 31, 20),  # CEST by then
    ]
    assert muter.muted(_alert(), utc(2026, 2, 28, 22, 59))  # 23:59 local, 28 February
    assert muter.muted(_alert(), utc(2026, 2, 28, 23, 0))  # 00:00 local, 1 March
    assert muter.muted(_alert(), utc(2026, 3, 1, 0, 59))
    assert not muter.muted(_alert(), utc(2026, 3, 1, 1))


@pytest.mark.parametrize(
    ("cron", "duration", "days"),
    [
        ("0 2 25-31 * SUN", "4h", (utc(2026, 3, 28), utc(2026, 10, 24))),  # both DST nights
        ("*/20 1-3 * * *", "30m", (utc(2026, 3, 28), utc(2026, 10, 24))),  # overlapping ones
        ("0 23 * * *", "3h", (utc(2026, 6, 30),)),  # midnight and a month end
    ],
)
def test_the_muters_cached_spans_agree_with_the_occurrences_minute_by_minute(
    cron: str, duration: str, days: tuple[datetime, ...]
) -> None:
    recurring = window(cron, duration)
    muter = MaintenanceMuter([recurring])
    for day in days:
        spans = recurring.next_spans(day, 40)
        for minute in range(0, 2 * 24 * 60, 7):
            now = day + minute * MINUTE
            expected = any(s.starts_at <= now < s.ends_at for s in spans)
            assert muter.muted(_alert(), now) is expected, now


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("cron=0 2 * *; duration=4h; match=rule=x", "cron: expected 5 fields"),
        ("cron=0 25 * * *; duration=4h; match=rule=x", "cron: '0 25 * * *'"),
        ("cron=0 2 31 2 *; duration=4h; match=rule=x", "cron: '0 2 31 2 *' never matches"),
        ("duration=4h; match=rule=x", "cron: required"),
        ("cron=0 2 * * *; match=rule=x", "duration: required"),
        ("cron=0 2 * * *; duration=4x; match=rule=x", "duration: expected a duration"),
        ("cron=0 2 * * *; duration=30s; match=rule=x", "duration: expected at least 60s"),
        ("cron=0 2 * * *; duration=4h; tz=Europe/Berln; match=rule=x", "tz: unknown time zone"),
        ("cron=0 2 * * *; duration=4h", "match: at least one matcher is required"),
        ("cron=0 2 * * *; duration=4h; match=rulex", "match 'rulex': expected name=value"),
        ("cron=0 2 * * *; duration=4h; match=check=~(", "match 'check=~(': invalid regex"),
        ("cron=0 2 * * *; duration=4h; every=1d; match=rule=x", "expected cron=, duration="),
        ("cron=0 2 * * *; cron=0 3 * * *; duration=4h; match=rule=x", "cron: given twice"),
    ],
)
def test_a_malformed_window_is_refused_naming_the_variable_and_the_field(
    spec: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config({"OPSWATCH_STATE_PATH": "/nonexistent/s.sqlite3", VAR: spec})
    assert raised.value.variable == VAR
    assert raised.value.problem.startswith(problem)


def test_a_lower_case_window_name_is_refused() -> None:
    variable = "OPSWATCH_MAINTENANCE_db"
    with pytest.raises(ConfigError, match="NAME in A-Z0-9_"):
        windows_from_env(Env({variable: EXAMPLE}), [variable])


def test_check_config_lists_each_window_with_its_next_occurrences() -> None:
    config = load_config({VAR: EXAMPLE, "OPSWATCH_MAINTENANCE_WEB": EXAMPLE})
    described = config.describe()["maintenance"]
    assert [w["name"] for w in described] == ["db", "web"]
    assert described[0]["cron"] == "0 2 1-7 * SUN"
    assert described[0]["duration_s"] == 14400.0
    assert described[0]["matchers"] == ["check=~postgres:.*"]
    assert len(described[0]["next"]) == 3
    assert list(config.unknown_variables) == []


def test_no_window_asks_croniter_nothing() -> None:
    muter = MaintenanceMuter()
    assert muter.muting(_alert(), utc(2026, 1, 1)) == []
    assert muter.open_windows(utc(2026, 1, 1)) == []


@pytest.fixture(params=["sqlite", "postgres"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SQLiteStore | PostgresStore]:
    if request.param == "sqlite":
        sqlite = SQLiteStore(tmp_path / "s.sqlite3")
        await sqlite.open()
        yield sqlite
        await sqlite.close()
        return
    dsn: str = request.getfixturevalue("postgres_dsn")
    async with fresh_schema(dsn) as schema:
        postgres = PostgresStore(dsn, schema=schema)
        await postgres.open()
        yield postgres
        await postgres.close()


async def test_a_one_off_window_is_stored_muted_by_name_and_deleted_with_who_and_why(
    store: SQLiteStore | PostgresStore, clock: ManualClock
) -> None:
    maintenance = Maintenance(store, clock)
    with structlog.testing.capture_logs() as logs:
        made = await maintenance.create(
            "db-upgrade",
            [parse_matcher("check=~postgres:.*")],
            clock.now + timedelta(hours=3),
            created_by="ana",
            comment="major upgrade",
            starts_at=clock.now + timedelta(hours=1),
        )
        assert not maintenance.muter.muted(_alert(), clock.now)  # not yet open
        clock.advance(3600)
        assert maintenance.muter.muting(_alert(), clock.now) == ["maintenance db-upgrade"]
        restarted = Maintenance(store, clock)  # a restart, or another replica
        await restarted.load()
        assert restarted.muter.get(made.id) == made
        assert restarted.muter.muted(_alert(), clock.now)
        await restarted.delete(made, by="bob")
    assert not restarted.muter.muted(_alert(), clock.now)
    await maintenance.load()
    assert maintenance.muter.get(made.id) is None
    assert [(e["event"], e.get("created_by"), e.get("by")) for e in logs] == [
        ("maintenance_created", "ana", None),
        ("maintenance_deleted", "ana", "bob"),
    ]


@pytest.mark.parametrize(
    ("name", "hours", "problem"),
    [
        ("DB", 1, "name: expected"),
        ("db", -1, "ends_at: must be after starts_at"),
    ],
)
async def test_a_one_off_window_with_a_bad_name_or_end_is_refused(
    tmp_path: Path, clock: ManualClock, name: str, hours: int, problem: str
) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite3")
    await store.open()
    try:
        maintenance = Maintenance(store, clock)
        with pytest.raises(MaintenanceError, match=problem):
            await maintenance.create(
                name,
                [parse_matcher("rule=x")],
                clock.now + timedelta(hours=hours),
                created_by="a",
                comment="c",
            )
        assert await store.maintenance_windows(clock.now) == []
    finally:
        await store.close()


async def test_a_replica_sees_another_replicas_one_off_window_at_its_next_refresh(
    postgres_dsn: str, clock: ManualClock
) -> None:
    async with two_replicas(postgres_dsn) as (one, two):
        writer, reader = Maintenance(one, clock), Maintenance(two, clock)
        await reader.load()
        await writer.create(
            "db",
            [parse_matcher("rule=disk_full")],
            clock.now + MINUTE * 60,
            created_by="a",
            comment="c",
        )
        assert not reader.muter.muted(_alert(), clock.now)
        await reader.load()  # what its follow() task does every interval
        assert reader.muter.muted(_alert(), clock.now)
