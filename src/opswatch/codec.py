"""Every JSON encoding of the model types: the state store's rows and the API's answers.

Times are UTC ISO 8601 strings; enums are their values. Decoding is the exact inverse.
The shape of each encoding the API answers is declared once, as a JSON schema in
:data:`SCHEMAS` beside its encoder (the OpenAPI document refers to them with :func:`ref`).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from opswatch.model import (
    Advice,
    Alert,
    AlertState,
    BudgetState,
    CheckStatus,
    Forecast,
    Health,
    MaintenanceWindow,
    Matcher,
    MatchOp,
    Notification,
    NotificationKind,
    Pause,
    PauseAction,
    PauseEvent,
    Ping,
    PingKind,
    RecoveryOutcome,
    RecoveryResult,
    Report,
    ReportLine,
    ReportSection,
    Sample,
    Severity,
    Silence,
    Transition,
    TransitionKind,
    Verdict,
)

JSON = dict[str, Any]


# -- JSON schemas of the encodings (OpenAPI 3.1: JSON Schema 2020-12) --------------------

#: every named shape, by name: ``components.schemas`` of the OpenAPI document
SCHEMAS: dict[str, JSON] = {}


def ref(name: str) -> JSON:
    """A reference to the declared shape ``name`` (a ``KeyError`` for an undeclared one)."""
    if name not in SCHEMAS:  # a typo fails where the route is declared
        raise KeyError(f"no JSON schema {name!r} in opswatch.codec.SCHEMAS")
    return {"$ref": f"#/components/schemas/{name}"}


def obj(**properties: JSON) -> JSON:
    """An object whose properties are all always present."""
    return {"type": "object", "properties": properties, "required": list(properties)}


def shape(name: str, **properties: JSON) -> JSON:
    """Declare the object shape ``name`` (:func:`obj`) in :data:`SCHEMAS`."""
    SCHEMAS[name] = obj(**properties)
    return SCHEMAS[name]


def array(items: JSON) -> JSON:
    return {"type": "array", "items": items}


def _type(name: str, nullable: bool = False) -> JSON:
    return {"type": [name, "null"] if nullable else name}


def _enum(values: type[StrEnum], nullable: bool = False) -> JSON:
    choices: list[str | None] = [v.value for v in values]
    return {"enum": [*choices, None] if nullable else choices}


STRING, NUMBER, INTEGER, BOOLEAN = (
    _type("string"),
    _type("number"),
    _type("integer"),
    _type("boolean"),
)
NULLABLE_STRING = _type("string", nullable=True)
TIME: JSON = {"type": "string", "format": "date-time"}
NULLABLE_TIME: JSON = {"type": ["string", "null"], "format": "date-time"}
STRING_MAP: JSON = {"type": "object", "additionalProperties": STRING}


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _required_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def alert_to_json(alert: Alert) -> JSON:
    return {
        "fingerprint": alert.fingerprint,
        "rule": alert.rule,
        "check": alert.check,
        "labels": dict(alert.labels),
        "state": alert.state.value,
        "severity": alert.severity.value,
        "summary": alert.summary,
        "value": alert.value,
        "started_at": _time(alert.started_at),
        "last_seen_at": _time(alert.last_seen_at),
        "resolved_at": _time(alert.resolved_at),
        "last_notified_at": _time(alert.last_notified_at),
        "acked_by": alert.acked_by,
        "escalated": alert.escalated,
        "notified": alert.notified,
        "ack_comment": alert.ack_comment,
        "acked_at": _time(alert.acked_at),
        "ack_expires_at": _time(alert.ack_expires_at),
        "ack_sticky": alert.ack_sticky,
        "flapping": alert.flapping,
        "ladder_s": alert.ladder_s,
        "climbed": alert.climbed,
        "heard_severity": None if alert.heard_severity is None else alert.heard_severity.value,
    }


def alert_from_json(data: JSON) -> Alert:
    return Alert(
        fingerprint=data["fingerprint"],
        rule=data["rule"],
        check=data["check"],
        labels={str(k): str(v) for k, v in data["labels"].items()},
        state=AlertState(data["state"]),
        severity=Severity(data["severity"]),
        summary=data["summary"],
        value=float(data["value"]),
        started_at=_required_time(data["started_at"]),
        last_seen_at=_required_time(data["last_seen_at"]),
        resolved_at=_parse_time(data["resolved_at"]),
        last_notified_at=_parse_time(data["last_notified_at"]),
        acked_by=data["acked_by"],
        escalated=bool(data.get("escalated", False)),  # absent in rows of 0.1.0
        notified=bool(data.get("notified", True)),  # absent before silences
        # the ack's details are absent in rows written before operator acks existed
        ack_comment=data.get("ack_comment"),
        acked_at=_parse_time(data.get("acked_at")),
        ack_expires_at=_parse_time(data.get("ack_expires_at")),
        ack_sticky=bool(data.get("ack_sticky", False)),
        # absent in rows written before flapping and the severity ladder
        flapping=bool(data.get("flapping", False)),
        ladder_s=float(data.get("ladder_s", 0.0)),
        climbed=bool(data.get("climbed", False)),
        heard_severity=None
        if data.get("heard_severity") is None
        else Severity(data["heard_severity"]),
    )


def transition_to_json(transition: Transition) -> JSON:
    return {
        "alert": alert_to_json(transition.alert),
        "kind": transition.kind.value,
        "at": _time(transition.at),
        "previous_state": None
        if transition.previous_state is None
        else transition.previous_state.value,
        "previous_severity": None
        if transition.previous_severity is None
        else transition.previous_severity.value,
        "note": transition.note,
        "evidence": list(transition.evidence),
    }


def transition_from_json(data: JSON) -> Transition:
    return Transition(
        alert=alert_from_json(data["alert"]),
        kind=TransitionKind(data["kind"]),
        at=_required_time(data["at"]),
        previous_state=None
        if data["previous_state"] is None
        else AlertState(data["previous_state"]),
        previous_severity=None
        if data["previous_severity"] is None
        else Severity(data["previous_severity"]),
        note=data.get("note"),  # absent in rows written before recovery existed
        evidence=tuple(data.get("evidence", ())),
    )


def notification_to_json(notification: Notification) -> JSON:
    return {
        "transitions": [transition_to_json(t) for t in notification.transitions],
        "title": notification.title,
        "text": notification.text,
        "severity": notification.severity.value,
        "idempotency_key": notification.idempotency_key,
        "kind": notification.kind.value,
        "fallback_note": notification.fallback_note,
        **({} if notification.report is None else {"report": report_to_json(notification.report)}),
    }


def notification_from_json(data: JSON) -> Notification:
    return Notification(
        transitions=tuple(transition_from_json(t) for t in data["transitions"]),
        title=data["title"],
        text=data["text"],
        severity=Severity(data["severity"]),
        idempotency_key=data["idempotency_key"],
        kind=NotificationKind(data.get("kind", NotificationKind.TRANSITIONS.value)),
        fallback_note=data["fallback_note"] if "fallback_note" in data else _legacy_note(data),
        report=report_from_json(data["report"]) if "report" in data else None,
    )


def report_to_json(report: Report) -> JSON:
    return {
        "kind": report.kind,
        "title": report.title,
        "since": report.since.isoformat(),
        "until": report.until.isoformat(),
        "verdict": report.verdict.value,
        "summary": report.summary,
        "sections": [
            {
                "title": section.title,
                "empty": section.empty,
                "lines": [{"verdict": x.verdict.value, "text": x.text} for x in section.lines],
            }
            for section in report.sections
        ],
    }


def report_from_json(data: JSON) -> Report:
    return Report(
        kind=data["kind"],
        title=data["title"],
        since=_required_time(data["since"]),
        until=_required_time(data["until"]),
        verdict=Verdict(data["verdict"]),
        summary=data["summary"],
        sections=tuple(
            ReportSection(
                s["title"],
                tuple(ReportLine(Verdict(x["verdict"]), x["text"]) for x in s["lines"]),
                s["empty"],
            )
            for s in data["sections"]
        ),
    )


#: rows written before ``fallback_note`` existed marked a fallback copy in its title
_LEGACY_FALLBACK_MARK = "[fallback] "


def _legacy_note(data: JSON) -> str | None:
    if not str(data["title"]).startswith(_LEGACY_FALLBACK_MARK):
        return None
    return str(data["text"]).split("\n\n", 1)[0]


def ping_to_json(ping: Ping) -> JSON:
    return {
        "heartbeat": ping.heartbeat,
        "kind": ping.kind.value,
        "at": ping.at.isoformat(),
        "exit_status": ping.exit_status,
        "output": ping.output,
        "truncated": ping.truncated,
        "duration_s": ping.duration_s,
    }


def ping_from_json(data: JSON) -> Ping:
    return Ping(
        heartbeat=data["heartbeat"],
        kind=PingKind(data["kind"]),
        at=_required_time(data["at"]),
        exit_status=data["exit_status"],
        output=data["output"],
        truncated=data["truncated"],
        duration_s=data["duration_s"],
    )


# -- API answers (encode only) -----------------------------------------------------------


def sample_to_json(sample: Sample) -> JSON:
    return {
        "metric": sample.metric,
        "value": sample.value,
        "labels": dict(sample.labels),
        "at": sample.at.isoformat(),
    }


def check_status_to_json(status: CheckStatus) -> JSON:
    return {
        "finished_at": _time(status.finished_at),
        "duration_ms": round(status.duration_s * 1000, 3),
        "error": status.error,
        "samples": [sample_to_json(s) for s in status.samples],
    }


def health_to_json(health: Health) -> JSON:
    return {
        "status": "ok" if health.healthy else "unhealthy",
        "reason": health.reason,
        "started_at": _time(health.started_at),
        "last_run_at": _time(health.last_run_at),
    }


def recovery_result_to_json(result: RecoveryResult) -> JSON:
    return {
        "action": result.action,
        "key": result.key,
        "rule": result.rule,
        "target": result.target,
        "fingerprint": result.fingerprint,
        "outcome": result.outcome.value,
        "attempts": result.attempts,
        "trial": result.trial,
        "duration_s": round(result.duration_s, 3),
        "detail": result.detail,
        "at": result.at.isoformat(),
    }


def budget_state_to_json(state: BudgetState) -> JSON:
    return {
        "key": state.key,
        "state": state.state,
        "used": state.used,
        "limit": state.limit,
        "left": state.allowed,
        "next_trial_at": _time(state.next_trial_at),
    }


def matchers_to_json(matchers: tuple[Matcher, ...]) -> list[JSON]:
    return [{"name": m.name, "op": m.op.value, "value": m.value} for m in matchers]


def matchers_from_json(data: list[JSON]) -> tuple[Matcher, ...]:
    return tuple(Matcher(m["name"], MatchOp(m["op"]), m["value"]) for m in data)


def forecast_to_json(forecast: Forecast) -> JSON:
    return {
        "rule": forecast.rule,
        "resource": forecast.resource,
        "check": forecast.check,
        "metric": forecast.metric,
        "labels": dict(forecast.labels),
        "at": forecast.at.isoformat(),
        "value": forecast.value,
        "limit": forecast.limit,
        "per_day": forecast.per_day,
        "earliest_s": forecast.earliest_s,
        "likely_s": forecast.likely_s,
        "latest_s": forecast.latest_s,
    }


def advice_to_json(advice: Advice) -> JSON:
    return {
        "resource": advice.resource,
        "check": advice.check,
        "metric": advice.metric,
        "labels": dict(advice.labels),
        "at": advice.at.isoformat(),
        "trigger": advice.trigger,
        "day": advice.day,
        "week": advice.week,
        "peak": advice.peak,
        "sustained_s": advice.sustained_s,
        "per_week": advice.per_week,
        "recommendation": advice.recommendation,
    }


def silence_to_json(silence: Silence) -> JSON:
    return {
        "id": silence.id,
        "matchers": matchers_to_json(silence.matchers),
        "starts_at": silence.starts_at.isoformat(),
        "ends_at": silence.ends_at.isoformat(),
        "created_by": silence.created_by,
        "comment": silence.comment,
        "created_at": silence.created_at.isoformat(),
        "updated_at": silence.updated_at.isoformat(),
    }


def silence_from_json(data: JSON) -> Silence:
    return Silence(
        id=data["id"],
        matchers=matchers_from_json(data["matchers"]),
        starts_at=_required_time(data["starts_at"]),
        ends_at=_required_time(data["ends_at"]),
        created_by=data["created_by"],
        comment=data["comment"],
        created_at=_required_time(data["created_at"]),
        updated_at=_required_time(data["updated_at"]),
    )


#: the store key of a pause of every check (no check is named ``*``)
EVERY_CHECK = "*"


def pause_scope(check: str | None) -> str:
    """The store key of the pause of ``check`` (``None``: every check)."""
    return EVERY_CHECK if check is None else check


def pause_to_json(pause: Pause) -> JSON:
    return {
        "check": pause.check,
        "by": pause.by,
        "comment": pause.comment,
        "since": pause.since.isoformat(),
    }


def pause_from_json(data: JSON) -> Pause:
    return Pause(
        check=data["check"],
        by=data["by"],
        comment=data["comment"],
        since=_required_time(data["since"]),
    )


def pause_event_to_json(event: PauseEvent) -> JSON:
    return {
        "action": event.action.value,
        "checks": list(event.checks),
        "by": event.by,
        "comment": event.comment,
        "at": event.at.isoformat(),
    }


def pause_event_from_json(data: JSON) -> PauseEvent:
    return PauseEvent(
        action=PauseAction(data["action"]),
        checks=tuple(data["checks"]),
        by=data["by"],
        comment=data["comment"],
        at=_required_time(data["at"]),
    )


def maintenance_to_json(window: MaintenanceWindow) -> JSON:
    """A one-off window as the state store keeps it."""
    return {
        "id": window.id,
        "name": window.name,
        "matchers": matchers_to_json(window.matchers),
        "starts_at": window.starts_at.isoformat(),
        "ends_at": window.ends_at.isoformat(),
        "created_by": window.created_by,
        "comment": window.comment,
        "created_at": window.created_at.isoformat(),
    }


def maintenance_from_json(data: JSON) -> MaintenanceWindow:
    return MaintenanceWindow(
        id=data["id"],
        name=data["name"],
        matchers=matchers_from_json(data["matchers"]),
        starts_at=_required_time(data["starts_at"]),
        ends_at=_required_time(data["ends_at"]),
        created_by=data["created_by"],
        comment=data["comment"],
        created_at=_required_time(data["created_at"]),
    )


# the shapes of the API answers

shape(
    "Alert",
    fingerprint=STRING,
    rule=STRING,
    check=STRING,
    labels=STRING_MAP,
    state=_enum(AlertState),
    severity=_enum(Severity),
    summary=STRING,
    value=NUMBER,
    started_at=TIME,
    last_seen_at=TIME,
    resolved_at=NULLABLE_TIME,
    last_notified_at=NULLABLE_TIME,
    acked_by=NULLABLE_STRING,
    escalated=BOOLEAN,
    ack_comment=NULLABLE_STRING,
    acked_at=NULLABLE_TIME,
    ack_expires_at=NULLABLE_TIME,
    ack_sticky=BOOLEAN,
    notified=BOOLEAN,
    flapping=BOOLEAN,
    ladder_s=NUMBER,
    climbed=BOOLEAN,
    heard_severity=_enum(Severity, nullable=True),
)
shape(
    "Transition",
    alert=ref("Alert"),
    kind=_enum(TransitionKind),
    at=TIME,
    previous_state=_enum(AlertState, nullable=True),
    previous_severity=_enum(Severity, nullable=True),
    note=NULLABLE_STRING,
    evidence=array({}),
)
shape("Sample", metric=STRING, value=NUMBER, labels=STRING_MAP, at=TIME)
shape(
    "CheckStatus",
    finished_at=NULLABLE_TIME,
    duration_ms=NUMBER,
    error=NULLABLE_STRING,
    samples=array(ref("Sample")),
)
shape(
    "Health",
    status={"enum": ["ok", "unhealthy"]},
    reason=NULLABLE_STRING,
    started_at=NULLABLE_TIME,
    last_run_at=NULLABLE_TIME,
)
shape(
    "RecoveryResult",
    action=STRING,
    key=STRING,
    rule=STRING,
    target=STRING,
    fingerprint=STRING,
    outcome=_enum(RecoveryOutcome),
    attempts=INTEGER,
    trial=BOOLEAN,
    duration_s=NUMBER,
    detail=STRING,
    at=TIME,
)
shape(
    "BudgetState",
    key=STRING,
    state={"enum": ["closed", "open", "half-open"]},
    used=INTEGER,
    limit=INTEGER,
    left=INTEGER,
    next_trial_at=NULLABLE_TIME,
)
shape(
    "Ping",
    heartbeat=STRING,
    kind=_enum(PingKind),
    at=TIME,
    exit_status=_type("integer", nullable=True),
    output=STRING,
    truncated=BOOLEAN,
    duration_s=_type("number", nullable=True),
)
shape("Pause", check=NULLABLE_STRING, by=STRING, comment=NULLABLE_STRING, since=TIME)
shape(
    "PauseEvent",
    action=_enum(PauseAction),
    checks=array(STRING),
    by=STRING,
    comment=NULLABLE_STRING,
    at=TIME,
)
shape(
    "Silence",
    id=STRING,
    matchers=array(obj(name=STRING, op=_enum(MatchOp), value=STRING)),
    starts_at=TIME,
    ends_at=TIME,
    created_by=STRING,
    comment=STRING,
    created_at=TIME,
    updated_at=TIME,
)
shape(
    "Error",
    error=obj(
        status={"type": "integer", "minimum": 400, "maximum": 599},
        code={"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
        message=STRING,
    ),
)
NULLABLE_NUMBER = _type("number", nullable=True)
shape(
    "Forecast",
    rule=STRING,
    resource=STRING,
    check=STRING,
    metric=STRING,
    labels=STRING_MAP,
    at=TIME,
    value=NUMBER,
    limit=NULLABLE_NUMBER,
    per_day=NUMBER,
    earliest_s=NULLABLE_NUMBER,
    likely_s=NULLABLE_NUMBER,
    latest_s=NULLABLE_NUMBER,
)
shape(
    "Advice",
    resource=STRING,
    check=STRING,
    metric=STRING,
    labels=STRING_MAP,
    at=TIME,
    trigger=STRING,
    day=NUMBER,
    week=NUMBER,
    peak=NUMBER,
    sustained_s=NUMBER,
    per_week=NULLABLE_NUMBER,
    recommendation=STRING,
)
# runbooks (opswatch.runbooks.render encodes them)
shape(
    "RunbookEntry",
    rule=STRING,
    origin=STRING,
    meaning=STRING,
    firing=INTEGER,
    last_transition_at=NULLABLE_TIME,
    href=STRING,
)
shape(
    "Runbook",
    rule=STRING,
    origin=STRING,
    generated_at=TIME,
    meaning=STRING,
    definition={"type": "object", "description": "the rule as check-config shows it"},
    targets=array(obj(check=STRING, described=STRING_MAP)),
    active=array(ref("Alert")),
    transitions=array(ref("Transition")),
    recovery=array(
        obj(
            binding={"type": "object", "description": "the binding as check-config shows it"},
            budget={"oneOf": [ref("BudgetState"), {"type": "null"}]},
            runs=array(ref("RecoveryResult")),
            succeeded=INTEGER,
            failed=INTEGER,
            skipped=INTEGER,
            success_rate=_type("number", nullable=True),
        )
    ),
    evidence={
        "oneOf": [
            obj(fingerprint=STRING, at=TIME, lines=array(STRING), data=_type("object", True)),
            {"type": "null"},
        ]
    },
    sections=array(
        obj(
            title={"enum": ["Meaning", "Impact", "Diagnosis", "Mitigation"]},
            blocks={
                **array(
                    obj(
                        kind={"enum": ["text", "list", "commands", "output"]},
                        caption=NULLABLE_STRING,
                        lines={**array(STRING), "minItems": 1},
                    )
                ),
                "minItems": 1,
            },
        )
    ),
)
