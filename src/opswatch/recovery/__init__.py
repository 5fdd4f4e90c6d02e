"""The recovery action registry: name (= module = the binding's first word) -> class.

Explicit, no scanning. asyncpg is imported by the ``postgres`` action only when it runs.
"""

from __future__ import annotations

from opswatch.recovery.base import Action
from opswatch.recovery.command import CommandAction
from opswatch.recovery.docker import DockerAction
from opswatch.recovery.files import FilesAction
from opswatch.recovery.postgres import PostgresAction
from opswatch.recovery.process import ProcessAction
from opswatch.recovery.systemd import SystemdAction
from opswatch.recovery.webhook import WebhookAction

ACTIONS: dict[str, type[Action]] = {
    "command": CommandAction,
    "docker": DockerAction,
    "files": FilesAction,
    "postgres": PostgresAction,
    "process": ProcessAction,
    "systemd": SystemdAction,
    "webhook": WebhookAction,
}
