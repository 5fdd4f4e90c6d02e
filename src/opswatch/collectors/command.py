"""Run Nagios-compatible check plugins: exit code -> status, output -> summary and perfdata.

Environment
-----------
``OPSWATCH_COMMAND_TARGETS`` (or ``OPSWATCH_COMMAND_TARGETS_FILE``, a file holding the value;
either one enables the collector)
    ``name=COMMAND LINE`` items, e.g. ``disk=/usr/lib/nagios/plugins/check_disk -w 20% -c 10%
    -p /,load=/usr/lib/nagios/plugins/check_load -w 15,10,5 -c 30,25,20``. A comma followed by
    ``name=`` (or a newline) starts the next item, except inside single or double quotes, so
    ``ldap=check_ldap -b "dc=example,dc=com"`` is one item. The command line is split like a
    POSIX shell would (``shlex``: quotes work) but no shell runs it: no pipes, globs or
    ``$VARS``. The value is treated as a secret (arguments often hold passwords): only the
    program and the argument count are ever displayed.
``OPSWATCH_COMMAND_<NAME>_TIMEOUT``
    Per-target timeout (``<NAME>`` upper-cased, ``-`` -> ``_``), default ``10s``. On timeout
    the plugin's whole process group gets SIGKILL and is reaped; the status is unknown.

The plugin runs in its own session with stdin from /dev/null and the daemon's environment
minus every ``OPSWATCH_*`` variable (they may hold secrets), with ``LC_ALL=C``: under another
locale plugins print decimal commas (``time=0,000128s``) that no perfdata parser reads.

Samples (labels ``{target}``)
-----------------------------
``command.status``  exit code 0/1/2/3 = ok/warning/critical/unknown; any other exit code,
                    a signal, a timeout or a failure to start = 3. Annotated ``output``: the
                    plugin's first line (before ``|``), at most 200 characters, each
                    command-line argument of 4 characters or more in it replaced by ``***``;
                    the ``command_status`` rule's summary.
``command.up``      1 when the plugin ran and exited 0, 1 or 2, else 0.
``command.perf``    one per performance datum, labels ``{target, label, uom}``: the value as
                    printed (``'label'=value[UOM];[warn];[crit];[min];[max]`` after ``|`` on
                    the first line or in the long text). ``U`` (undetermined) values are
                    skipped; a ``label=`` item whose value does not parse is logged once
                    (``command_perfdata_unparsed`` with check and label, not the value).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import structlog

from opswatch.collectors.base import Collector, up_sample
from opswatch.config import PREFIX, ConfigError, Env, target_variable
from opswatch.model import Clock, Sample
from opswatch.redact import Redactor

_log = structlog.get_logger(__name__)

KIND = "command"
TARGETS_VAR = f"{PREFIX}COMMAND_TARGETS"
DEFAULT_TIMEOUT = 10.0
#: Nagios' own limit is smaller (8 KiB); anything past this is ignored.
MAX_OUTPUT_CHARS = 64 * 1024
#: How long to wait for a killed plugin to be reaped before giving up on it.
REAP_TIMEOUT = 5.0
#: The longest plugin text carried to an alert's summary.
MAX_SUMMARY_CHARS = 200

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3

# One perfdata item; else (second alternative) a ``label=`` item whose value does not parse;
# else any other token, which is skipped.
_PERF = re.compile(
    r"""
    (?:'(?P<quoted>(?:[^']|'')+)'|(?P<label>[^'=\s]+))
    =
    (?:(?P<value>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)(?P<uom>(?:[^;\s\d.,+-][^;\s]*)?)|U[^;\s]*)
    (?:;(?P<warn>[^;\s]*))?
    (?:;(?P<crit>[^;\s]*))?
    (?:;(?P<min>[^;\s]*))?
    (?:;(?P<max>[^;\s]*))?
    ;*
    (?=\s|$)
    |(?:'(?P<bad_quoted>(?:[^']|'')+)'|(?P<bad_label>[^'=\s]+))=\S*
    |\S+
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class PerfDatum:
    """One performance datum; thresholds and bounds are kept as printed (ranges like ``@1:5``)."""

    label: str
    value: float
    uom: str = ""
    warn: str = ""
    crit: str = ""
    min: str = ""
    max: str = ""


@dataclass(frozen=True, slots=True)
class PluginOutput:
    summary: str
    long_text: str
    perfdata: tuple[PerfDatum, ...]
    #: labels of ``label=value`` items whose value did not parse (``time=0,000128s``)
    unparsed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Perfdata:
    data: tuple[PerfDatum, ...]
    unparsed: tuple[str, ...]


def parse_perfdata(text: str) -> Perfdata:
    """Space-separated ``'label'=value[UOM];warn;crit;min;max`` items.

    Labels with spaces or ``=`` are single-quoted, a quote inside doubled (``''``). ``U``
    (undetermined) values and tokens that are not perfdata are skipped; the labels of
    ``label=`` items whose value does not parse are returned as ``unparsed``; the rest count.
    """
    data: list[PerfDatum] = []
    unparsed: list[str] = []
    for match in _PERF.finditer(text):
        if match["bad_label"] is not None or match["bad_quoted"] is not None:
            unparsed.append(_label(match["bad_label"], match["bad_quoted"]))
            continue
        if match["value"] is None:
            continue  # a token that is not perfdata, or an undetermined value
        label = _label(match["label"], match["quoted"])
        data.append(
            PerfDatum(
                label=label,
                value=float(match["value"]),
                uom=match["uom"],
                warn=match["warn"] or "",
                crit=match["crit"] or "",
                min=match["min"] or "",
                max=match["max"] or "",
            )
        )
    return Perfdata(tuple(data), tuple(unparsed))


def _label(plain: str | None, quoted: str | None) -> str:
    return (plain or "") if quoted is None else quoted.replace("''", "'")


def parse_plugin_output(text: str) -> PluginOutput:
    """Split plugin output as Nagios does.

    ``SUMMARY | PERFDATA`` on the first line; further lines are long text, and everything after
    the first ``|`` in them is more perfdata (one or more items per line).
    """
    first, _, rest = text[:MAX_OUTPUT_CHARS].partition("\n")
    summary, _, first_perf = first.partition("|")
    long_text, _, more_perf = rest.partition("|")
    first_data, more_data = parse_perfdata(first_perf), parse_perfdata(more_perf)
    return PluginOutput(
        summary.strip(),
        long_text.strip(),
        first_data.data + more_data.data,
        first_data.unparsed + more_data.unparsed,
    )


def plugin_status(returncode: int) -> int:
    """Nagios semantics: 0..3 map to themselves, anything else (signals too) is unknown."""
    return returncode if returncode in (OK, WARNING, CRITICAL, UNKNOWN) else UNKNOWN


@dataclass(frozen=True, slots=True)
class CommandTarget:
    name: str
    argv: tuple[str, ...]
    timeout: float


@dataclass(frozen=True, slots=True)
class RunResult:
    status: int
    ran: bool
    output: PluginOutput


class CommandCollector:
    """Runs one plugin per cycle."""

    name: ClassVar[str] = KIND

    def __init__(self, target: CommandTarget, clock: Clock) -> None:
        if not target.argv:
            raise ValueError("a command needs at least a program")
        self.target = target
        self.check = f"{KIND}:{target.name}"
        self._clock = clock
        # the plugin may echo its arguments (a password): they never reach a summary
        self._arguments = Redactor(target.argv[1:])
        self._unparsed_logged: set[str] = set()

    @classmethod
    def from_env(cls, env: Env, clock: Clock) -> Sequence[Collector]:
        collectors: list[Collector] = []
        for name, command in env.specs(TARGETS_VAR, what="COMMAND", secret=True):
            try:
                argv = tuple(shlex.split(command))
            except ValueError as exc:  # unbalanced quotes; the message holds no argument
                raise ConfigError(TARGETS_VAR, f"target {name!r}: {exc}") from None
            if not argv or not argv[0]:
                raise ConfigError(TARGETS_VAR, f"target {name!r}: empty command")
            if shutil.which(argv[0]) is None:  # a typo fails start-up, not every cycle
                raise ConfigError(
                    TARGETS_VAR,
                    f"target {name!r}: {argv[0]!r} is not an executable file or on PATH",
                )
            timeout = env.duration(
                target_variable(KIND, name, "TIMEOUT"), DEFAULT_TIMEOUT, minimum=0.001
            )
            collectors.append(cls(CommandTarget(name, argv, timeout), clock))
        return collectors

    async def collect(self) -> list[Sample]:
        result = await self._run()
        at = self._clock()
        labels = {"target": self.target.name}
        output = {"output": self._shown(result.output.summary)}
        samples = [
            up_sample(KIND, self.check, result.ran and result.status != UNKNOWN, at, labels),
            Sample(self.check, f"{KIND}.status", float(result.status), at, labels, output),
        ]
        for label in result.output.unparsed:
            if label not in self._unparsed_logged:  # once, not every cycle
                self._unparsed_logged.add(label)
                _log.warning("command_perfdata_unparsed", check=self.check, label=label[:100])
        seen: set[tuple[str, str]] = set()
        for datum in result.output.perfdata:
            if (datum.label, datum.uom) in seen:
                continue  # one series per label and unit: the first one printed wins
            seen.add((datum.label, datum.uom))
            perf_labels = {"target": self.target.name, "label": datum.label, "uom": datum.uom}
            samples.append(Sample(self.check, f"{KIND}.perf", datum.value, at, perf_labels))
        return samples

    def _shown(self, summary: str) -> str:
        """The plugin's first line fit for an alert: its arguments masked, cut short."""
        shown = self._arguments.scrub(summary)
        if len(shown) <= MAX_SUMMARY_CHARS:
            return shown
        return shown[: MAX_SUMMARY_CHARS - 1] + "…"

    async def _run(self) -> RunResult:
        program = self.target.argv[0]
        environment = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
        environment["LC_ALL"] = "C"  # decimal points in perfdata, whatever the system locale
        try:
            process = await asyncio.create_subprocess_exec(
                *self.target.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=environment,
                start_new_session=True,
            )
        except OSError as exc:
            return _unknown(f"UNKNOWN: cannot run {program}: {exc.strerror}")
        try:
            async with asyncio.timeout(self.target.timeout):
                stdout, stderr = await process.communicate()
        except TimeoutError:
            await _kill_and_reap(process)
            return _unknown(f"UNKNOWN: {program} timed out after {self.target.timeout:g}s")
        except BaseException:  # cancelled by the job's timeout: never leave the plugin behind
            await _kill_and_reap(process)
            raise
        text = stdout.decode(errors="replace") or stderr.decode(errors="replace")
        output = parse_plugin_output(text)
        returncode = process.returncode if process.returncode is not None else -1
        if returncode not in (OK, WARNING, CRITICAL, UNKNOWN):
            why = (
                f"killed by signal {-returncode}"
                if returncode < 0
                else f"exit code {returncode} is out of bounds"
            )
            summary = f"UNKNOWN: {program} {why}: {output.summary or '(no output)'}"
            return RunResult(UNKNOWN, False, PluginOutput(summary, output.long_text, ()))
        if not output.summary:
            output = PluginOutput("(no output)", output.long_text, output.perfdata)
        return RunResult(returncode, True, output)

    async def close(self) -> None:
        return None

    def describe(self) -> dict[str, str]:
        return {
            "program": self.target.argv[0],
            "arguments": str(len(self.target.argv) - 1),
            "timeout": f"{self.target.timeout:g}s",
        }


def _unknown(summary: str) -> RunResult:
    return RunResult(UNKNOWN, False, PluginOutput(summary, "", ()))


async def _kill_and_reap(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the plugin's process group (it leads its own session) and wait for it."""
    with contextlib.suppress(ProcessLookupError):  # already gone: wait() still reaps it
        os.killpg(process.pid, signal.SIGKILL)
    try:
        async with asyncio.timeout(REAP_TIMEOUT):
            await process.wait()
    except TimeoutError:
        _log.warning("command_reap_timed_out", pid=process.pid)
