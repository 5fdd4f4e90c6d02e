"""The notifier registry: name (= module = env prefix) -> class. Explicit, no scanning."""

from __future__ import annotations

from opswatch.notifiers.base import Notifier
from opswatch.notifiers.webhook import WebhookNotifier

NOTIFIERS: dict[str, type[Notifier]] = {
    "webhook": WebhookNotifier,
}
