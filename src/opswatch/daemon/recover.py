"""``opswatch recover RULE [--target T] [--dry-run]``: one recovery run from this process."""

from __future__ import annotations

from opswatch.daemon.app import App
from opswatch.daemon.configure import AppConfig
from opswatch.model import RecoveryResult
from opswatch.recovery.base import CommandRunner
from opswatch.recovery.config import target_key
from opswatch.recovery.runner import alert_target


async def recover_once(
    config: AppConfig,
    rule: str,
    target: str | None,
    *,
    dry_run: bool,
    command_runner: CommandRunner | None = None,
) -> RecoveryResult | None:
    """Run the action bound to the rule (and target) once, under the same budget (kept in
    the state store) and verified against the rule when its alert is active. The alert itself
    is left to the daemon, which resolves it at its next run. None: nothing is bound."""
    app = App(config, command_runner=command_runner)
    binding = config.recovery.binding_for(rule, target or "")
    if binding is None:
        return None
    await app.store.open()
    try:
        alert = next(
            (
                a
                for a in await app.store.load_active()
                if a.rule == binding.rule
                and (not target or target_key(alert_target(a)) == target_key(target))
            ),
            None,
        )
        verify = None
        if alert is not None:
            app.evaluator.seed([alert])
            verify = app.cycle.probe(alert)
        ctx = app.recovery.context(binding, alert, target or "")
        return await app.recovery.run(binding, ctx, verify, dry_run=dry_run)
    finally:
        for collector in config.collectors:
            await collector.close()
        await app.store.close()
