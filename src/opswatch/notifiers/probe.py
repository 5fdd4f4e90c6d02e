"""``opswatch test-notify``: one test message through each channel, directly (no outbox).

Each channel's outcome is ``None`` (delivered) or the notifier's error text, which holds no
secret (every notifier masks its URL, token and password).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from datetime import datetime

from opswatch.model import Alert, AlertState, Notification, Severity, Transition, TransitionKind
from opswatch.model import fingerprint as alert_fingerprint
from opswatch.notifiers.base import Notifier, NotifyError
from opswatch.notifiers.render import RenderOptions, render

RULE = "opswatch_test"


def probe_notification(now: datetime, options: RenderOptions | None = None) -> Notification:
    """An info-level "this channel works" message, unique per ``now``."""
    host = socket.gethostname()
    labels = {"host": host}
    alert = Alert(
        fingerprint=alert_fingerprint(RULE, labels),
        rule=RULE,
        check="opswatch",
        labels=labels,
        state=AlertState.FIRING,
        severity=Severity.INFO,
        summary=f"test notification from opswatch on {host}: this channel works",
        value=1.0,
        started_at=now,
        last_seen_at=now,
    )
    return render([Transition(alert, TransitionKind.FIRED, now)], now, options)


def select(notifiers: Sequence[Notifier], which: str | None) -> list[Notifier]:
    """All notifiers, or those whose name or channel id is ``which``."""
    if which is None:
        return list(notifiers)
    wanted = which.strip().lower()
    return [n for n in notifiers if wanted in (n.name, n.channel)]


async def probe(
    notifiers: Sequence[Notifier], notification: Notification
) -> list[tuple[str, str | None]]:
    """Send ``notification`` through each notifier once; (channel, error or None) each."""
    results: list[tuple[str, str | None]] = []
    for notifier in notifiers:
        try:
            await notifier.send(notification)
        except NotifyError as exc:
            kind = "permanent" if exc.permanent else "transient"
            results.append((notifier.channel, f"{exc} ({kind})"))
        except Exception as exc:  # noqa: BLE001 - a notifier bug is reported, not a traceback
            results.append((notifier.channel, f"unexpected {type(exc).__name__}"))
        else:
            results.append((notifier.channel, None))
        finally:
            await notifier.close()
    return results
