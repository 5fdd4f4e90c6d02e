"""The built-in rule pack: one declarative spec per rule, each tunable from the environment.

For a rule ``cpu_high`` and a level ``warning``:

* ``OPSWATCH_RULE_CPU_HIGH_WARNING``: the threshold, or ``off`` to drop the level (a rule
  with every level off is dropped);
* ``OPSWATCH_RULE_CPU_HIGH_WARNING_CLEAR``: the hysteresis threshold (``off``: none). When
  only the threshold is overridden, the clear keeps its default distance from it;
* ``OPSWATCH_RULE_CPU_HIGH_FOR`` (a duration such as ``5m``) or
  ``OPSWATCH_RULE_CPU_HIGH_FOR_CYCLES`` (a count of runs): how long a breach must last.
  Durations become runs as ``max(1, ceil(seconds / interval))``.

Adding a rule is adding one :class:`RuleSpec` line to :data:`BUILTIN`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from opswatch.config import PREFIX, ConfigError, Env
from opswatch.model import Severity
from opswatch.rules.base import Rule
from opswatch.rules.threshold import Level, Op, ThresholdRule

INFO, W, C = Severity.INFO, Severity.WARNING, Severity.CRITICAL


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """The default shape of one threshold rule. ``for_cycles``, when set, is a fixed count of
    runs and takes precedence over ``for_seconds``."""

    name: str
    metric: str
    op: Op
    levels: tuple[Level, ...]
    summary: str
    for_seconds: float = 0.0
    for_cycles: int | None = None


# fmt: off
BUILTIN: tuple[RuleSpec, ...] = (
    RuleSpec("cpu_high", "host.cpu_percent", ">", (Level(W, 80, 70), Level(C, 95, 90)),
             "CPU usage is {value:.1f}% (threshold {threshold:g}%)", for_seconds=600),
    RuleSpec("memory_high", "host.memory_percent", ">", (Level(W, 85, 80), Level(C, 95, 92)),
             "memory usage is {value:.1f}% (threshold {threshold:g}%)", for_seconds=300),
    RuleSpec("swap_high", "host.swap_percent", ">", (Level(W, 80),),
             "swap usage is {value:.1f}% (threshold {threshold:g}%)", for_seconds=600),
    RuleSpec("load_high", "host.load5_per_core", ">", (Level(W, 2), Level(C, 4)),
             "5-minute load is {value:.2f} per core (threshold {threshold:g})", for_seconds=600),
    RuleSpec("disk_full", "host.disk_used_percent", ">", (Level(W, 85, 82), Level(C, 90, 88)),
             "disk {mountpoint} is {value:.1f}% full (threshold {threshold:g}%)"),
    RuleSpec("inodes_full", "host.inodes_used_percent", ">", (Level(C, 90, 88),),
             "inodes on {mountpoint} are {value:.1f}% used (threshold {threshold:g}%)"),
    RuleSpec("http_down", "http.up", "<", (Level(C, 1, 1),),
             "{check} is down", for_cycles=2),
    RuleSpec("http_slow", "http.latency_seconds", ">", (Level(W, 5),),
             "{check} answered in {value:.2f}s (threshold {threshold:g}s)", for_cycles=2),
    RuleSpec("tls_expiry", "http.tls_days_left", "<", (Level(W, 14), Level(C, 3)),
             "{check} TLS certificate expires in {value:.0f} days (threshold {threshold:g})"),
    # PostgreSQL: the morning runbook's checks
    RuleSpec("postgres_down", "postgres.up", "<", (Level(C, 1, 1),),
             "PostgreSQL {target} is down", for_cycles=2),
    RuleSpec("postgres_connections_high", "postgres.connections_percent", ">",
             (Level(W, 80, 75), Level(C, 95, 90)),
             "PostgreSQL {target} uses {value:.0f}% of max_connections "
             "(threshold {threshold:g}%)"),
    RuleSpec("postgres_long_query", "postgres.longest_query_seconds", ">", (Level(W, 300),),
             "PostgreSQL {target}: a query has been running for {value:.0f}s "
             "(threshold {threshold:g}s)"),
    RuleSpec("postgres_idle_in_transaction", "postgres.longest_idle_in_transaction_seconds",
             ">", (Level(W, 600),),
             "PostgreSQL {target}: a session has been idle in transaction for {value:.0f}s "
             "(threshold {threshold:g}s)"),
    RuleSpec("postgres_deadlocks", "postgres.deadlocks_per_s", ">", (Level(W, 0),),
             "PostgreSQL {target} has deadlocks ({value:.3f}/s)"),
    RuleSpec("postgres_replication_lag", "postgres.replication_lag_seconds", ">",
             (Level(W, 30, 20), Level(C, 300, 240)),
             "PostgreSQL {target} replica lags {value:.0f}s (threshold {threshold:g}s)",
             for_seconds=60),
    RuleSpec("postgres_xid_age", "postgres.xid_age", ">", (Level(W, 1e9), Level(C, 1.5e9)),
             "PostgreSQL {target} transaction ID age is {value:.3g} (wraparound at 2.1e9)"),
    # Redis
    RuleSpec("redis_down", "redis.up", "<", (Level(C, 1, 1),),
             "Redis {target} is down", for_cycles=2),
    RuleSpec("redis_memory_high", "redis.memory_percent", ">",
             (Level(W, 90, 85), Level(C, 95, 92)),
             "Redis {target} uses {value:.0f}% of maxmemory (threshold {threshold:g}%)"),
    RuleSpec("redis_rejected_connections", "redis.rejected_connections_per_s", ">",
             (Level(W, 0),), "Redis {target} rejects connections ({value:.2f}/s)"),
    RuleSpec("redis_bgsave_failed", "redis.last_bgsave_ok", "<", (Level(C, 1, 1),),
             "Redis {target}: the last background save failed"),
    RuleSpec("redis_hit_ratio_low", "redis.keyspace_hit_ratio", "<", (Level(W, 0.6, 0.65),),
             "Redis {target} keyspace hit ratio is {value:.0%} (threshold {threshold:.0%})",
             for_seconds=600),
    RuleSpec("redis_replica_link_down", "redis.master_link_up", "<", (Level(C, 1, 1),),
             "Redis replica {target} lost its link to the master", for_seconds=60),
    RuleSpec("redis_evictions", "redis.evicted_keys_per_s", ">", (Level(INFO, 0),),
             "Redis {target} evicts keys ({value:.2f}/s)"),
    # RabbitMQ
    RuleSpec("rabbitmq_down", "rabbitmq.up", "<", (Level(C, 1, 1),),
             "RabbitMQ {target} is down", for_cycles=2),
    RuleSpec("rabbitmq_queue_without_consumers", "rabbitmq.messages_ready_without_consumers",
             ">", (Level(W, 0),),
             "RabbitMQ {target}: queue {queue} holds {value:.0f} messages and has no consumer",
             for_seconds=300),
    RuleSpec("rabbitmq_queue_deep", "rabbitmq.messages_ready", ">",
             (Level(W, 10000, 8000), Level(C, 100000, 80000)),
             "RabbitMQ {target}: queue {queue} holds {value:.0f} ready messages "
             "(threshold {threshold:g})", for_seconds=300),
    RuleSpec("rabbitmq_memory_alarm", "rabbitmq.mem_alarm", ">", (Level(C, 0),),
             "RabbitMQ {target}: memory alarm on {node}: publishers are blocked"),
    RuleSpec("rabbitmq_disk_alarm", "rabbitmq.disk_free_alarm", ">", (Level(C, 0),),
             "RabbitMQ {target}: disk alarm on {node}: publishers are blocked"),
    RuleSpec("rabbitmq_node_down", "rabbitmq.node_running", "<", (Level(C, 1, 1),),
             "RabbitMQ {target}: node {node} is not running"),
    RuleSpec("rabbitmq_fd_high", "rabbitmq.fd_used_percent", ">", (Level(W, 80, 75),),
             "RabbitMQ {target}: node {node} uses {value:.0f}% of its file descriptors"),
    # processes, ports, Nagios plugins, backups, application metrics
    RuleSpec("process_down", "process.up", "<", (Level(C, 1, 1),),
             "process {target} is not running"),
    RuleSpec("tcp_down", "tcp.up", "<", (Level(C, 1, 1),),
             "port {target} refuses connections", for_cycles=2),
    RuleSpec("command_status", "command.status", ">", (Level(W, 0.5), Level(C, 1.5, 1.5)),
             "{check}: {output}"),
    RuleSpec("backup_missing", "file.up", "<", (Level(C, 1, 1),),
             "no file matches {target}"),
    RuleSpec("backup_stale", "file.newest_age_seconds", ">", (Level(C, 26 * 3600),),
             "newest {target} file is {value:.0f}s old (threshold {threshold:g}s)"),
    # a kind's down rule first: its alert holds the check's others found in the same run
    RuleSpec("app_metrics_down", "prometheus.up", "<", (Level(C, 1, 1),),
             "{target} /metrics cannot be scraped", for_cycles=2),
    RuleSpec("app_error_ratio_high", "prometheus.error_ratio", ">", (Level(C, 0.05, 0.04),),
             "{target} answers {value:.1%} of requests with 5xx (threshold {threshold:.0%})",
             for_cycles=2),
    RuleSpec("app_latency_high", "prometheus.p95_seconds", ">", (Level(W, 2, 1.5),),
             "{target} p95 latency is {value:.2f}s (threshold {threshold:g}s)", for_cycles=3),
    # heartbeats, the dead-man switch of cron jobs (collectors/heartbeat.py)
    RuleSpec("heartbeat_missing", "heartbeat.overdue_seconds", ">", (Level(C, 0),),
             "heartbeat {target}: {reason}"),
    RuleSpec("heartbeat_failed", "heartbeat.failed", ">", (Level(C, 0),),
             "heartbeat {target}: {reason}"),
)
# fmt: on


def cycles_for(seconds: float, interval: float) -> int:
    """Runs needed to cover ``seconds`` at ``interval``: ``max(1, ceil(seconds / interval))``
    (rounded first so that 1.1 s at 0.1 s is 11 runs, not 12)."""
    if interval <= 0:
        raise ValueError(f"interval must be positive, got {interval!r}")
    return max(1, math.ceil(round(seconds / interval, 9)))


def builtin_rules(env: Env, interval: float, specs: Sequence[RuleSpec] = BUILTIN) -> list[Rule]:
    """The rules of ``specs`` with the environment's overrides applied, for runs every
    ``interval`` seconds. Raises :class:`ConfigError` naming the offending variable."""
    rules: list[Rule] = []
    for spec in specs:
        rule = _rule(env, interval, spec)
        if rule is not None:
            rules.append(rule)
    return rules


def _rule(env: Env, interval: float, spec: RuleSpec) -> ThresholdRule | None:
    base = f"{PREFIX}RULE_{spec.name.upper()}"
    maybe = (_level(env, f"{base}_{d.severity.upper()}", spec.op, d) for d in spec.levels)
    levels = tuple(level for level in maybe if level is not None)
    for_cycles = _for_cycles(env, base, interval, spec)
    if not levels:
        return None
    return ThresholdRule(
        name=spec.name,
        metric=spec.metric,
        op=spec.op,
        levels=levels,
        summary=spec.summary,
        for_cycles=for_cycles,
    )


def _level(env: Env, variable: str, op: Op, default: Level) -> Level | None:
    clear_variable = f"{variable}_CLEAR"
    threshold = env.optional_number(variable, default.threshold)
    # the clear keeps its default distance from an overridden threshold
    clear_default = None if threshold is None else threshold + default.release - default.threshold
    clear = env.optional_number(clear_variable, clear_default)
    if threshold is None:
        return None
    if clear is None:  # "off": no hysteresis
        clear = threshold
    if (op == ">" and clear > threshold) or (op == "<" and clear < threshold):
        blamed = clear_variable if env.raw(clear_variable) is not None else variable
        side = "above" if op == ">" else "below"
        raise ConfigError(
            blamed,
            f"the clear threshold {clear:g} is {side} the alert threshold {threshold:g} "
            f"(for a '{op}' rule it must be {'at most' if op == '>' else 'at least'} it)",
        )
    return Level(default.severity, threshold, clear)


def _for_cycles(env: Env, base: str, interval: float, spec: RuleSpec) -> int:
    for_variable, cycles_variable = f"{base}_FOR", f"{base}_FOR_CYCLES"
    if env.raw(for_variable) is not None and env.raw(cycles_variable) is not None:
        raise ConfigError(cycles_variable, f"set either {for_variable} or {cycles_variable}")
    if env.raw(cycles_variable) is not None:
        return env.integer(cycles_variable, 1, minimum=1)
    if env.raw(for_variable) is not None:
        return cycles_for(env.duration(for_variable, 0.0, minimum=0.0), interval)
    if spec.for_cycles is not None:
        return spec.for_cycles
    return cycles_for(spec.for_seconds, interval)
