"""ThresholdRule: debounce, hysteresis, upgrades and downgrades, one series at a time."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import pytest

from opswatch.model import Sample, Severity
from opswatch.rules.base import INITIAL, SeriesState
from opswatch.rules.threshold import Level, ThresholdRule

W, C = Severity.WARNING, Severity.CRITICAL
AT = datetime(2026, 1, 1, tzinfo=UTC)


def cpu_rule(for_cycles: int = 1) -> ThresholdRule:
    return ThresholdRule(
        name="cpu_high",
        metric="host.cpu_percent",
        op=">",
        levels=(Level(W, 80, 70), Level(C, 95, 90)),
        summary="CPU at {value:.0f}% (over {threshold:g}%)",
        for_cycles=for_cycles,
    )


def run(rule: ThresholdRule, values: Iterable[float]) -> list[Severity | None]:
    """The active severity after each value, starting from a fresh series."""
    state: SeriesState = INITIAL
    out: list[Severity | None] = []
    for value in values:
        state, severity = rule.advance(state, value)
        assert state.severity == severity
        out.append(severity)
    return out


def test_fires_only_on_the_nth_breaching_cycle() -> None:
    assert run(cpu_rule(for_cycles=3), [85, 85, 85, 85]) == [None, None, W, W]


def test_a_non_breaching_cycle_resets_the_debounce() -> None:
    assert run(cpu_rule(for_cycles=3), [85, 85, 50, 85, 85, 85]) == [None] * 5 + [W]


def test_a_value_between_clear_and_threshold_never_starts_an_alert() -> None:
    assert run(cpu_rule(), [75, 79.9, 80]) == [None, None, None]


def test_a_value_between_clear_and_threshold_keeps_an_active_alert() -> None:
    assert run(cpu_rule(), [85, 75, 70.1, 70, 75]) == [W, W, W, None, None]


def test_a_value_between_clear_and_threshold_does_not_count_towards_the_debounce() -> None:
    assert run(cpu_rule(for_cycles=2), [85, 75, 85, 85]) == [None, None, None, W]


def test_upgrades_immediately_without_a_second_debounce() -> None:
    assert run(cpu_rule(for_cycles=3), [85, 85, 85, 97]) == [None, None, W, C]


def test_becomes_active_at_the_level_hot_when_the_debounce_completes() -> None:
    assert run(cpu_rule(for_cycles=2), [85, 97]) == [None, C]


def test_downgrades_to_the_highest_level_still_held() -> None:
    # critical clears below 90, warning below 70
    assert run(cpu_rule(), [97, 92, 85, 75, 65]) == [C, C, W, W, None]


def test_drops_straight_to_inactive_when_nothing_is_held() -> None:
    assert run(cpu_rule(), [97, 10, 85]) == [C, None, W]


def test_after_resolving_the_debounce_starts_over() -> None:
    assert run(cpu_rule(for_cycles=2), [85, 85, 50, 85, 85]) == [None, W, None, None, W]


def test_below_rules_breach_under_the_threshold() -> None:
    tls = ThresholdRule(
        name="tls_expiry",
        metric="http.tls_days_left",
        op="<",
        levels=(Level(W, 14), Level(C, 3)),
        summary="expires in {value:.0f} days",
    )
    assert run(tls, [20, 14, 10, 2, 10, 20]) == [None, None, W, C, W, None]


def test_below_rule_with_clear_equal_threshold_resolves_on_recovery() -> None:
    down = ThresholdRule(
        name="http_down",
        metric="http.up",
        op="<",
        levels=(Level(C, 1, 1),),
        summary="down",
        for_cycles=2,
    )
    assert run(down, [0, 0, 0, 1, 0, 0]) == [None, C, C, None, None, C]


def test_below_rule_hysteresis_holds_until_above_clear() -> None:
    free = ThresholdRule(
        name="disk_free_low",
        metric="host.disk_free_percent",
        op="<",
        levels=(Level(W, 10, 15),),
        summary="low",
    )
    assert run(free, [12, 9, 12, 14.9, 15]) == [None, W, W, W, None]


def test_an_unchanged_quiet_series_keeps_the_same_state_object() -> None:
    state, _ = cpu_rule().advance(INITIAL, 10)
    assert state is INITIAL


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "CpuHigh"}, "snake_case"),
        ({"op": ">="}, "op must be"),
        ({"levels": ()}, "at least one level"),
        ({"levels": (Level(W, 80), Level(W, 90))}, "listed twice"),
        ({"levels": (Level(W, 80, 85),)}, "clear 85 is above its threshold 80"),
        ({"op": "<", "levels": (Level(W, 10, 5),)}, "clear 5 is below its threshold 10"),
        ({"for_cycles": 0}, "for_cycles"),
    ],
)
def test_rejects_an_inconsistent_rule(kwargs: dict[str, object], message: str) -> None:
    spec: dict[str, object] = {
        "name": "cpu_high",
        "metric": "host.cpu_percent",
        "op": ">",
        "levels": (Level(W, 80),),
        "summary": "s",
    }
    spec.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ThresholdRule(**spec)  # type: ignore[arg-type]


def test_level_clear_defaults_to_its_threshold() -> None:
    assert Level(W, 80).clear == 80
    assert Level(W, 80).release == 80


def test_level_rejects_a_non_finite_threshold() -> None:
    with pytest.raises(ValueError, match="finite"):
        Level(W, float("nan"))


def test_matches_the_exact_metric_and_every_matcher() -> None:
    rule = ThresholdRule(
        name="root_full",
        metric="host.disk_used_percent",
        op=">",
        levels=(Level(W, 90),),
        summary="s",
        matchers={"mountpoint": "/"},
    )

    def sample(metric: str, labels: dict[str, str]) -> Sample:
        return Sample("host", metric, 1.0, AT, labels)

    assert rule.matches(sample("host.disk_used_percent", {"mountpoint": "/", "fstype": "ext4"}))
    assert not rule.matches(sample("host.disk_used_percent", {"mountpoint": "/boot"}))
    assert not rule.matches(sample("host.disk_used_percent", {}))
    assert not rule.matches(sample("host.disk_used_percent_x", {"mountpoint": "/"}))


def test_summary_formats_value_threshold_labels_check_and_label_names() -> None:
    rule = ThresholdRule(
        name="disk_full",
        metric="host.disk_used_percent",
        op=">",
        levels=(Level(W, 85, 82), Level(C, 90, 88)),
        summary="{check}: disk {mountpoint} is {value:.1f}% full (> {threshold:g}%) [{labels}]",
    )
    text = rule.summarize(C, 93.25, {"mountpoint": "/var", "device": "sda1"}, "host")
    assert text == "host: disk /var is 93.2% full (> 90%) [device=sda1, mountpoint=/var]"


def test_summary_shows_a_missing_label_as_a_question_mark() -> None:
    rule = ThresholdRule("disk_full", "m", ">", (Level(W, 1),), "disk {mountpoint} full")
    assert rule.summarize(W, 2.0, {}, "host") == "disk ? full"


def test_summary_falls_back_to_plain_words_when_the_template_does_not_fit() -> None:
    rule = ThresholdRule("disk_full", "m", ">", (Level(W, 1),), "{mountpoint:.1f}")
    text = rule.summarize(W, 2.0, {"mountpoint": "/"}, "host")
    assert text == "disk_full: 2 > 1 (mountpoint=/)"


def test_summary_of_a_severity_above_every_level_uses_the_highest_level() -> None:
    assert cpu_rule().summarize(Severity.EMERGENCY, 99, {}, "host") == "CPU at 99% (over 95%)"


def test_describe_lists_levels_from_lowest_severity_as_plain_data() -> None:
    assert cpu_rule(for_cycles=20).describe() == {
        "name": "cpu_high",
        "kind": "threshold",
        "metric": "host.cpu_percent",
        "op": ">",
        "levels": [
            {"severity": "warning", "threshold": 80, "clear": 70},
            {"severity": "critical", "threshold": 95, "clear": 90},
        ],
        "for_cycles": 20,
        "matchers": {},
        "summary": "CPU at {value:.0f}% (over {threshold:g}%)",
    }
