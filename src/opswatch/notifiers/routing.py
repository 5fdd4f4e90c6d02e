"""Routing by labels and severity: which channels each transition goes to. Pure.

``OPSWATCH_ROUTE_INFO`` / ``_WARNING`` / ``_CRITICAL`` / ``_EMERGENCY`` are comma lists of
notifier names (``webhook``, ``slack``, ``email``: every channel of that notifier) or channel
ids (``webhook:1a2b3c4d``, as ``check-config`` lists them), or ``none``. Unset: every channel
for warning and above, the webhooks only for info.

``OPSWATCH_ROUTE_MATCH_<NAME>="team=payments, rule=~disk_.* -> slack"`` routes the alerts that
every matcher matches (``=``, ``!=``, ``=~``, ``!~`` on ``rule``, ``check`` or a label, as
silences do) to its channels instead of their severity's route. Label routes are tried in the
order of their names; the first that matches wins; an alert none matches takes its
severity's route.

An alert keeps its route for its whole life: the firing goes to the route of its severity; a
severity change goes there too, plus wherever the alert was already notified (so the route
follows the highest severity it reached); a reminder and the resolution go exactly where the
alert was notified (``notified``: the channels of its stored outbox rows, fallback copies
included), or to the route of its severity when nothing is known (an alert older than the
outbox rows).

The meta-alert ``notifications_failing`` about channel X never goes to X (it cannot get
through): it goes to its route without X, else to the fallback channel, else to every other
channel.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opswatch.alerts.silences import SilenceError, matches_all, parse_matcher
from opswatch.config import PREFIX, ConfigError, Env
from opswatch.model import Alert, Matcher, Severity, Transition, TransitionKind

ROUTE_VARS: Mapping[Severity, str] = {s: f"{PREFIX}ROUTE_{s.value.upper()}" for s in Severity}
MATCH_PREFIX = f"{PREFIX}ROUTE_MATCH_"
FALLBACK_VAR = f"{PREFIX}FALLBACK_CHANNEL"
#: where the scheduled reports go (:mod:`opswatch.reports`)
REPORT_VAR = f"{PREFIX}ROUTE_REPORT"
#: the rule of the "notifications failing" meta-alert (labels: ``channel``)
META_RULE = "notifications_failing"
_NONE = "none"


@dataclass(frozen=True, slots=True)
class ChannelRef:
    """A configured channel and the notifier name it belongs to."""

    name: str
    channel: str


@dataclass(frozen=True, slots=True)
class LabelRoute:
    """``OPSWATCH_ROUTE_MATCH_<NAME>``: the alerts all ``matchers`` match go to ``channels``."""

    name: str
    matchers: tuple[Matcher, ...]
    channels: frozenset[str]


@dataclass(frozen=True, slots=True)
class RouteTable:
    """The label routes (tried first, in order), the channels of each severity, and the
    fallback channel(s)."""

    channels: tuple[str, ...]
    routes: Mapping[Severity, frozenset[str]]
    fallback: frozenset[str] = field(default_factory=frozenset)
    by_labels: tuple[LabelRoute, ...] = ()

    @classmethod
    def from_env(
        cls, env: Env, configured: Sequence[ChannelRef], known_names: Collection[str]
    ) -> RouteTable:
        everything = frozenset(c.channel for c in configured)
        webhooks = frozenset(c.channel for c in configured if c.name == "webhook")
        routes = {
            severity: _channels(env, ROUTE_VARS[severity], configured, known_names, allow_none=True)
            for severity in Severity
        }
        defaults = {s: webhooks if s is Severity.INFO else everything for s in Severity}
        fallback = _channels(env, FALLBACK_VAR, configured, known_names, allow_none=False)
        by_labels = tuple(
            _label_route(env, variable, configured, known_names)
            for variable in env.named(MATCH_PREFIX)
            if env.raw(variable) is not None
        )
        return cls(
            channels=tuple(c.channel for c in configured),
            routes={s: defaults[s] if r is None else r for s, r in routes.items()},
            fallback=fallback or frozenset(),
            by_labels=by_labels,
        )

    def route(self, severity: Severity) -> frozenset[str]:
        return self.routes.get(severity, frozenset())

    def route_for(self, alert: Alert, severity: Severity) -> frozenset[str]:
        """The first label route that matches ``alert``, else the route of ``severity``."""
        for route in self.by_labels:
            if matches_all(route.matchers, alert):
                return route.channels
        return self.route(severity)

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {s.value: self._ordered(self.route(s)) for s in Severity}
        described["fallback"] = self._ordered(self.fallback)
        if self.by_labels:
            described["match"] = [
                {
                    "name": route.name,
                    "match": [matcher.text for matcher in route.matchers],
                    "channels": self._ordered(route.channels),
                }
                for route in self.by_labels
            ]
        return described

    def _ordered(self, channels: Iterable[str]) -> list[str]:
        wanted = set(channels)
        return [c for c in self.channels if c in wanted]


def report_route(
    env: Env, configured: Sequence[ChannelRef], known_names: Collection[str]
) -> frozenset[str]:
    """The channels of ``OPSWATCH_ROUTE_REPORT`` (``none``: no report is sent); unset: every
    Slack and email channel (a webhook's receiver expects alerts unless it is listed)."""
    chosen = _channels(env, REPORT_VAR, configured, known_names, allow_none=True)
    if chosen is None:
        return frozenset(c.channel for c in configured if c.name != "webhook")
    return chosen


def channels_for(
    transition: Transition, table: RouteTable, notified: Mapping[str, frozenset[str]]
) -> frozenset[str]:
    """The channels one transition goes to (see the module docstring)."""
    alert = transition.alert
    configured = frozenset(table.channels)
    known = notified.get(alert.fingerprint, frozenset()) & configured
    severity = alert.severity
    if transition.kind is TransitionKind.ESCALATED and severity.rank < Severity.CRITICAL.rank:
        severity = Severity.CRITICAL  # a failed recovery wakes whoever critical alerts wake
    routed = table.route_for(alert, severity)
    if transition.kind in (TransitionKind.REMINDER, TransitionKind.RESOLVED):
        chosen = known or routed
    else:
        chosen = routed | known
    if alert.rule == META_RULE:
        broken = frozenset({alert.labels.get("channel", "")})
        chosen = (chosen - broken) or (table.fallback - broken) or (configured - broken)
    return chosen


def plan(
    transitions: Sequence[Transition],
    table: RouteTable,
    notified: Mapping[str, frozenset[str]],
) -> list[tuple[tuple[str, ...], tuple[Transition, ...]]]:
    """One cycle's transitions as messages: ``(channels, transitions)`` pairs such that each
    channel gets exactly one message holding every transition routed to it (a storm of 200
    alerts is one message per channel), and channels that get the same transitions share
    one message. Channels in configuration order; transitions in their given order."""
    per_channel: dict[str, list[Transition]] = {}
    for transition in transitions:
        for channel in channels_for(transition, table, notified):
            per_channel.setdefault(channel, []).append(transition)
    groups: dict[tuple[str, ...], list[str]] = {}
    for channel in table.channels:
        routed = per_channel.get(channel)
        if routed:
            groups.setdefault(tuple(t.key for t in routed), []).append(channel)
    return [(tuple(channels), tuple(per_channel[channels[0]])) for channels in groups.values()]


def _label_route(
    env: Env, variable: str, configured: Sequence[ChannelRef], known_names: Collection[str]
) -> LabelRoute:
    """``matcher, matcher -> channel, channel`` from ``variable``."""
    value = env.raw(variable) or ""
    matching, arrow, channels = value.partition("->")
    if not arrow or not matching.strip() or not channels.strip():
        raise ConfigError(
            variable, "expected 'MATCHER, ... -> CHANNEL, ...', e.g. 'team=payments -> slack'"
        )
    try:
        matchers = tuple(
            parse_matcher(item.strip(), "matcher") for item in matching.split(",") if item.strip()
        )
    except SilenceError as exc:
        raise ConfigError(variable, str(exc)) from None
    chosen = _parse_channels(variable, channels, configured, known_names, allow_none=True)
    name = variable.removeprefix(MATCH_PREFIX).lower()
    return LabelRoute(name, matchers, chosen)


def _channels(
    env: Env,
    variable: str,
    configured: Sequence[ChannelRef],
    known_names: Collection[str],
    *,
    allow_none: bool,
) -> frozenset[str] | None:
    """The channels a ``name,channel-id,...`` list designates; ``None`` when unset."""
    value = env.raw(variable)
    if value is None:
        return None
    return _parse_channels(variable, value, configured, known_names, allow_none=allow_none)


def _parse_channels(
    variable: str,
    value: str,
    configured: Sequence[ChannelRef],
    known_names: Collection[str],
    *,
    allow_none: bool,
) -> frozenset[str]:
    items = [item.strip().lower() for item in value.split(",") if item.strip()]
    if allow_none and items == [_NONE]:
        return frozenset()
    chosen: set[str] = set()
    ids = [c.channel for c in configured]
    for item in items:
        by_name = [c.channel for c in configured if c.name == item]
        if by_name:
            chosen.update(by_name)
        elif item in ids:
            chosen.add(item)
        elif item in known_names:
            raise ConfigError(variable, f"{item!r} is not configured (no {item} channel is set up)")
        else:
            choices = sorted({*known_names, *ids, *([_NONE] if allow_none else [])})
            raise ConfigError(
                variable, f"unknown channel {item!r}; expected some of {', '.join(choices)}"
            )
    return frozenset(chosen)
