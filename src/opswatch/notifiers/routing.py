"""Routing by severity: which channels each transition goes to. Pure.

``OPSWATCH_ROUTE_INFO`` / ``_WARNING`` / ``_CRITICAL`` / ``_EMERGENCY`` are comma lists of
notifier names (``webhook``, ``slack``, ``email``: every channel of that notifier) or channel
ids (``webhook:1a2b3c4d``, as ``check-config`` lists them), or ``none``. Unset: every channel
for warning and above, the webhooks only for info.

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

from opswatch.config import PREFIX, ConfigError, Env
from opswatch.model import Severity, Transition, TransitionKind

ROUTE_VARS: Mapping[Severity, str] = {s: f"{PREFIX}ROUTE_{s.value.upper()}" for s in Severity}
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
class RouteTable:
    """The channels of each severity, and the fallback channel(s)."""

    channels: tuple[str, ...]
    routes: Mapping[Severity, frozenset[str]]
    fallback: frozenset[str] = field(default_factory=frozenset)

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
        return cls(
            channels=tuple(c.channel for c in configured),
            routes={s: defaults[s] if r is None else r for s, r in routes.items()},
            fallback=fallback or frozenset(),
        )

    def route(self, severity: Severity) -> frozenset[str]:
        return self.routes.get(severity, frozenset())

    def describe(self) -> dict[str, list[str]]:
        described = {s.value: self._ordered(self.route(s)) for s in Severity}
        described["fallback"] = self._ordered(self.fallback)
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
    routed = table.route(severity)
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
