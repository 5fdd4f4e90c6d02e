"""Which samples the history keeps, and its settings: every bad value refused naming its
variable."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from opswatch.capacity.forecast import ForecastSettings
from opswatch.capacity.history import DEFAULT_METRICS, HistorySettings, SeriesFilter
from opswatch.config import ConfigError, Env
from opswatch.daemon.configure import load_config
from opswatch.model import Sample

AT = datetime(2026, 1, 1, tzinfo=UTC)


def _sample(metric: str, value: float = 1.0) -> Sample:
    return Sample("x", metric, value, AT)


def test_the_default_keeps_host_up_percentages_durations_sizes_and_queue_depth() -> None:
    kept = SeriesFilter(HistorySettings()).keep(
        [
            _sample("host.load5_per_core"),
            _sample("http.up"),
            _sample("http.latency_seconds"),
            _sample("http.tls_days_left"),
            _sample("redis.memory_percent"),
            _sample("postgres.database_size_bytes"),
            _sample("rabbitmq.messages_ready"),
            _sample("rabbitmq.consumers"),
            _sample("redis.keyspace_hit_ratio"),
            _sample("host.cpu_percent", float("nan")),
        ]
    )
    assert [s.metric for s in kept] == [
        "host.load5_per_core",
        "http.up",
        "http.latency_seconds",
        "redis.memory_percent",
        "postgres.database_size_bytes",
        "rabbitmq.messages_ready",
        "redis.keyspace_hit_ratio",
    ]


def test_the_variables_set_globs_retention_and_cap_and_off_keeps_nothing() -> None:
    settings = HistorySettings.from_env(
        Env(
            {
                "OPSWATCH_HISTORY_METRICS": "http.up, host.disk_*",
                "OPSWATCH_HISTORY_RAW_RETENTION": "12h",
                "OPSWATCH_HISTORY_RETENTION": "30d",
                "OPSWATCH_HISTORY_MAX_MB": "0",
            }
        )
    )
    assert settings == HistorySettings(True, ("http.up", "host.disk_*"), 43200.0, 2592000.0, None)
    keep = SeriesFilter(settings).keep
    assert [s.metric for s in keep([_sample("http.up"), _sample("host.cpu_percent")])] == [
        "http.up"
    ]
    off = HistorySettings.from_env(Env({"OPSWATCH_HISTORY": "off"}))
    assert SeriesFilter(off).keep([_sample("http.up")]) == []
    assert HistorySettings.from_env(Env({})).metrics == DEFAULT_METRICS


@pytest.mark.parametrize(
    ("environ", "variable", "problem"),
    [
        ({"OPSWATCH_HISTORY": "perhaps"}, "OPSWATCH_HISTORY", "expected true or false"),
        ({"OPSWATCH_HISTORY_METRICS": "host.*,a b"}, "OPSWATCH_HISTORY_METRICS", "globs"),
        ({"OPSWATCH_HISTORY_METRICS": ","}, "OPSWATCH_HISTORY_METRICS", "at least one"),
        ({"OPSWATCH_HISTORY_MAX_MB": "-1"}, "OPSWATCH_HISTORY_MAX_MB", "at least 0"),
        ({"OPSWATCH_HISTORY_RAW_RETENTION": "10m"}, "OPSWATCH_HISTORY_RAW_RETENTION", "3600"),
        (
            {"OPSWATCH_HISTORY_RAW_RETENTION": "3d", "OPSWATCH_HISTORY_RETENTION": "2d"},
            "OPSWATCH_HISTORY_RETENTION",
            "at least OPSWATCH_HISTORY_RAW_RETENTION",
        ),
        ({"OPSWATCH_FORECAST_WINDOW": "1d"}, "OPSWATCH_FORECAST_WINDOW", "at least"),
        (
            {"OPSWATCH_FORECAST_WINDOW": "3d", "OPSWATCH_FORECAST_MIN_SPAN": "4d"},
            "OPSWATCH_FORECAST_MIN_SPAN",
            "at most OPSWATCH_FORECAST_WINDOW",
        ),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(
    environ: dict[str, str], variable: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(environ)
    assert caught.value.variable == variable
    assert problem in caught.value.problem


def test_the_settings_are_in_check_config_and_a_typo_is_reported() -> None:
    config = load_config({"OPSWATCH_HISTORY_METRIC": "http.*"})
    described = config.describe()
    assert described["history"]["metrics"] == list(DEFAULT_METRICS)
    assert described["forecast"] == ForecastSettings().describe()
    (unknown,) = config.unknown_variables
    assert (unknown.name, unknown.closest) == (
        "OPSWATCH_HISTORY_METRIC",
        "OPSWATCH_HISTORY_METRICS",
    )
