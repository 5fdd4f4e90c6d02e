"""The notification policy around the channels: routing, grouping, fallback, wording.

``NotifySettings.from_env`` reads the variables that are not any one notifier's:

* ``OPSWATCH_ROUTE_<SEVERITY>`` and ``OPSWATCH_FALLBACK_CHANNEL`` (see :mod:`routing`);
* ``OPSWATCH_FALLBACK_AFTER`` (default ``15m``): how long a channel may keep failing before
  its messages go to the fallback channel;
* ``OPSWATCH_GROUP_WAIT`` (default ``0s``: one message per channel per check run): hold a
  channel's new messages this long and send them as one;
* ``OPSWATCH_RUNBOOK_URL``: a runbook link template with ``{rule}``.

:meth:`NotifySettings.rows` turns one cycle's transitions into the outbox rows the daemon
stores with them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from opswatch.config import PREFIX, Env, mask_url
from opswatch.model import Clock, utcnow
from opswatch.notifiers.base import Notifier
from opswatch.notifiers.health import ChannelHealth, ChannelHealthCheck
from opswatch.notifiers.outbox import DeliveryOptions
from opswatch.notifiers.pipeline import Muter, NothingMuted, NotifyPipeline
from opswatch.notifiers.render import RenderOptions
from opswatch.notifiers.routing import ChannelRef, RouteTable

GROUP_WAIT_VAR = f"{PREFIX}GROUP_WAIT"
FALLBACK_AFTER_VAR = f"{PREFIX}FALLBACK_AFTER"


@dataclass(frozen=True)
class NotifySettings:
    routes: RouteTable = field(default_factory=lambda: RouteTable((), {}))
    delivery: DeliveryOptions = field(default_factory=DeliveryOptions)

    @classmethod
    def from_env(
        cls, env: Env, notifiers: Sequence[Notifier], known_names: Collection[str]
    ) -> NotifySettings:
        refs = [ChannelRef(n.name, n.channel) for n in notifiers]
        routes = RouteTable.from_env(env, refs, known_names)
        delivery = DeliveryOptions(
            fallback=routes.fallback,
            fallback_after=env.duration(FALLBACK_AFTER_VAR, 900.0, minimum=0.0),
            group_wait=env.duration(GROUP_WAIT_VAR, 0.0, minimum=0.0),
            render=RenderOptions.from_env(env),
            health=ChannelHealth(ref.channel for ref in refs),
        )
        return cls(routes, delivery)

    def health_check(self, clock: Clock = utcnow) -> ChannelHealthCheck:
        """The check that turns channel health into ``notify.channel_up`` samples."""
        return ChannelHealthCheck(self.delivery.health, clock)

    def pipeline(self, muter: Muter | None = None) -> NotifyPipeline:
        """The notify stages for these routes and wording (nothing muted by default)."""
        return NotifyPipeline(self.routes, self.delivery.render, muter or NothingMuted())

    def describe(self) -> dict[str, Any]:
        template = self.delivery.render.runbook_template
        return {
            "routes": self.routes.describe(),
            "fallback_after_s": self.delivery.fallback_after,
            "group_wait_s": self.delivery.group_wait,
            "runbook_url": None if template is None else mask_url(template, hide_path=False),
        }
