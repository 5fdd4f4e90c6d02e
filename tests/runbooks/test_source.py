"""Runbooks from live state: a real SQLite store seeded with a firing (with its evidence) and
a recovery run, read at a manual clock's time."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

from opswatch.daemon.app import App
from opswatch.model import CycleRecord, RecoveryOutcome, RecoveryResult, Severity, TransitionKind
from opswatch.runbooks.render import markdown, page, runbook_to_json
from tests.conftest import ManualClock
from tests.notifiers.conftest import transition
from tests.runbooks.conftest import PASSWORD

EVIDENCE = ("captured 2026-01-01T11:50:00Z", "top processes by CPU:", "   99.0% cpu  nginx")


async def _seed(app: App, clock: ManualClock) -> str:
    fired_at = clock.now - timedelta(minutes=10)
    fired = dataclasses.replace(
        transition(
            "http_down",
            check="http:api",
            severity=Severity.CRITICAL,
            labels={"target": "api"},
            started_at=fired_at,
            summary="http:api is down",
        ),
        evidence=EVIDENCE,
    )
    await app.store.record(CycleRecord([fired.alert], [], [fired], []), fired_at)
    fingerprint = fired.alert.fingerprint
    await app.store.evidence_record(fingerprint, fired_at, {"at": fired_at.isoformat()})
    for minutes, outcome in ((8, RecoveryOutcome.FAILED), (5, RecoveryOutcome.SUCCEEDED)):
        await app.store.recovery_record(
            RecoveryResult(
                action="systemd",
                fingerprint=fingerprint,
                outcome=outcome,
                attempts=1,
                duration_s=2.0,
                detail=f"systemctl restart nginx.service: {outcome.value}",
                at=clock.now - timedelta(minutes=minutes),
                rule="http_down",
                target="api",
                key="systemd:nginx.service",
            )
        )
    return fingerprint


async def test_a_runbook_shows_the_last_transition_recovery_and_evidence_from_the_store(
    app: App, clock: ManualClock
) -> None:
    fingerprint = await _seed(app, clock)

    runbook = await app.runbooks.one("http_down")

    assert runbook is not None
    assert runbook.generated_at == clock.now
    text = markdown(runbook)
    assert "2026-01-01T11:50:00Z fired critical on http:api: http:api is down" in text
    assert "critical on http:api for 10 min (since 2026-01-01T11:50:00Z)" in text
    assert "   99.0% cpu  nginx" in text
    assert "Budget 3/30m: closed, 2 of 3 executions used, 1 allowed now." in text
    assert "Recent runs: 1 of 2 succeeded (50%)." in text
    assert "systemctl status nginx.service --no-pager" in text
    encoded = runbook_to_json(runbook)
    assert encoded["evidence"]["fingerprint"] == fingerprint
    assert encoded["evidence"]["data"] == {"at": "2026-01-01T11:50:00+00:00"}
    assert [t["kind"] for t in encoded["transitions"]] == [TransitionKind.FIRED.value]
    (recovery,) = encoded["recovery"]
    assert (recovery["succeeded"], recovery["failed"], recovery["success_rate"]) == (1, 1, 0.5)
    assert recovery["budget"]["used"] == 2
    assert "nginx.service" in page(runbook)


async def test_no_runbook_shows_a_password_of_a_target_url(app: App, clock: ManualClock) -> None:
    await _seed(app, clock)

    every = await app.runbooks.every()

    assert {r.rule for r in every} == {r.name for r in app.config.rules}
    shown = "".join(markdown(r) + page(r) + json.dumps(runbook_to_json(r)) for r in every)
    assert "ops:***@api.example" in shown  # the target is there, masked
    for host in ("db.example", "cache.example", "mq.example"):
        assert host in shown
    assert PASSWORD not in shown


async def test_the_index_counts_what_fires_and_when_each_rule_last_changed(
    app: App, clock: ManualClock
) -> None:
    await _seed(app, clock)

    entries = {e.rule: e for e in await app.runbooks.index()}

    assert entries["http_down"].firing == 1
    assert entries["http_down"].last_transition_at == clock.now - timedelta(minutes=10)
    assert (entries["cpu_high"].firing, entries["cpu_high"].last_transition_at) == (0, None)
    assert await app.runbooks.one("no_such_rule") is None
