"""Every built-in rule's runbook: four sections, none empty, in JSON, Markdown and HTML;
the wording table and its fallbacks; the diagnosis commands with the secrets masked."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from opswatch.codec import SCHEMAS
from opswatch.daemon.configure import AppConfig, load_config
from opswatch.model import Severity
from opswatch.notifiers.routing import META_RULE
from opswatch.rules.builtin import BUILTIN
from opswatch.runbooks.build import TITLES, LiveState, build, find_rule
from opswatch.runbooks.render import markdown, page, runbook_to_json
from opswatch.runbooks.wording import GENERIC, WORDING, wording_for
from tests.conftest import ManualClock
from tests.notifiers.conftest import transition
from tests.runbooks.conftest import PASSWORD, environ

BUILTIN_NAMES = [spec.name for spec in BUILTIN]


def _conforms(value: Any) -> list[str]:
    validator = Draft202012Validator({**SCHEMAS["Runbook"], "components": {"schemas": SCHEMAS}})
    return [error.message for error in validator.iter_errors(value)]


class _Text(HTMLParser):
    """The text of each ``<section>`` of a page, and every tag and attribute seen."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.tags: set[str] = set()
        self.attributes: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)
        if tag == "section":
            self.sections.append("")

    def handle_data(self, data: str) -> None:
        if self.sections:
            self.sections[-1] += data


@pytest.mark.parametrize("rule", BUILTIN_NAMES)
def test_every_builtin_rule_has_a_runbook_with_four_non_empty_sections(
    rule: str, config: AppConfig, clock: ManualClock
) -> None:
    found = find_rule(config, rule)
    assert found is not None
    runbook = build(config, found, LiveState(), clock())

    assert tuple(s.title for s in runbook.sections) == TITLES
    for section in runbook.sections:
        assert section.blocks, section.title
        assert all(
            block.lines and all(line.strip() for line in block.lines) for block in section.blocks
        )
    encoded = runbook_to_json(runbook)
    assert _conforms(json.loads(json.dumps(encoded))) == []
    text = markdown(runbook)
    bodies = re.split(r"^## .*$", text, flags=re.M)[1:]
    assert re.findall(r"^## (.*)$", text, flags=re.M) == list(TITLES)
    assert all(body.strip() for body in bodies)
    parsed = _Text()
    parsed.feed(page(runbook))
    assert len(parsed.sections) == 4
    assert all(section.strip() for section in parsed.sections)
    # self-contained: no script, no external asset, no link to load
    assert not parsed.tags & {"script", "link", "img", "iframe"}
    assert not parsed.attributes & {"src", "href"}
    assert PASSWORD not in json.dumps(encoded) + text + page(runbook)


def test_every_builtin_rule_and_the_notifications_rule_have_their_own_wording() -> None:
    assert set(BUILTIN_NAMES) | {META_RULE} == set(WORDING)


def test_a_narrowing_user_rule_takes_its_builtins_wording_and_another_the_generic_one(
    tmp_path: Path, clock: ManualClock
) -> None:
    config = load_config(
        {
            **environ(tmp_path),
            "OPSWATCH_RULE_DATA_FULL": 'disk_full{mountpoint="/data"} warning=95',
            "OPSWATCH_RULE_ORDERS_IDLE": 'rabbitmq.consumers{queue="orders"} < 1 for 5m',
        }
    )
    data_full, orders = find_rule(config, "data_full"), find_rule(config, "orders_idle")
    assert data_full is not None
    assert orders is not None

    narrowed = build(config, data_full, LiveState(), clock())
    user = build(config, orders, LiveState(), clock())

    assert narrowed.meaning == WORDING["disk_full"].meaning
    assert user.meaning == GENERIC.meaning
    assert user.origin == "OPSWATCH_RULE_ORDERS_IDLE"
    text = markdown(user)
    assert "fires after 5 min" in text
    assert "rabbitmq-diagnostics -q status" in text
    assert wording_for("anything", ["host.cpu_percent"]) == WORDING["cpu_high"]


@pytest.mark.parametrize(
    ("rule", "commands"),
    [
        ("postgres_down", ["pg_isready -h db.example -p 5433"]),
        (
            "postgres_long_query",
            ['psql -h db.example -p 5433 -U app -d shop -c "SELECT pid', "<> 'idle'"],
        ),
        ("redis_memory_high", ["redis-cli -h cache.example -p 6380 info memory"]),
        ("rabbitmq_queue_deep", ["rabbitmqctl list_queues name messages_ready consumers"]),
        ("disk_full", ["df -h /"]),
        ("http_down", ["curl -sS -o /dev/null -w '%{http_code}", "https://ops:***@api.example"]),
        ("tls_expiry", ["openssl s_client -connect api.example:8443 -servername api.example"]),
        ("tcp_down", ["nc -zv -w 5 mail.example 25"]),
        ("process_down", ["pgrep -a -x nginx"]),
        ("backup_stale", ["ls -lt -- /var/backups | head"]),
    ],
)
def test_diagnosis_commands_fit_the_collector_and_hold_no_password(
    rule: str, commands: list[str], config: AppConfig, clock: ManualClock
) -> None:
    found = find_rule(config, rule)
    assert found is not None
    diagnosis = build(config, found, LiveState(), clock()).sections[2]
    (block,) = [b for b in diagnosis.blocks if b.kind == "commands"]
    shown = "\n".join(block.lines)

    for command in commands:
        assert command in shown
    assert PASSWORD not in shown


def test_a_rule_without_a_configured_target_says_it_cannot_fire(
    tmp_path: Path, clock: ManualClock
) -> None:
    config = load_config({"OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3")})
    found = find_rule(config, "redis_down")
    assert found is not None

    text = markdown(build(config, found, LiveState(), clock()))

    assert "No configured check produces redis samples: this rule cannot fire now." in text


def test_commands_cover_the_firing_target_first_and_at_most_twenty_targets(
    tmp_path: Path, clock: ManualClock
) -> None:
    ports = ",".join(f"t{n}=127.0.0.1:{1000 + n}" for n in range(25))
    config = load_config(
        {"OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3"), "OPSWATCH_TCP_TARGETS": ports}
    )
    found = find_rule(config, "tcp_down")
    assert found is not None
    firing = transition("tcp_down", check="tcp:t24", severity=Severity.CRITICAL).alert

    runbook = build(config, found, LiveState(active=[firing]), clock())

    (block,) = [b for b in runbook.sections[2].blocks if b.kind == "commands"]
    assert block.lines[0] == "nc -zv -w 5 127.0.0.1 1024"
    assert len(block.lines) == 21
    assert block.lines[-1] == "# and 5 more targets: see Meaning"
    assert len(runbook.targets) == 25
