"""Whether each notification channel delivers, as data: the "notifications failing" hook.

The outbox reports every delivery outcome to a :class:`ChannelHealth`. The daemon runs
:class:`ChannelHealthCheck` like any other check: each run turns the board into samples
``notify.channel_up{channel}`` (1 delivering, 0 failing, NaN not known yet), and a built-in
threshold rule (``notifications_failing``, critical) fires on 0 and resolves on 1. So the
meta-alert goes through the normal tracker, store and outbox path (persisted, notified,
reminded, resolved), and routing keeps it off the broken channel.

"Not known yet" (NaN) keeps whatever state the series had: after a restart an alert about a
broken channel stays firing until that channel delivers again, rather than resolving on the
first run because this process has not tried the channel yet.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from opswatch.config import Env
from opswatch.model import Clock, Sample, utcnow

CHECK = "notify"
METRIC = "notify.channel_up"


@dataclass(frozen=True, slots=True)
class _State:
    up: bool
    #: when the current run of failures began (None while up)
    failing_since: datetime | None


class ChannelHealth:
    """The last known delivery outcome of each channel (in memory; see the module doc)."""

    def __init__(self, channels: Iterable[str] = ()) -> None:
        self._channels = list(dict.fromkeys(channels))
        self._states: dict[str, _State] = {}

    def delivered(self, channel: str) -> None:
        self._remember(channel)
        self._states[channel] = _State(True, None)

    def failed(self, channel: str, at: datetime) -> None:
        self._remember(channel)
        state = self._states.get(channel)
        since = state.failing_since if state is not None and not state.up else None
        self._states[channel] = _State(False, since or at)

    def failing_before(self, channel: str, since: datetime) -> None:
        """A row of ``channel`` left pending by an earlier process had failed since ``since``:
        count the channel failing since then unless this process already knows better."""
        self._remember(channel)
        if channel not in self._states:
            self._states[channel] = _State(False, since)

    def up(self, channel: str) -> bool | None:
        state = self._states.get(channel)
        return None if state is None else state.up

    def failing_since(self, channel: str) -> datetime | None:
        state = self._states.get(channel)
        return None if state is None else state.failing_since

    def failing(self) -> frozenset[str]:
        return frozenset(c for c, s in self._states.items() if not s.up)

    def channels(self) -> list[str]:
        return list(self._channels)

    def _remember(self, channel: str) -> None:
        if channel not in self._channels:
            self._channels.append(channel)


class ChannelHealthCheck:
    """A check (it satisfies the collector contract) that samples a :class:`ChannelHealth`.
    It is not in the collector registry: the daemon adds it when a channel is configured."""

    name: ClassVar[str] = CHECK

    def __init__(self, health: ChannelHealth, clock: Clock = utcnow) -> None:
        self.check = CHECK
        self._health = health
        self._clock = clock

    @classmethod
    def from_env(cls, env: Env, clock: Clock) -> Sequence[ChannelHealthCheck]:
        return []

    async def collect(self) -> list[Sample]:
        now = self._clock()
        samples = []
        for channel in self._health.channels():
            up = self._health.up(channel)
            value = math.nan if up is None else float(up)
            samples.append(Sample(CHECK, METRIC, value, now, {"channel": channel}))
        return samples

    async def close(self) -> None:
        return None

    def describe(self) -> dict[str, str]:
        return {"channels": ",".join(self._health.channels())}
