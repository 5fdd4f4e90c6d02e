"""Silences: matchers on an alert's rule, check and labels, muting it for a time.

Like Alertmanager's: a matcher is ``name=value``, ``name!=value``, ``name=~regex`` or
``name!~regex``; a regex is fully anchored (``^(?:regex)$``); a name the alert lacks compares
as the empty string; a silence mutes an alert that *all* its matchers match while
``starts_at <= now < ends_at``. Expiring one sets its end to now.

:class:`SilenceMuter` is the :class:`~opswatch.notifiers.pipeline.Muter` of the silences in
memory, loaded from the store (:class:`~opswatch.ports.SilenceStore`) at start; with replicas
on one PostgreSQL store, reloaded from it every check interval (:meth:`Silences.follow`), so
every replica sees the silences any replica created. The replica that serves an API call
updates its memory at once.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from enum import StrEnum

import structlog

from opswatch.alerts.following import follow
from opswatch.model import Alert, Clock, Matcher, MatchOp, Silence
from opswatch.ports import SilenceStore

log = structlog.get_logger("opswatch")

#: how long an expired silence is still listed
EXPIRED_KEPT = timedelta(hours=24)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
#: the longer operators first, so ``=~`` is not read as ``=`` and a value starting with ``~``
_OPS = (MatchOp.REGEX, MatchOp.NOT_REGEX, MatchOp.NOT_EQUAL, MatchOp.EQUAL)


class SilenceError(ValueError):
    """A silence or a matcher that cannot be used; the message names the field."""


class SilenceState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    EXPIRED = "expired"


def parse_matcher(text: str, field: str = "match") -> Matcher:
    """``check=~postgres:.*`` as a :class:`Matcher`; a bad one raises :class:`SilenceError`
    naming ``field`` and the text."""
    name = _NAME.match(text)
    rest = text[name.end() :] if name else ""
    op = next((o for o in _OPS if rest.startswith(o.value)), None)
    if name is None or op is None:
        raise SilenceError(
            f"{field} {text!r}: expected name=value, name!=value, name=~regex or name!~regex"
        )
    matcher = Matcher(name.group(), op, rest[len(op.value) :])
    if op in (MatchOp.REGEX, MatchOp.NOT_REGEX):
        try:
            re.compile(matcher.value)
        except re.error as exc:
            raise SilenceError(f"{field} {text!r}: invalid regex: {exc}") from None
    return matcher


def matches(matcher: Matcher, alert: Alert) -> bool:
    if matcher.name == "rule":
        value = alert.rule
    elif matcher.name == "check":
        value = alert.check
    else:
        value = alert.labels.get(matcher.name, "")
    if matcher.op is MatchOp.EQUAL:
        return value == matcher.value
    if matcher.op is MatchOp.NOT_EQUAL:
        return value != matcher.value
    found = re.fullmatch(matcher.value, value) is not None
    return found if matcher.op is MatchOp.REGEX else not found


def matches_all(matchers: Iterable[Matcher], alert: Alert) -> bool:
    return all(matches(m, alert) for m in matchers)


def silences_alert(silence: Silence, alert: Alert) -> bool:
    return matches_all(silence.matchers, alert)


def state(silence: Silence, now: datetime) -> SilenceState:
    if now < silence.starts_at:
        return SilenceState.PENDING
    if now < silence.ends_at:
        return SilenceState.ACTIVE
    return SilenceState.EXPIRED


def new_silence(
    matchers: Sequence[Matcher],
    starts_at: datetime,
    ends_at: datetime,
    *,
    created_by: str,
    comment: str,
    now: datetime,
) -> Silence:
    silence = Silence(
        id=uuid.uuid4().hex,
        matchers=tuple(matchers),
        starts_at=starts_at,
        ends_at=ends_at,
        created_by=created_by,
        comment=comment,
        created_at=now,
        updated_at=now,
    )
    check(silence, now)
    return silence


def check(silence: Silence, now: datetime) -> None:
    """Refuse a silence without matchers, or that ends before it starts or in the past."""
    if not silence.matchers:
        raise SilenceError("matchers: at least one matcher is required")
    if silence.ends_at <= silence.starts_at:
        raise SilenceError("ends_at: must be after starts_at")
    if silence.ends_at <= now:
        raise SilenceError("ends_at: must be in the future")


def expired(silence: Silence, now: datetime) -> Silence:
    """``silence`` ended now (a pending one also starts now, so it never mutes)."""
    return replace(silence, starts_at=min(silence.starts_at, now), ends_at=now, updated_at=now)


class SilenceMuter:
    """The silences in memory, as the pipeline's and recovery's muter."""

    def __init__(self, silences: Iterable[Silence] = ()) -> None:
        self._silences: dict[str, Silence] = {s.id: s for s in silences}

    def muted(self, alert: Alert, now: datetime) -> bool:
        return bool(self.muting(alert, now))

    def muting(self, alert: Alert, now: datetime) -> list[str]:
        """Why ``alert`` is muted now: ``silence ID`` per active silence matching it."""
        return [f"silence {silence_id}" for silence_id in self.ids(alert, now)]

    def ids(self, alert: Alert, now: datetime) -> list[str]:
        """The ids of the active silences muting ``alert`` now."""
        return [
            s.id
            for s in self._silences.values()
            if state(s, now) is SilenceState.ACTIVE and silences_alert(s, alert)
        ]

    def get(self, silence_id: str) -> Silence | None:
        return self._silences.get(silence_id)

    def put(self, silence: Silence) -> None:
        self._silences[silence.id] = silence

    def listed(self, now: datetime) -> list[Silence]:
        """Active and pending silences, and those expired within :data:`EXPIRED_KEPT`,
        soonest ending first."""
        return sorted(
            (s for s in self._silences.values() if s.ends_at > now - EXPIRED_KEPT),
            key=lambda s: (s.ends_at, s.id),
        )

    async def refresh(self, store: SilenceStore, now: datetime) -> None:
        """Replace the silences in memory by the store's (those another replica wrote too)."""
        self._silences = {s.id: s for s in await store.silences(now - EXPIRED_KEPT)}


class Silences:
    """Creates, changes and expires silences: in the store first, then in the muter, with an
    audit line (``silence_created``, ``silence_updated``, ``silence_expired``: who and why)."""

    def __init__(self, store: SilenceStore, clock: Clock) -> None:
        self.store = store
        self.muter = SilenceMuter()
        self._clock = clock

    def now(self) -> datetime:
        return self._clock()

    async def load(self) -> None:
        await self.muter.refresh(self.store, self._clock())

    async def follow(
        self,
        every: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Reload the silences from the store every ``every()`` seconds, for ever: replicas
        on one PostgreSQL store see each other's silences within a check interval. A store
        that fails keeps the silences in memory (``silences_refresh_failed`` per failed
        refresh, with a traceback for the first of an outage)."""
        await follow(self.load, every, "silences_refresh_failed", sleep)

    async def create(
        self,
        matchers: Sequence[Matcher],
        ends_at: datetime,
        created_by: str,
        comment: str,
        starts_at: datetime | None = None,
    ) -> Silence:
        now = self._clock()
        silence = new_silence(
            matchers, starts_at or now, ends_at, created_by=created_by, comment=comment, now=now
        )
        await self.store.silence_save(silence)
        self.muter.put(silence)
        log.info(
            "silence_created",
            silence=silence.id,
            matchers=[m.text for m in silence.matchers],
            starts_at=silence.starts_at.isoformat(),
            ends_at=silence.ends_at.isoformat(),
            created_by=created_by,
            comment=comment,
        )
        return silence

    async def update(
        self,
        silence: Silence,
        *,
        by: str,
        ends_at: datetime | None = None,
        comment: str | None = None,
        matchers: Sequence[Matcher] | None = None,
    ) -> Silence:
        """Change an unexpired silence's end, comment or matchers."""
        now = self._clock()
        if state(silence, now) is SilenceState.EXPIRED:
            raise SilenceError(f"silence {silence.id}: expired, create a new one")
        changed = replace(
            silence,
            ends_at=silence.ends_at if ends_at is None else ends_at,
            comment=silence.comment if comment is None else comment,
            matchers=silence.matchers if matchers is None else tuple(matchers),
            updated_at=now,
        )
        check(changed, now)
        await self.store.silence_save(changed)
        self.muter.put(changed)
        log.info(
            "silence_updated",
            silence=changed.id,
            matchers=[m.text for m in changed.matchers],
            ends_at=changed.ends_at.isoformat(),
            by=by,
            comment=changed.comment,
        )
        return changed

    async def expire(self, silence: Silence, *, by: str) -> Silence:
        """End ``silence`` now (an expired one is left as it is)."""
        now = self._clock()
        if state(silence, now) is SilenceState.EXPIRED:
            return silence
        ended = expired(silence, now)
        await self.store.silence_save(ended)
        self.muter.put(ended)
        log.info(
            "silence_expired",
            silence=ended.id,
            matchers=[m.text for m in ended.matchers],
            by=by,
            created_by=ended.created_by,
            comment=ended.comment,
        )
        return ended
