"""The Nagios-plugin runner against real small shell scripts, and its output parser on
captured plugin output."""

from __future__ import annotations

import asyncio
import os
import select
import stat
import time
from pathlib import Path

import psutil
import pytest
from structlog.testing import capture_logs

from opswatch.collectors.command import (
    CommandCollector,
    CommandTarget,
    Perfdata,
    PerfDatum,
    PluginOutput,
    parse_perfdata,
    parse_plugin_output,
    plugin_status,
)
from opswatch.config import ConfigError, Env
from opswatch.model import Sample
from opswatch.rules.builtin import builtin_rules
from opswatch.rules.evaluator import RuleEvaluator
from tests.conftest import ManualClock


def plugin(directory: Path, body: str, name: str = "check_test") -> str:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def collector(clock: ManualClock, *argv: str, timeout: float = 5.0) -> CommandCollector:
    return CommandCollector(CommandTarget("test", tuple(argv), timeout), clock)


def summary_of(samples: list[Sample]) -> str:
    """The plugin's text as the status sample carries it to the rule's summary."""
    (status,) = [s for s in samples if s.metric == "command.status"]
    return status.annotations["output"]


def values(samples: list[Sample]) -> dict[str, float]:
    return {s.metric: s.value for s in samples if s.metric != "command.perf"}


def has_exited(pid: int, timeout: float) -> bool:
    """True once ``pid`` has exited (a zombie counts: PID 1 may not reap orphans here)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
        return bool(readable)
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("code", "summary", "up"),
    [
        (0, "OK - all good", 1.0),
        (1, "WARNING - disk at 85%", 1.0),
        (2, "CRITICAL - disk at 97%", 1.0),
        (3, "UNKNOWN - cannot read /proc", 0.0),
    ],
)
async def test_maps_exit_code_to_status_and_keeps_summary(
    tmp_path: Path, clock: ManualClock, code: int, summary: str, up: float
) -> None:
    check = collector(clock, plugin(tmp_path, f"echo '{summary}'\nexit {code}"))

    samples = await check.collect()

    assert values(samples) == {"command.up": up, "command.status": float(code)}
    assert all(s.check == "command:test" and s.at == clock.now for s in samples)
    assert all(s.labels == {"target": "test"} for s in samples)
    assert summary_of(samples) == summary


async def test_exposes_perfdata_from_first_line_and_long_text(
    tmp_path: Path, clock: ManualClock
) -> None:
    script = plugin(
        tmp_path,
        """cat <<'OUT'
DISK OK - free space: / 3326 MB (56%); | '/ root'=2643MB;5948;5958;0;5968 time=0.012s
/ 15272 MB (77%);
/boot 68 MB (69%); | /boot=68MB;88;93;0;98
inodes=12%;80;90
OUT""",
    )
    check = collector(clock, script)

    samples = await check.collect()

    perf = {
        (s.labels["label"], s.labels["uom"]): s.value for s in samples if s.metric == "command.perf"
    }
    assert perf == {
        ("/ root", "MB"): 2643.0,
        ("time", "s"): 0.012,
        ("/boot", "MB"): 68.0,
        ("inodes", "%"): 12.0,
    }
    assert values(samples) == {"command.up": 1.0, "command.status": 0.0}
    assert summary_of(samples) == "DISK OK - free space: / 3326 MB (56%);"


async def test_passes_arguments_without_a_shell(tmp_path: Path, clock: ManualClock) -> None:
    script = plugin(tmp_path, 'echo "OK - $# args: $1|$2"')
    check = collector(clock, script, "a b", "$HOME;*")

    samples = await check.collect()

    assert summary_of(samples) == "OK - 2 args: a b"


async def test_kills_and_reaps_a_plugin_that_exceeds_its_timeout(
    tmp_path: Path, clock: ManualClock
) -> None:
    pidfile = tmp_path / "pid"
    check = collector(clock, plugin(tmp_path, f"echo $$ > {pidfile}\nexec sleep 60"), timeout=0.2)

    started = time.perf_counter()
    samples = await asyncio.wait_for(check.collect(), 5)
    elapsed = time.perf_counter() - started

    assert values(samples) == {"command.up": 0.0, "command.status": 3.0}
    assert summary_of(samples).endswith("timed out after 0.2s")
    assert elapsed < 2.0
    assert not psutil.pid_exists(int(pidfile.read_text()))  # killed and reaped: no zombie


async def test_kills_the_plugins_background_children_on_timeout(
    tmp_path: Path, clock: ManualClock
) -> None:
    childfile = tmp_path / "child"
    script = plugin(tmp_path, f"sleep 60 &\necho $! > {childfile}\nwait")
    check = collector(clock, script, timeout=0.2)

    await asyncio.wait_for(check.collect(), 5)

    assert has_exited(int(childfile.read_text()), timeout=2.0)


async def test_kills_the_plugin_when_collect_is_cancelled(
    tmp_path: Path, clock: ManualClock
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    check = collector(clock, plugin(tmp_path, f"echo $$ > {fifo}\nexec sleep 60"), timeout=30)
    task = asyncio.create_task(check.collect())

    pid = int(await asyncio.wait_for(asyncio.to_thread(fifo.read_text), 5))  # plugin started
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)

    assert not psutil.pid_exists(pid)


@pytest.mark.parametrize(
    ("body", "summary_start"),
    [
        ("echo 'OK but odd'\nexit 4", "UNKNOWN: "),
        ("kill -9 $$", "UNKNOWN: "),
    ],
)
async def test_treats_out_of_range_exit_and_signals_as_unknown_and_down(
    tmp_path: Path, clock: ManualClock, body: str, summary_start: str
) -> None:
    check = collector(clock, plugin(tmp_path, body))

    samples = await check.collect()

    assert values(samples) == {"command.up": 0.0, "command.status": 3.0}
    assert summary_of(samples).startswith(summary_start)


async def test_reports_unknown_when_program_is_missing(tmp_path: Path, clock: ManualClock) -> None:
    check = collector(clock, str(tmp_path / "check_missing"), "-w", "1")

    samples = await check.collect()

    assert values(samples) == {"command.up": 0.0, "command.status": 3.0}
    assert summary_of(samples).startswith("UNKNOWN: cannot run ")


async def test_uses_stderr_when_stdout_is_empty_and_marks_silence(
    tmp_path: Path, clock: ManualClock
) -> None:
    noisy = collector(clock, plugin(tmp_path, "echo 'CRITICAL - broke' >&2\nexit 2", "a"))
    silent = collector(clock, plugin(tmp_path, "exit 0", "b"))

    noisy_samples = await noisy.collect()
    silent_samples = await silent.collect()

    assert (summary_of(noisy_samples), summary_of(silent_samples)) == (
        "CRITICAL - broke",
        "(no output)",
    )


async def test_hides_opswatch_variables_from_the_plugin(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSWATCH_SLACK_TOKEN", "xoxb-secret")
    monkeypatch.setenv("PLUGIN_VISIBLE", "yes")
    check = collector(
        clock, plugin(tmp_path, 'echo "OK ${OPSWATCH_SLACK_TOKEN:-hidden} $PLUGIN_VISIBLE"')
    )

    samples = await check.collect()

    assert summary_of(samples) == "OK hidden yes"


async def test_plugins_run_under_the_c_locale_keeping_the_rest_of_the_environment(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LANG", "de_DE.UTF-8")
    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")
    monkeypatch.setenv("PLUGIN_VISIBLE", "yes")
    check = collector(clock, plugin(tmp_path, 'echo "OK $LC_ALL $LANG $PLUGIN_VISIBLE"'))

    samples = await check.collect()

    assert summary_of(samples) == "OK C de_DE.UTF-8 yes"


async def test_a_perfdata_value_that_does_not_parse_is_logged_once_without_its_value(
    tmp_path: Path, clock: ManualClock
) -> None:
    check = collector(
        clock,
        plugin(tmp_path, "echo 'TCP OK - 0,000 second response time|time=0,000128s;;;0 ok=1'"),
    )

    with capture_logs() as logs:
        first = await check.collect()
        await check.collect()

    assert [(s.labels.get("label"), s.value) for s in first if s.metric == "command.perf"] == [
        ("ok", 1.0)
    ]
    unparsed = [e for e in logs if e["event"] == "command_perfdata_unparsed"]
    assert unparsed == [
        {
            "event": "command_perfdata_unparsed",
            "log_level": "warning",
            "check": "command:test",
            "label": "time",
        }
    ]


async def test_the_plugins_first_line_is_the_alert_summary_without_its_arguments(
    tmp_path: Path, clock: ManualClock
) -> None:
    script = plugin(tmp_path, 'echo "SWAP CRITICAL - 0% free (login $2 refused)|swap=0MB"\nexit 2')
    check = collector(clock, script, "-p", "hunter2secret")
    rule = next(r for r in builtin_rules(Env({}), 30) if r.name == "command_status")
    evaluator = RuleEvaluator([rule])

    evaluation = evaluator.evaluate(check.check, await check.collect())

    (finding,) = evaluation.findings
    assert finding.summary == "command:test: SWAP CRITICAL - 0% free (login *** refused)"
    assert finding.labels == {"target": "test"}  # the text is not part of the alert's identity


async def test_a_long_first_line_is_cut_short_in_the_summary(
    tmp_path: Path, clock: ManualClock
) -> None:
    check = collector(clock, plugin(tmp_path, f"echo 'WARNING {'x' * 500}'\nexit 1"))

    text = summary_of(await check.collect())

    assert len(text) == 200
    assert text.startswith("WARNING xxx")
    assert text.endswith("…")


def test_a_quoted_comma_stays_inside_its_command(tmp_path: Path, clock: ManualClock) -> None:
    script = plugin(tmp_path, "echo OK")
    (ldap, other) = CommandCollector.from_env(
        Env(
            {"OPSWATCH_COMMAND_TARGETS": f'ldap={script} -b "dc=example,dc=com" -3,other={script}'}
        ),
        clock,
    )
    assert isinstance(ldap, CommandCollector)
    assert ldap.target.argv == (script, "-b", "dc=example,dc=com", "-3")
    assert other.check == "command:other"


# --- pure parsing on captured plugin output -------------------------------------------------

CHECK_PING = (
    "PING OK - Packet loss = 0%, RTA = 0.05 ms|rta=0.055000ms;3000.000000;5000.000000;0.000000"
    " pl=0%;80;100;0\n"
)
CHECK_HTTP = (
    "HTTP OK: HTTP/1.1 200 OK - 612 bytes in 0.001 second response time |"
    "time=0.000987s;;;0.000000;10.000000 size=612B;;;0\n"
)
CHECK_LOAD = (
    "OK - load average: 0.15, 0.10, 0.05|load1=0.150;15.000;30.000;0; "
    "load5=0.100;10.000;25.000;0; load15=0.050;5.000;20.000;0;\n"
)


def test_parses_check_ping_output() -> None:
    assert parse_plugin_output(CHECK_PING) == PluginOutput(
        summary="PING OK - Packet loss = 0%, RTA = 0.05 ms",
        long_text="",
        perfdata=(
            PerfDatum("rta", 0.055, "ms", "3000.000000", "5000.000000", "0.000000"),
            PerfDatum("pl", 0.0, "%", "80", "100", "0"),
        ),
    )


def test_parses_check_http_output_with_empty_thresholds() -> None:
    output = parse_plugin_output(CHECK_HTTP)

    assert output.perfdata == (
        PerfDatum("time", 0.000987, "s", "", "", "0.000000", "10.000000"),
        PerfDatum("size", 612.0, "B", "", "", "0"),
    )


def test_parses_trailing_semicolons_of_check_load() -> None:
    output = parse_plugin_output(CHECK_LOAD)

    assert [(d.label, d.value, d.max) for d in output.perfdata] == [
        ("load1", 0.15, ""),
        ("load5", 0.1, ""),
        ("load15", 0.05, ""),
    ]


def test_keeps_long_text_and_perfdata_spread_over_lines() -> None:
    output = parse_plugin_output(
        "DISK OK | /=2643MB;5948;5958;0;5968\n/ 15272 MB (77%);\n/boot 68 MB (69%); | "
        "/boot=68MB;88;93;0;98\n/home=69357MB;253404;253409;0;253414\n"
    )

    assert output.summary == "DISK OK"
    assert output.long_text == "/ 15272 MB (77%);\n/boot 68 MB (69%);"
    assert [d.label for d in output.perfdata] == ["/", "/boot", "/home"]


def test_unquotes_labels_with_spaces_and_doubled_quotes() -> None:
    assert parse_perfdata("'Free Space'=12.5%;20:;10: 'it''s'=3c").data == (
        PerfDatum("Free Space", 12.5, "%", "20:", "10:"),
        PerfDatum("it's", 3.0, "c"),
    )


def test_skips_undetermined_and_malformed_items_but_keeps_the_rest() -> None:
    assert parse_perfdata("a=U;1;2 junk b=1,5 =3 c=-1.5e2 'open=9") == Perfdata(
        (PerfDatum("c", -150.0),), ("b",)
    )


def test_output_without_perfdata_has_none() -> None:
    assert parse_plugin_output("OK - fine") == PluginOutput("OK - fine", "", ())


@pytest.mark.parametrize(("code", "status"), [(0, 0), (1, 1), (2, 2), (3, 3), (4, 3), (-9, 3)])
def test_maps_exit_codes_to_nagios_status(code: int, status: int) -> None:
    assert plugin_status(code) == status


# --- configuration --------------------------------------------------------------------------


def test_builds_targets_with_commas_and_quotes_in_arguments(clock: ManualClock) -> None:
    env = Env(
        {
            "OPSWATCH_COMMAND_TARGETS": (
                "load=/bin/echo -w 15,10,5 -c 30,25,20,"
                "web-site=/bin/true -H example.com -s 'Welcome home'"
            ),
            "OPSWATCH_COMMAND_WEB_SITE_TIMEOUT": "3s",
        }
    )

    collectors = CommandCollector.from_env(env, clock)

    assert [c.check for c in collectors] == ["command:load", "command:web-site"]
    load, web = collectors
    assert isinstance(load, CommandCollector)
    assert isinstance(web, CommandCollector)
    assert load.target.argv[1:] == ("-w", "15,10,5", "-c", "30,25,20")
    assert web.target.argv[-2:] == ("-s", "Welcome home")
    assert web.describe() == {
        "program": "/bin/true",
        "arguments": "4",
        "timeout": "3s",
    }
    assert load.describe()["timeout"] == "10s"


def test_reads_targets_from_a_file_one_per_line(tmp_path: Path, clock: ManualClock) -> None:
    targets = tmp_path / "commands"
    targets.write_text("db=/bin/true -p s3cret\nmail=/bin/false\n")

    collectors = CommandCollector.from_env(
        Env({"OPSWATCH_COMMAND_TARGETS_FILE": str(targets)}), clock
    )

    assert [c.check for c in collectors] == ["command:db", "command:mail"]
    assert "s3cret" not in repr([c.describe() for c in collectors])


def test_rejects_a_program_that_does_not_exist(clock: ManualClock) -> None:
    env = Env({"OPSWATCH_COMMAND_TARGETS": "x=/usr/lib/nagios/plugins/check_nothing -w 1"})
    with pytest.raises(ConfigError) as excinfo:
        CommandCollector.from_env(env, clock)
    assert excinfo.value.variable == "OPSWATCH_COMMAND_TARGETS"
    assert "not an executable" in str(excinfo.value)


@pytest.mark.parametrize(
    "value", ["x=/bin/check 'unbalanced", "x=", "/bin/check_x", "x=/a,x=/b", "x=''"]
)
def test_rejects_malformed_targets_naming_the_variable(value: str, clock: ManualClock) -> None:
    with pytest.raises(ConfigError) as excinfo:
        CommandCollector.from_env(Env({"OPSWATCH_COMMAND_TARGETS": value}), clock)

    assert excinfo.value.variable == "OPSWATCH_COMMAND_TARGETS"


def test_rejects_malformed_timeout_naming_the_per_target_variable(clock: ManualClock) -> None:
    env = Env({"OPSWATCH_COMMAND_TARGETS": "x=/bin/true", "OPSWATCH_COMMAND_X_TIMEOUT": "-1"})

    with pytest.raises(ConfigError) as excinfo:
        CommandCollector.from_env(env, clock)

    assert excinfo.value.variable == "OPSWATCH_COMMAND_X_TIMEOUT"
