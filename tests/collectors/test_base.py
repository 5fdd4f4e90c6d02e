"""Helpers shared by the collectors: counter deltas, safe error fields, one log line per outage."""

from __future__ import annotations

import errno
from datetime import UTC, datetime, timedelta

import pytest
from structlog.testing import capture_logs

from opswatch.collectors.base import (
    CounterDeltas,
    Counters,
    OutageLog,
    counter_deltas,
    describe_service,
    error_fields,
    service_targets,
)
from opswatch.config import ConfigError, Env

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DSN = "postgresql://app:s3cret@db.internal:5432/app"


def test_counter_deltas_give_each_increase_over_the_elapsed_seconds() -> None:
    previous = Counters(T0, {"hits": 100.0, "misses": 10.0})
    current = Counters(T0 + timedelta(seconds=30), {"hits": 190.0, "misses": 40.0})

    deltas = counter_deltas(previous, current)

    assert deltas == CounterDeltas(30.0, {"hits": 90.0, "misses": 30.0})
    assert deltas.rate("hits") == 3.0
    assert deltas.ratio("hits", "misses") == 0.75


def test_counter_deltas_are_empty_on_the_first_run() -> None:
    deltas = counter_deltas(None, Counters(T0, {"x": 5.0}))

    assert deltas.increases == {}
    assert deltas.rate("x") is None


def test_counter_deltas_need_the_clock_to_move_forward() -> None:
    current = Counters(T0, {"x": 5.0})

    assert counter_deltas(Counters(T0, {"x": 1.0}), current).increases == {}
    later = Counters(T0 + timedelta(seconds=1), {"x": 1.0})
    assert counter_deltas(later, current).increases == {}


def test_a_counter_that_went_down_or_appeared_is_left_out_for_one_run() -> None:
    previous = Counters(T0, {"reset": 500.0, "steady": 1.0})
    current = Counters(T0 + timedelta(seconds=10), {"reset": 3.0, "steady": 2.0, "new": 7.0})

    deltas = counter_deltas(previous, current)

    assert deltas.increases == {"steady": 1.0}
    assert deltas.rate("reset") is None
    assert deltas.rate("new") is None
    assert deltas.ratio("steady", "reset") is None


def test_ratio_is_absent_when_neither_counter_grew() -> None:
    assert CounterDeltas(30.0, {"hits": 0.0, "misses": 0.0}).ratio("hits", "misses") is None
    assert CounterDeltas(30.0, {"hits": 0.0, "misses": 4.0}).ratio("hits", "misses") == 0.0


class SqlError(Exception):
    sqlstate = "28P01"


class HttpError(Exception):
    status = 401


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, DSN), {"code": str(errno.ECONNREFUSED)}),
        (SqlError(DSN), {"code": "28P01"}),
        (HttpError(DSN), {"code": "401"}),
        (TimeoutError(), {}),
        (ValueError(DSN), {}),
    ],
)
def test_error_fields_hold_the_class_and_a_code_never_the_message(
    exc: BaseException, expected: dict[str, str]
) -> None:
    fields = error_fields(exc)

    assert fields == {"error": type(exc).__name__, **expected}
    assert "s3cret" not in repr(fields)


def test_outage_log_writes_one_line_when_down_and_one_when_back() -> None:
    outage = OutageLog("redis:cache")

    with capture_logs() as logs:
        outage.succeeded()
        for _ in range(3):
            outage.failed(ConnectionRefusedError(errno.ECONNREFUSED, DSN))
        outage.succeeded()
        outage.succeeded()

    assert [(e["event"], e["check"], e.get("error")) for e in logs] == [
        ("collector_target_down", "redis:cache", "ConnectionRefusedError"),
        ("collector_target_up", "redis:cache", None),
    ]
    assert [e["log_level"] for e in logs] == ["warning", "info"]
    assert "s3cret" not in repr(logs)
    assert not outage.down


REDIS = "OPSWATCH_REDIS_TARGETS"


def test_service_targets_read_the_kind_s_targets_and_timeout() -> None:
    env = Env({REDIS: "a=redis://h:1,b=redis://h:2", "OPSWATCH_REDIS_TIMEOUT": "2s"})

    targets, timeout = service_targets(env, "redis", schemes=("redis",), example="redis://...")

    assert [t.name for t in targets] == ["a", "b"]
    assert timeout == 2.0


def test_service_timeout_defaults_to_five_seconds() -> None:
    env = Env({REDIS: "a=redis://h:1"})

    assert service_targets(env, "redis", schemes=("redis",), example="redis://...")[1] == 5.0


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({}, REDIS),
        ({REDIS: "a=http://h:1"}, REDIS),
        ({REDIS: "a-b=redis://h,a_b=redis://h"}, REDIS),
        ({REDIS: "a=redis://h", "OPSWATCH_REDIS_TIMEOUT": "0"}, "OPSWATCH_REDIS_TIMEOUT"),
    ],
)
def test_service_targets_name_the_bad_variable(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        service_targets(Env(environ), "redis", schemes=("redis",), example="redis://...")
    assert info.value.variable == variable


def test_describe_service_masks_the_url() -> None:
    (target,) = Env({"V": f"main={DSN}"}).targets("V", schemes=("postgresql",))

    described = describe_service("postgres:main", target, 5.0)

    assert described == {
        "check": "postgres:main",
        "target": "main",
        "url": "postgresql://app:***@db.internal:5432/app",
        "timeout": "5s",
    }
