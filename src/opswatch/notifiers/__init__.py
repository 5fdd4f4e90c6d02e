"""The notifier registry: name (= module = env prefix) -> class. Explicit, no scanning."""

from __future__ import annotations

from opswatch.notifiers.base import Notifier
from opswatch.notifiers.email import EmailNotifier
from opswatch.notifiers.slack import SlackNotifier
from opswatch.notifiers.webhook import WebhookNotifier

NOTIFIERS: dict[str, type[Notifier]] = {
    "email": EmailNotifier,
    "slack": SlackNotifier,
    "webhook": WebhookNotifier,
}
