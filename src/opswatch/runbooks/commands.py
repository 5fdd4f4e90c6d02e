"""Safe diagnosis commands for one target of a rule: read-only, copy-paste ready.

Each command is built from the target's masked description (its collector's ``describe()``,
whose URLs show ``***`` for a password or a credential) and never from the configured secret,
so no password reaches a runbook: a command that needs one prompts for it (``psql``), or shows
the mask for the reader to fill in. Every value put in a command is shell-quoted.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

#: a target's masked description (its collector's ``describe()``)
Described = Mapping[str, str]

_MASKED = "***"
#: every host metric's extra commands (``{mount}`` is each mountpoint the rule fired for)
_HOST: dict[str, tuple[str, ...]] = {
    "cpu_percent": (
        "top -b -n 1 | head -n 20",
        "ps -eo pid,user,pcpu,etime,cmd --sort=-pcpu | head",
    ),
    "memory_percent": ("free -m", "ps -eo pid,user,rss,etime,cmd --sort=-rss | head"),
    "swap_percent": ("free -m", "vmstat 1 5"),
    "load5_per_core": ("uptime", "vmstat 1 5", "ps -eo pid,stat,pcpu,cmd | awk '$2 ~ /D/'"),
    "disk_used_percent": ("df -h {mount}", "du -xh --max-depth=1 {mount} | sort -h | tail"),
    "inodes_used_percent": ("df -i {mount}",),
}
_POSTGRES_SQL: dict[str, str] = {
    "connections_percent": "SELECT application_name, usename, state, count(*) FROM "
    "pg_stat_activity GROUP BY 1, 2, 3 ORDER BY 4 DESC; SHOW max_connections;",
    "longest_query_seconds": "SELECT pid, now() - query_start AS running, state, "
    "left(query, 80) FROM pg_stat_activity WHERE state <> 'idle' ORDER BY 2 DESC LIMIT 10;",
    "longest_idle_in_transaction_seconds": "SELECT pid, usename, application_name, "
    "now() - state_change AS idle FROM pg_stat_activity "
    "WHERE state LIKE 'idle in transaction%' ORDER BY 4 DESC;",
    "deadlocks_per_s": "SELECT datname, deadlocks FROM pg_stat_database ORDER BY 2 DESC;",
    "replication_lag_seconds": "SELECT * FROM pg_stat_replication;",
    "xid_age": "SELECT datname, age(datfrozenxid) FROM pg_database ORDER BY 2 DESC;",
}
_REDIS_INFO: dict[str, str] = {
    "memory_percent": "memory",
    "evicted_keys_per_s": "stats",
    "keyspace_hit_ratio": "stats",
    "rejected_connections_per_s": "clients",
    "last_bgsave_ok": "persistence",
    "master_link_up": "replication",
}


@dataclass(frozen=True, slots=True)
class _Address:
    host: str
    port: int | None
    user: str | None
    path: str


def _address(described: Described) -> _Address | None:
    url = described.get("url")
    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    user = parts.username if parts.username and parts.username != _MASKED else None
    return _Address(parts.hostname, port, user, parts.path.lstrip("/"))


def _q(value: str) -> str:
    """``value`` as one shell word: in double quotes when it holds single quotes (SQL) and
    nothing a shell expands there, else as :func:`shlex.quote` gives it."""
    if "'" in value and not any(char in value for char in '"$`\\!'):
        return f'"{value}"'
    return shlex.quote(value)


def _http(metric: str, described: Described, _mounts: Sequence[str]) -> list[str]:
    url = described.get("url", "")
    commands = [f"curl -sS -o /dev/null -w '%{{http_code}} %{{time_total}}s\\n' {_q(url)}"]
    address = _address(described)
    if metric.endswith("tls_days_left") and address is not None:
        port = address.port or 443
        commands.append(
            f"openssl s_client -connect {_q(f'{address.host}:{port}')} -servername "
            f"{_q(address.host)} </dev/null 2>/dev/null | openssl x509 -noout -dates -issuer"
        )
    return commands


def _postgres(metric: str, described: Described, _mounts: Sequence[str]) -> list[str]:
    address = _address(described)
    if address is None:
        return []
    where = f"-h {_q(address.host)} -p {address.port or 5432}"
    commands = [f"pg_isready {where}"]
    login = where + (f" -U {_q(address.user)}" if address.user else "")
    login += f" -d {_q(address.path)}" if address.path else ""
    sql = _POSTGRES_SQL.get(metric.partition(".")[2])
    if sql is not None:
        commands.append(f"psql {login} -c {_q(sql)}")
    return commands


def _redis(metric: str, described: Described, _mounts: Sequence[str]) -> list[str]:
    address = _address(described)
    if address is None:
        return []
    cli = f"redis-cli -h {_q(address.host)} -p {address.port or 6379}"
    if described.get("url", "").startswith("rediss:"):
        cli += " --tls"
    section = _REDIS_INFO.get(metric.partition(".")[2])
    return [f"{cli} ping", f"{cli} info {section or 'server'}"]


def _rabbitmq(metric: str, _described: Described, _mounts: Sequence[str]) -> list[str]:
    commands = ["rabbitmq-diagnostics -q status", "rabbitmq-diagnostics -q alarms"]
    if "messages" in metric:
        commands.append("rabbitmqctl list_queues name messages_ready consumers")
    if "fd_used" in metric:
        commands.append("rabbitmqctl list_connections user peer_host channels")
    return commands


def _host(metric: str, _described: Described, mounts: Sequence[str]) -> list[str]:
    templates = _HOST.get(metric.partition(".")[2], ("uptime",))
    commands: list[str] = []
    for template in templates:
        if "{mount}" not in template:
            commands.append(template)
            continue
        for mount in mounts or ("/",):
            commands.append(template.format(mount=_q(mount)))
    return commands


def _tcp(_metric: str, described: Described, _mounts: Sequence[str]) -> list[str]:
    host, _, port = described.get("address", "").rpartition(":")
    if not host:
        return []
    return [f"nc -zv -w 5 {_q(host.strip('[]'))} {_q(port)}"]


def _process(_metric: str, described: Described, _mounts: Sequence[str]) -> list[str]:
    kind, _, value = described.get("match", "").partition(":")
    if kind == "pidfile":
        return [f'ps -o pid,stat,etime,cmd -p "$(cat {_q(value)})"']
    if kind == "cmdline":
        return [f"pgrep -af {_q(value)}"]
    return [f"pgrep -a -x {_q(value)}"] if value else []


def _file(_metric: str, described: Described, _mounts: Sequence[str]) -> list[str]:
    pattern = described.get("pattern", "")
    directory = pattern.rpartition("/")[0] or "."
    return [f"ls -lt -- {_q(directory)} | head"]


def _command(_metric: str, described: Described, _mounts: Sequence[str]) -> list[str]:
    program = described.get("program")
    return [f"ls -l -- {_q(program)}"] if program else []


def _prometheus(_metric: str, described: Described, _mounts: Sequence[str]) -> list[str]:
    return [f"curl -sS {_q(described.get('url', ''))} | grep -v '^#' | head -n 50"]


def _heartbeat(_metric: str, described: Described, _mounts: Sequence[str]) -> list[str]:
    name = described.get("check", "").partition(":")[2]
    return [f"opswatch heartbeats {_q(name)}"] if name else ["opswatch heartbeats"]


def _notify(_metric: str, _described: Described, _mounts: Sequence[str]) -> list[str]:
    return ["opswatch test-notify"]


_BY_KIND: dict[str, Callable[[str, Described, Sequence[str]], list[str]]] = {
    "command": _command,
    "file": _file,
    "heartbeat": _heartbeat,
    "host": _host,
    "http": _http,
    "notify": _notify,
    "postgres": _postgres,
    "process": _process,
    "prometheus": _prometheus,
    "rabbitmq": _rabbitmq,
    "redis": _redis,
    "tcp": _tcp,
}


def diagnosis(metric: str, described: Described, mounts: Sequence[str] = ()) -> list[str]:
    """The commands for ``metric`` (``kind.name``) on one target described by ``described``;
    ``mounts``: the mountpoints a host disk rule fired for (default ``/``)."""
    make = _BY_KIND.get(metric.partition(".")[0])
    return [] if make is None else make(metric, described, mounts)


def for_binding(described: Mapping[str, object]) -> list[str]:
    """Commands that show what a recovery binding acts on (its action's ``describe()``)."""
    action = described.get("action")
    if action == "systemd":
        unit = _q(str(described.get("unit", "")))
        return [f"systemctl status {unit} --no-pager", f"journalctl -u {unit} -n 50 --no-pager"]
    if action == "docker":
        container = _q(str(described.get("container", "")))
        return [f"docker ps -a --filter name={container}", f"docker logs --tail 50 {container}"]
    return []
