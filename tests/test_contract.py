"""The plugin contract kit: what every collector, notifier and recovery action must do.

Parametrized over the registries (``COLLECTORS``, ``NOTIFIERS``, ``ACTIONS``), so a new plugin
is held to the contract by its registry line alone; a plugin the kit has no configuration for
fails :func:`test_the_kit_configures_every_registered_plugin` instead of going unchecked.

- **Names.** The registry key is the class's ``name``, its module's name and its environment
  prefix: every variable a plugin reads is ``OPSWATCH_<KEY>_...`` (actions:
  ``OPSWATCH_RECOVERY_<KEY>_...``), apart from a few shared ones listed here with a reason.
- **An outage is data.** A network collector pointed at a closed local port returns
  ``<kind>.up = 0`` (and nothing else) instead of raising.
- **Errors are classified.** A notifier's ``NotifyError`` is permanent for 4xx (and SMTP 5xx)
  and transient for 5xx, 408, 429 and a closed port (and SMTP 4xx); an action's
  ``RecoveryError`` is transient when its endpoint is down.
- **No secret in any output.** Each plugin is configured with :data:`MARKER` in its URL
  password, token, webhook path, header or command environment; the marker must not appear
  in ``str()`` or ``repr()`` of an error, in samples, ``describe()``, ``plan()`` or any
  captured log line.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from structlog.testing import capture_logs

from opswatch.collectors import COLLECTORS
from opswatch.config import PREFIX, Env
from opswatch.notifiers import NOTIFIERS
from opswatch.notifiers.base import Notifier, NotifyError
from opswatch.notifiers.render import render
from opswatch.recovery import ACTIONS
from opswatch.recovery.base import ActionContext, RecoveryError
from opswatch.recovery.config import RECOVERY_PREFIX, RESERVED, parse_bindings
from tests.conftest import ManualClock, free_port
from tests.notifiers.conftest import T0, transition
from tests.peers import Receiver, Reply

#: a secret value that must never be shown
MARKER = "Mark3rS3cret"
#: no plugin call in this kit may take longer (the peers are all local)
DEADLINE_S = 10.0


def foreign(read: set[str], own: str, shared: Mapping[str, str] | None = None) -> list[str]:
    """The variables in ``read`` outside the prefix ``own`` and the ``shared`` ones (a secret's
    ``NAME_FILE`` counts as ``NAME``)."""
    return sorted(
        v for v in read if not v.startswith(own) and v.removesuffix("_FILE") not in (shared or {})
    )


def visible(*things: object) -> str:
    """Everything a user or a log reader could see of ``things``, as one string."""
    return " ".join(f"{thing!s} {thing!r}" for thing in things)


# --- collectors -------------------------------------------------------------------------------

#: each collector's environment, given a local port and the secret to put in its URL
COLLECTOR_ENV: Mapping[str, Callable[[int, str], dict[str, str]]] = {
    "command": lambda _port, _secret: {"OPSWATCH_COMMAND_TARGETS": "t=/bin/true"},
    "file": lambda _port, _secret: {"OPSWATCH_FILE_TARGETS": "t=/nonexistent/*.dump"},
    "heartbeat": lambda _port, secret: {
        "OPSWATCH_HEARTBEAT_TARGETS": "t=1d/1h",
        "OPSWATCH_HEARTBEAT_T_KEY": f"key-{secret}-0123456789",
    },
    "host": lambda _port, _secret: {},
    "http": lambda port, secret: {
        "OPSWATCH_HTTP_TARGETS": f"t=http://user:{secret}@127.0.0.1:{port}/health?token={secret}"
    },
    "postgres": lambda port, secret: {
        "OPSWATCH_POSTGRES_TARGETS": f"t=postgresql://postgres:{secret}@127.0.0.1:{port}/test"
    },
    "process": lambda _port, _secret: {"OPSWATCH_PROCESS_TARGETS": "t=name:no-such-process"},
    "prometheus": lambda port, secret: {
        "OPSWATCH_PROMETHEUS_TARGETS": f"t=http://user:{secret}@127.0.0.1:{port}/metrics"
    },
    "rabbitmq": lambda port, secret: {
        "OPSWATCH_RABBITMQ_TARGETS": f"t=http://guest:{secret}@127.0.0.1:{port}"
    },
    "redis": lambda port, secret: {
        "OPSWATCH_REDIS_TARGETS": f"t=redis://default:{secret}@127.0.0.1:{port}/0"
    },
    "tcp": lambda port, _secret: {"OPSWATCH_TCP_TARGETS": f"t=127.0.0.1:{port}"},
}

#: the line a network collector logs when its target is down: (event, error class)
OUTAGE_LOG: Mapping[str, tuple[str, str] | None] = {
    "http": ("http_check_failed", "ClientConnectorError"),
    "postgres": ("collector_target_down", "ConnectionRefusedError"),
    "prometheus": ("prometheus_scrape_failed", "ClientConnectorError"),
    "rabbitmq": ("collector_target_down", "ClientConnectorError"),
    "redis": ("collector_target_down", "ConnectionError"),
    "tcp": None,  # tcp.py logs no line for an outage: the up sample is all it reports
}

#: collectors that measure this machine, not a peer at a port
NO_PORT = {
    "command": "runs a local program: no port to be closed",
    "file": "matches local files: no port to be closed",
    "heartbeat": "judges pings kept in the state store: no port to be closed",
    "host": "measures this machine: no port to be closed",
    "process": "matches local processes: no port to be closed",
}


def network_collectors() -> list[Any]:
    return [
        pytest.param(key, id=key, marks=pytest.mark.skip(reason=NO_PORT[key]))
        if key in NO_PORT
        else pytest.param(key, id=key)
        for key in sorted(COLLECTORS)
    ]


@pytest.mark.parametrize("key", sorted(COLLECTORS))
def test_a_collector_is_named_after_its_registry_key_module_and_env_prefix(
    key: str, clock: ManualClock
) -> None:
    plugin = COLLECTORS[key]
    env = Env(COLLECTOR_ENV[key](free_port(), MARKER))

    collectors = plugin.from_env(env, clock)

    assert plugin.name == key
    assert plugin.__module__ == f"opswatch.collectors.{key}"
    assert len(collectors) == 1
    assert all(type(c) is plugin for c in collectors)
    assert env.read  # the kit sees what the plugin reads: the next line is not vacuous
    assert foreign(env.read, f"{PREFIX}{key.upper()}_") == []


@pytest.mark.parametrize("key", network_collectors())
async def test_a_closed_port_gives_up_zero_and_shows_no_secret(
    key: str, clock: ManualClock
) -> None:
    [collector] = COLLECTORS[key].from_env(Env(COLLECTOR_ENV[key](free_port(), MARKER)), clock)
    try:
        with capture_logs() as logs:
            async with asyncio.timeout(DEADLINE_S):
                samples = await collector.collect()
        with capture_logs() as later_logs:
            async with asyncio.timeout(DEADLINE_S):
                again = await collector.collect()
    finally:
        await collector.close()

    assert [(s.metric, s.value) for s in samples] == [(f"{key}.up", 0.0)]
    assert [(s.metric, s.value) for s in again] == [(f"{key}.up", 0.0)]
    [up] = samples
    assert up.check == collector.check == f"{key}:t"
    assert up.labels["target"] == "t"
    assert up.at == clock.now
    expected = OUTAGE_LOG[key]
    assert [(e["event"], e["check"]) for e in logs] == (
        [] if expected is None else [(expected[0], collector.check)]
    )
    assert all(e["error"].startswith(expected[1]) for e in logs if expected is not None)
    assert MARKER not in visible(samples, again, collector.describe(), logs, later_logs)


# --- notifiers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpCase:
    """One way to configure an HTTP notifier against a local peer at ``base``."""

    kind: str
    environ: Callable[[str], dict[str, str]]
    #: what a peer would quote back of the request in an error body (the secret in it)
    echo: str
    #: how errors name the destination, masked (``{base}`` is the peer's URL)
    shown: str


HTTP_CASES = {
    "webhook": HttpCase(
        "webhook",
        lambda base: {
            "OPSWATCH_WEBHOOK_URL": f"{base}/hooks/{MARKER}",
            "OPSWATCH_WEBHOOK_SECRET": f"hmac-{MARKER}",
            "OPSWATCH_WEBHOOK_HEADERS": f"Authorization: Bearer {MARKER}-header",
        },
        echo=f"no such hook /hooks/{MARKER} for Authorization: Bearer {MARKER}-header",
        shown="webhook {base}/***",
    ),
    "slack-api": HttpCase(
        "slack",
        lambda base: {
            "OPSWATCH_SLACK_TOKEN": f"xoxb-{MARKER}",
            "OPSWATCH_SLACK_CHANNEL": "#ops",
            "OPSWATCH_SLACK_API_URL": f"{base}/api",
        },
        echo=f"bad token xoxb-{MARKER}",
        shown="slack chat.postMessage to #ops",
    ),
    "slack-webhook": HttpCase(
        "slack",
        lambda base: {"OPSWATCH_SLACK_WEBHOOK_URL": f"{base}/services/T000/{MARKER}"},
        echo=f"channel_not_found for /services/T000/{MARKER}",
        shown="slack webhook {base}/***",
    ),
}
SMTP_USER = "alerts"
#: variables every notifier reads besides its own, and why
NOTIFIER_SHARED = {
    f"{PREFIX}RUNBOOK_URL": "the runbook link every medium renders (notifiers/render.py)",
    # the one-click ack link every medium renders (notifiers/acklinks.py)
    f"{PREFIX}EXTERNAL_URL": "the base of the ack links",
    f"{PREFIX}ACK_LINK_KEY": "their signing key",
    f"{PREFIX}ACK_LINK_KEY_FILE": "their signing key, from a file",
    f"{PREFIX}ACK_LINK_TTL": "how long they stay valid",
}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A local HTTP peer (``tests.peers``) standing in for a webhook, Slack or a job runner."""
    peer = Receiver()
    await peer.start()
    yield peer
    await peer.stop()


def http_notifier(case: HttpCase, base: str) -> Notifier:
    (notifier,) = NOTIFIERS[case.kind].from_env(Env(case.environ(base)))
    return notifier


def email_environ(port: int) -> dict[str, str]:
    return {
        "OPSWATCH_EMAIL_SMTP_URL": f"smtp://{SMTP_USER}:{MARKER}@127.0.0.1:{port}",
        "OPSWATCH_EMAIL_FROM": "opswatch@example.com",
        "OPSWATCH_EMAIL_TO": "ops@example.com",
        "OPSWATCH_EMAIL_STARTTLS": "false",
        "OPSWATCH_EMAIL_TIMEOUT": "5s",
    }


def email_notifier(port: int) -> Notifier:
    (notifier,) = NOTIFIERS["email"].from_env(Env(email_environ(port)))
    return notifier


async def failed_send(notifier: Notifier) -> tuple[NotifyError, list[Any]]:
    """Send one notification that must fail; the error and the log lines of the attempt."""
    try:
        with capture_logs() as logs, pytest.raises(NotifyError) as caught:
            async with asyncio.timeout(DEADLINE_S):
                await notifier.send(render([transition()], T0))
    finally:
        await notifier.close()
    return caught.value, logs


def test_the_kit_configures_every_registered_plugin() -> None:
    assert set(COLLECTOR_ENV) == set(COLLECTORS)
    assert set(OUTAGE_LOG) | set(NO_PORT) == set(COLLECTORS)
    assert {case.kind for case in HTTP_CASES.values()} | {"email"} == set(NOTIFIERS)
    assert set(ACTION_ARGS) == set(ACTIONS)


@pytest.mark.parametrize("key", sorted(NOTIFIERS))
def test_a_notifier_is_named_after_its_registry_key_module_and_env_prefix(key: str) -> None:
    plugin = NOTIFIERS[key]
    environs = [c.environ("http://127.0.0.1:1") for c in HTTP_CASES.values() if c.kind == key]
    if key == "email":
        environs.append(email_environ(1))

    assert plugin.name == key
    assert plugin.__module__ == f"opswatch.notifiers.{key}"
    assert plugin.from_env(Env({})) == []  # unconfigured: no channel
    for environ in environs:
        env = Env(environ)
        (notifier,) = plugin.from_env(env)
        assert type(notifier) is plugin
        assert notifier.channel.startswith(f"{key}:")
        assert MARKER not in visible(notifier.channel, notifier.describe())
        own = f"{PREFIX}{key.upper()}_"
        assert env.read
        assert foreign(env.read, own, NOTIFIER_SHARED) == []


#: (status, permanent): 4xx and redirects are permanent; 5xx, 408 and 429 transient
HTTP_STATUSES = [
    (400, True), (401, True), (403, True), (404, True), (410, True), (301, True),
    (408, False), (429, False), (500, False), (502, False), (503, False),
]  # fmt: skip


@pytest.mark.parametrize(("status", "permanent"), HTTP_STATUSES)
@pytest.mark.parametrize("case", sorted(HTTP_CASES))
async def test_an_http_notifier_classifies_the_status_and_quotes_no_secret(
    receiver: Receiver, case: str, status: int, permanent: bool
) -> None:
    config = HTTP_CASES[case]
    headers = {"Retry-After": "7"} if status == 429 else {}
    receiver.script(Reply(status, headers=headers, body=config.echo))

    error, logs = await failed_send(http_notifier(config, receiver.url))

    assert len(await receiver.wait_for(1)) == 1  # one attempt: the notifier does not retry
    assert error.permanent is permanent
    assert error.retry_after == (7.0 if status == 429 else None)
    assert f"HTTP {status}" in str(error)
    assert config.shown.format(base=receiver.url) in str(error)
    assert MARKER not in visible(error, logs)


@pytest.mark.parametrize("case", sorted(HTTP_CASES))
async def test_an_http_notifier_at_a_closed_port_is_transient_and_shows_no_secret(
    case: str,
) -> None:
    config = HTTP_CASES[case]
    base = f"http://127.0.0.1:{free_port()}"

    error, logs = await failed_send(http_notifier(config, base))

    assert error.permanent is False
    assert "cannot connect" in str(error)
    assert config.shown.format(base=base) in str(error)
    assert MARKER not in visible(error, logs)


@dataclass
class SmtpSink:
    """An aiosmtpd handler answering one stage (AUTH, RCPT or DATA) with a refusal."""

    refuse_auth: bool = False
    rcpt_reply: str | None = None
    data_reply: str | None = None

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> Any:
        return AuthResult(success=not self.refuse_auth, handled=False)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        return self.data_reply or "250 Message accepted"


@pytest.fixture
def smtp_sink() -> Iterator[tuple[SmtpSink, int]]:
    sink = SmtpSink()
    port = free_port()
    controller = Controller(
        sink,
        hostname="127.0.0.1",
        port=port,
        authenticator=sink.authenticate,
        auth_require_tls=False,  # a plain local sink: the password only crosses loopback
    )
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


#: (stage, reply, permanent, what the error says): SMTP 5xx is permanent, 4xx transient
SMTP_REFUSALS = [
    ("auth", "535", True, "SMTP 535"),
    ("rcpt", f"550 5.1.1 no such user ({MARKER})", True, "recipients refused"),
    ("rcpt", f"451 4.3.0 try again later ({MARKER})", False, "recipients refused"),
    ("data", f"554 5.6.0 message rejected ({MARKER})", True, "SMTP 554"),
    ("data", f"452 4.3.1 insufficient storage ({MARKER})", False, "SMTP 452"),
]


@pytest.mark.parametrize(("stage", "reply", "permanent", "says"), SMTP_REFUSALS)
async def test_email_classifies_the_smtp_reply_and_shows_no_secret(
    smtp_sink: tuple[SmtpSink, int], stage: str, reply: str, permanent: bool, says: str
) -> None:
    sink, port = smtp_sink
    if stage == "auth":
        sink.refuse_auth = True
    elif stage == "rcpt":
        sink.rcpt_reply = reply
    else:
        sink.data_reply = reply

    error, logs = await failed_send(email_notifier(port))

    assert error.permanent is permanent
    assert says in str(error)
    assert reply.split(maxsplit=1)[0] in str(error)
    assert f"email smtp://{SMTP_USER}:***@127.0.0.1:{port}" in str(error)
    assert MARKER not in visible(error, logs)


async def test_email_at_a_closed_port_is_transient_and_shows_no_secret() -> None:
    port = free_port()

    error, logs = await failed_send(email_notifier(port))

    assert error.permanent is False
    assert "cannot connect" in str(error)
    assert f"email smtp://{SMTP_USER}:***@127.0.0.1:{port}" in str(error)
    assert MARKER not in visible(error, logs)


# --- recovery actions -------------------------------------------------------------------------

BINDING = f"{RECOVERY_PREFIX}HTTP_DOWN"


@dataclass(frozen=True)
class ActionArgs:
    """A valid binding of one action: its arguments and the environment they need."""

    args: str
    environ: dict[str, str]


def _action_args(tmp: str, port: int) -> dict[str, ActionArgs]:
    true = shutil.which("true") or "/bin/true"
    return {
        "command": ActionArgs(
            true,
            {
                "OPSWATCH_RECOVERY_ALLOW": true,
                "OPSWATCH_RECOVERY_COMMAND_ENV": f"API_TOKEN={MARKER}",
            },
        ),
        "docker": ActionArgs(
            "restart:api", {"OPSWATCH_RECOVERY_DOCKER_SOCKET": f"{tmp}/no-engine.sock"}
        ),
        "files": ActionArgs(f"delete:7d:{tmp}/*.log", {"OPSWATCH_RECOVERY_FILES_DIRS": tmp}),
        "postgres": ActionArgs(
            "idle_in_transaction:10m",
            {
                "OPSWATCH_POSTGRES_TARGETS": f"api=postgresql://postgres:{MARKER}@127.0.0.1:{port}/test"
            },
        ),
        "process": ActionArgs("name:no-such-process", {}),
        "systemd": ActionArgs("restart:api.service", {}),
        "webhook": ActionArgs(
            "", {"OPSWATCH_RECOVERY_WEBHOOK_URL": f"http://127.0.0.1:{port}/job/{MARKER}/run"}
        ),
    }


#: the keys only; the arguments depend on a directory and a port, made per test
ACTION_ARGS = _action_args("/tmp", 1)
#: variables an action may read besides its own ``OPSWATCH_RECOVERY_<KEY>_...``, and why
ACTION_SHARED = {
    f"{RECOVERY_PREFIX}ALLOW": "the one allow-list of programs recovery may start",
    f"{PREFIX}POSTGRES_TARGETS": "the postgres collector's DSNs, reused so they are set once",
}
#: actions whose endpoint can be down (the others act on this machine)
NO_ENDPOINT = {
    "command": "starts a local program: no endpoint to be down",
    "files": "cleans local files: no endpoint to be down",
    "process": "signals local processes: no endpoint to be down",
    "systemd": "runs systemctl through the injected runner: no endpoint to be down",
}


def context() -> ActionContext:
    return ActionContext(rule="http_down", target="api", check="http:api", timeout=5.0)


@pytest.mark.parametrize("key", sorted(ACTIONS))
def test_an_action_is_named_after_its_registry_key_module_binding_and_env_prefix(
    key: str, tmp_path: Path
) -> None:
    plugin = ACTIONS[key]
    config = _action_args(str(tmp_path), free_port())[key]
    env = Env(config.environ)

    action = plugin.parse(BINDING, config.args, env)
    [binding] = parse_bindings(
        Env({**config.environ, BINDING: f"{key}:{config.args}"}),
        [*config.environ, BINDING],
        ["http_down"],
    )

    assert plugin.name == key
    assert plugin.__module__ == f"opswatch.recovery.{key}"
    assert type(action) is plugin
    assert type(binding.action) is plugin  # the binding's first word picks the action
    assert binding.action.describe()["action"] == key
    own = f"{RECOVERY_PREFIX}{key.upper()}_"
    assert foreign(env.read, own, ACTION_SHARED) == []
    # its own settings are reserved: never mistaken for a binding of a rule
    own_settings = {v.removeprefix(RECOVERY_PREFIX) for v in env.read if v.startswith(own)}
    assert own_settings <= RESERVED
    assert MARKER not in visible(
        action.describe(), action.plan(context()), action.target(context())
    )


def actions_with_an_endpoint() -> list[Any]:
    return [
        pytest.param(key, id=key, marks=pytest.mark.skip(reason=NO_ENDPOINT[key]))
        if key in NO_ENDPOINT
        else pytest.param(key, id=key)
        for key in sorted(ACTIONS)
    ]


@pytest.mark.parametrize("key", actions_with_an_endpoint())
async def test_an_action_whose_endpoint_is_down_fails_transiently_and_shows_no_secret(
    key: str, tmp_path: Path
) -> None:
    config = _action_args(str(tmp_path), free_port())[key]
    action = ACTIONS[key].parse(BINDING, config.args, Env(config.environ))

    with capture_logs() as logs, pytest.raises(RecoveryError) as caught:
        async with asyncio.timeout(DEADLINE_S):
            await action.run(context())

    assert caught.value.transient is True
    assert MARKER not in visible(caught.value, logs)


@pytest.mark.parametrize(("status", "permanent"), HTTP_STATUSES)
async def test_the_webhook_action_classifies_the_status_and_shows_no_secret(
    receiver: Receiver, status: int, permanent: bool
) -> None:
    url = f"{receiver.url}/job/{MARKER}/run"
    action = ACTIONS["webhook"].parse(BINDING, url, Env({}))
    receiver.script(Reply(status, body=f"no job /job/{MARKER}/run"))

    with capture_logs() as logs, pytest.raises(RecoveryError) as caught:
        async with asyncio.timeout(DEADLINE_S):
            await action.run(context())

    assert caught.value.transient is not permanent
    assert f"HTTP {status}" in str(caught.value)
    assert MARKER not in visible(caught.value, logs)
