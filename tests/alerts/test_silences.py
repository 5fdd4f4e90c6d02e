"""Silences: matcher parsing, Alertmanager's matching (anchored regexes, absent labels),
start and end, the muter, and the silences' audit lines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog.testing

from opswatch.alerts.silences import (
    SilenceError,
    SilenceMuter,
    Silences,
    SilenceState,
    matches,
    new_silence,
    parse_matcher,
    state,
)
from opswatch.daemon.app import App
from opswatch.model import (
    Alert,
    AlertState,
    Matcher,
    MatchOp,
    Severity,
    TransitionKind,
    fingerprint,
)
from opswatch.state.sqlite import SQLiteStore
from tests.conftest import ManualClock, passes
from tests.peers import Receiver
from tests.pgschema import fresh_schema, two_replicas

from .conftest import Daemon

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _alert(rule: str = "disk_full", check: str = "postgres:main", **labels: str) -> Alert:
    return Alert(
        fingerprint=fingerprint(rule, labels),
        rule=rule,
        check=check,
        labels=labels,
        state=AlertState.FIRING,
        severity=Severity.CRITICAL,
        summary="s",
        value=1.0,
        started_at=NOW,
        last_seen_at=NOW,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rule=disk_full", Matcher("rule", MatchOp.EQUAL, "disk_full")),
        ("check=~postgres:.*", Matcher("check", MatchOp.REGEX, "postgres:.*")),
        ("mountpoint!=/", Matcher("mountpoint", MatchOp.NOT_EQUAL, "/")),
        ("host!~db[0-9]+", Matcher("host", MatchOp.NOT_REGEX, "db[0-9]+")),
        ("rule=", Matcher("rule", MatchOp.EQUAL, "")),
        ("rule==x", Matcher("rule", MatchOp.EQUAL, "=x")),
    ],
)
def test_matchers_parse(text: str, expected: Matcher) -> None:
    assert parse_matcher(text) == expected
    assert expected.text == text


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("disk_full", "match 'disk_full': expected name=value"),
        ("=x", "match '=x': expected name=value"),
        ("rule~x", "match 'rule~x': expected name=value"),
        ("check=~(", "match 'check=~(': invalid regex"),
    ],
)
def test_a_bad_matcher_is_refused_naming_the_field(text: str, error: str) -> None:
    with pytest.raises(SilenceError) as raised:
        parse_matcher(text)
    assert str(raised.value).startswith(error)


def test_regexes_are_fully_anchored_like_alertmanager() -> None:
    alert = _alert(check="postgres:main")
    assert matches(parse_matcher("check=~postgres:.*"), alert)
    assert not matches(parse_matcher("check=~postgres"), alert)  # no substring match
    assert not matches(parse_matcher("check=~main"), alert)
    assert matches(parse_matcher("check!~main"), alert)
    assert not matches(parse_matcher("check=~a|postgres:main|b.x"), _alert(check="xpostgres:main"))


def test_a_label_the_alert_lacks_compares_as_empty() -> None:
    alert = _alert(mountpoint="/")
    assert matches(parse_matcher("host="), alert)
    assert matches(parse_matcher("host!=db1"), alert)
    assert not matches(parse_matcher("host=~.+"), alert)
    assert matches(parse_matcher("mountpoint=/"), alert)


def test_a_silence_mutes_alerts_all_its_matchers_match_between_start_and_end() -> None:
    silence = new_silence(
        [parse_matcher("check=~postgres:.*"), parse_matcher("rule=disk_full")],
        NOW + HOUR,
        NOW + 2 * HOUR,
        created_by="ana",
        comment="migration",
        now=NOW,
    )
    muter = SilenceMuter([silence])
    hit, other_rule = _alert(), _alert(rule="replication_lag")
    assert state(silence, NOW) is SilenceState.PENDING
    assert not muter.muted(hit, NOW)
    assert muter.ids(hit, NOW + HOUR) == [silence.id]
    assert muter.muting(hit, NOW + HOUR) == [f"silence {silence.id}"]
    assert not muter.muted(other_rule, NOW + HOUR)
    assert not muter.muted(_alert(check="redis"), NOW + HOUR)
    assert not muter.muted(hit, NOW + 2 * HOUR)  # ends_at is exclusive
    assert state(silence, NOW + 2 * HOUR) is SilenceState.EXPIRED


@pytest.mark.parametrize(
    ("matchers", "starts", "ends", "error"),
    [
        ([], NOW, NOW + HOUR, "matchers: at least one matcher is required"),
        (["rule=x"], NOW, NOW, "ends_at: must be after starts_at"),
        (["rule=x"], NOW - 2 * HOUR, NOW - HOUR, "ends_at: must be in the future"),
    ],
)
def test_a_silence_without_matchers_or_a_future_end_is_refused(
    matchers: list[str], starts: datetime, ends: datetime, error: str
) -> None:
    with pytest.raises(SilenceError, match=error):
        new_silence(
            [parse_matcher(m) for m in matchers], starts, ends, created_by="a", comment="c", now=NOW
        )


async def test_created_and_expired_silences_are_stored_and_logged_with_who_and_why(
    tmp_path: Path, clock: ManualClock
) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite3")
    await store.open()
    try:
        silences = Silences(store, clock)
        with structlog.testing.capture_logs() as logs:
            silence = await silences.create(
                [parse_matcher("rule=disk_full")], clock.now + HOUR, "ana", "disk swap"
            )
            assert silences.muter.muted(_alert(), clock.now)
            clock.advance(60)
            ended = await silences.expire(silence, by="bob")
        assert not silences.muter.muted(_alert(), clock.now)
        assert ended.ends_at == clock.now
        events = [(e["event"], e.get("created_by"), e.get("by"), e["comment"]) for e in logs]
        assert events == [
            ("silence_created", "ana", None, "disk swap"),
            ("silence_expired", "ana", "bob", "disk swap"),
        ]
        reloaded = Silences(store, clock)  # a restart, or another replica
        await reloaded.load()
        assert reloaded.muter.get(silence.id) == ended
        assert [s.id for s in reloaded.muter.listed(clock.now)] == [silence.id]
        clock.advance(24 * 3600 + 1)  # expired more than 24 h ago: no longer listed
        await reloaded.load()
        assert reloaded.muter.listed(clock.now) == []
    finally:
        await store.close()


async def test_a_pending_silence_expired_never_mutes(clock: ManualClock, tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite3")
    await store.open()
    try:
        silences = Silences(store, clock)
        pending = await silences.create(
            [parse_matcher("rule=disk_full")], clock.now + 2 * HOUR, "a", "c", clock.now + HOUR
        )
        ended = await silences.expire(pending, by="a")
        clock.advance(3600)
        assert not silences.muter.muted(_alert(), clock.now)
        assert ended.starts_at == ended.ends_at
    finally:
        await store.close()


async def test_a_replica_sees_another_replicas_silence_at_its_next_refresh(
    postgres_dsn: str, clock: ManualClock
) -> None:
    async with two_replicas(postgres_dsn) as (one, two):
        writer, reader = Silences(one, clock), Silences(two, clock)
        await reader.load()
        silence = await writer.create(
            [parse_matcher("rule=disk_full")], clock.now + HOUR, "ana", "c"
        )
        assert not reader.muter.muted(_alert(), clock.now)
        assert await passes(lambda sleep: reader.follow(lambda: 30.0, sleep), 2) == [30.0, 30.0]
        assert reader.muter.ids(_alert(), clock.now) == [silence.id]


async def test_two_replicas_on_postgresql_see_one_silence_and_send_nothing_for_it(
    postgres_dsn: str, clock: ManualClock, hook: Receiver
) -> None:
    async with fresh_schema(postgres_dsn) as schema:
        environ = {
            "OPSWATCH_CHECKS": "host",
            "OPSWATCH_STATE_URL": postgres_dsn,
            "OPSWATCH_STATE_SCHEMA": schema,
        }
        one, two = Daemon(environ, clock, hook), Daemon(environ, clock, hook)
        await one.open()
        replica: App = await two.open()
        try:
            silence = await one.app.silences.create(
                [parse_matcher("rule=disk_full")], clock.now + HOUR, "ana", "disk swap"
            )
            follow = replica.silences.follow
            await passes(lambda sleep: follow(lambda: replica.timing.interval, sleep), 2)
            await one.app.leases.release_all()  # the other replica runs the check now
            full = ("host.disk_used_percent", 97.0)
            assert await two.run("host", full) == [TransitionKind.FIRED]
            assert two.muted_by() == {"disk_full": [f"silence {silence.id}"]}
            assert await one.run("host", full) == []  # not its check: nothing, not even a row
            assert hook.requests == []
        finally:
            await one.stop()
            await two.stop()
