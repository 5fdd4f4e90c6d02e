"""Every reason an alert is muted now, from one stack of muters.

A muter (:class:`~opswatch.notifiers.pipeline.Muter`) answers with the *reasons* it mutes an
alert (``silence 3f2a…``, ``maintenance db``, ``paused by alice``); :class:`MuteStack` asks
each of its muters in order and joins their answers. The stack is the one muter of the notify
pipeline and of recovery: a muted alert is tracked and visible with its reasons, notified to
nobody and remediated by nothing. Each source of muting (silences, maintenance windows,
dependencies, pause) is one muter in the stack, kept across reloads by ``daemon/app.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from opswatch.model import Alert
from opswatch.notifiers.pipeline import Muter


class MuteStack:
    """The muters of the daemon, asked in order."""

    def __init__(self, muters: Iterable[Muter] = ()) -> None:
        self._muters = list(muters)

    def add(self, muter: Muter) -> None:
        self._muters.append(muter)

    def muters(self) -> list[Muter]:
        """The muters, in order (a report lists what each has in force)."""
        return list(self._muters)

    def muted(self, alert: Alert, now: datetime) -> bool:
        return any(m.muted(alert, now) for m in self._muters)

    def muting(self, alert: Alert, now: datetime) -> list[str]:
        """Every reason ``alert`` is muted now (empty: it is not)."""
        return [reason for m in self._muters for reason in m.muting(alert, now)]
