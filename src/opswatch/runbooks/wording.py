"""The static text of each runbook: what a rule's alert means, what it costs and how to fix it.

One table keyed by rule name (every built-in rule and the notifications meta rule). A user
rule without an entry of its own takes the entry of the built-in that watches the same metric
(a narrowed ``disk_full`` is still a full disk), else :data:`GENERIC`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from opswatch.notifiers.routing import META_RULE
from opswatch.rules.builtin import BUILTIN


@dataclass(frozen=True, slots=True)
class Wording:
    """What the alert means, what it costs, where to look first, and the usual fixes."""

    meaning: str
    impact: str
    diagnosis: str
    mitigation: tuple[str, ...]


def _w(meaning: str, impact: str, diagnosis: str, *mitigation: str) -> Wording:
    return Wording(meaning, impact, diagnosis, mitigation)


_DOWN_IMPACT = "Everything that depends on it fails or queues; users are likely affected now."

# fmt: off
WORDING: dict[str, Wording] = {
    "cpu_high": _w(
        "The host's CPU has been busy above the threshold for a sustained period.",
        "Requests slow down and queue; scheduled jobs overrun; at saturation health checks time "
        "out and services look down.",
        "Find the process using the CPU (the evidence and the commands below).",
        "A runaway or stuck job: stop or restart it. Expected load: move batch work off peak "
        "hours or add cores.",
    ),
    "memory_high": _w(
        "Memory in use (without caches) has stayed above the threshold.",
        "The kernel reclaims caches and swaps; near 100 % the OOM killer ends a process, often "
        "the largest service.",
        "Find the largest resident processes; look for a leak (RSS growing since start).",
        "Restart the leaking service, lower its cache or worker count, or add memory.",
    ),
    "swap_high": _w(
        "A large share of swap is in use.",
        "Pages of running programs live on disk: latency rises sharply under load.",
        "Check which processes are swapped out and whether memory is short right now.",
        "Free memory (restart the leaking process) or add memory; then `swapoff -a && "
        "swapon -a` in a quiet moment to bring pages back.",
    ),
    "load_high": _w(
        "The 5-minute load average per core has stayed above the threshold.",
        "Runnable or blocked (I/O) tasks wait: everything on the host is slower.",
        "Tell CPU load (high user/system time) from I/O wait (high wa in vmstat).",
        "Stop the job causing it; for I/O wait find the busy disk and its writer.",
    ),
    "disk_full": _w(
        "A filesystem is filling up past the threshold.",
        "At 100 % writes fail: databases stop, logs are lost, services crash on start.",
        "Find the largest directories on the mountpoint; look for logs, dumps and old backups.",
        "Delete or compress what is safe to remove (rotated logs, old backups), or grow the "
        "filesystem. A `files:` recovery binding can clean a directory automatically.",
    ),
    "inodes_full": _w(
        "A filesystem is running out of inodes (too many files), whatever its free space.",
        "New files cannot be created: sessions, caches, mail queues and uploads fail.",
        "Find the directory holding millions of small files.",
        "Delete stale small files (session or cache directories) and fix their writer.",
    ),
    "http_down": _w(
        "The HTTP endpoint does not answer, or answers an unexpected status or body.",
        _DOWN_IMPACT,
        "Check the service's process and its log; check the proxy in front of it.",
        "Restart the service if it hangs; roll back a deploy that broke it.",
    ),
    "http_slow": _w(
        "The HTTP endpoint answers, but slower than the threshold.",
        "Users wait; clients with short timeouts already see errors.",
        "Compare with the host's CPU, memory and the database's long queries.",
        "Relieve the bottleneck (a slow query, a saturated worker pool); scale out if it is "
        "load.",
    ),
    "tls_expiry": _w(
        "The endpoint's TLS certificate expires soon.",
        "When it expires, browsers and clients refuse the connection: a full outage.",
        "Read the certificate's dates and issuer; check the renewal job (certbot timer).",
        "Renew the certificate and reload the server that serves it.",
    ),
    "postgres_down": _w(
        "PostgreSQL does not accept connections.",
        _DOWN_IMPACT,
        "Check the server process, its log and the disk of its data directory.",
        "Start or restart PostgreSQL; if it refuses to start, read the log before anything "
        "else.",
    ),
    "postgres_connections_high": _w(
        "PostgreSQL uses most of max_connections.",
        "At the limit new connections are refused: applications error out.",
        "See who holds the connections (by application, user and state).",
        "End idle sessions of a leaking client, add a pooler (PgBouncer), or raise "
        "max_connections with care (memory per connection).",
    ),
    "postgres_long_query": _w(
        "A statement has been running longer than the threshold.",
        "It may hold locks that block others and keep vacuum from cleaning up.",
        "Find the statement, its client and what it waits on.",
        "Cancel it with `SELECT pg_cancel_backend(PID)` (or terminate it); fix the query or "
        "add the missing index.",
    ),
    "postgres_idle_in_transaction": _w(
        "A session opened a transaction and has done nothing for longer than the threshold.",
        "Its locks block other writers and vacuum cannot remove dead rows: tables bloat.",
        "Find the session and the application that left the transaction open.",
        "Terminate it with `SELECT pg_terminate_backend(PID)`; set "
        "idle_in_transaction_session_timeout.",
    ),
    "postgres_deadlocks": _w(
        "PostgreSQL detects deadlocks: transactions wait on each other and one is aborted.",
        "The aborted transactions fail in the application (often retried, sometimes lost).",
        "Read the server log: each deadlock is logged with both statements.",
        "Make the transactions take their locks in the same order.",
    ),
    "postgres_replication_lag": _w(
        "A replica is behind its primary by more than the threshold.",
        "Reads from the replica are stale; a failover now would lose the lagging data.",
        "Compare sent, written and replayed positions; check the replica's I/O and network.",
        "Remove the load on the replica (long queries cancel replay) or fix the network.",
    ),
    "postgres_xid_age": _w(
        "The oldest transaction ID is getting close to wraparound.",
        "Near 2.1 billion PostgreSQL stops accepting writes to protect the data.",
        "Find the databases and tables with the oldest frozen XID; look for blocked vacuums.",
        "Run `VACUUM (FREEZE)` on the oldest tables; end the long transactions that block it.",
    ),
    "redis_down": _w(
        "Redis does not answer PING.",
        _DOWN_IMPACT,
        "Check the redis-server process, its log and its memory.",
        "Restart Redis; if it crashed loading its dump, check the disk and the RDB/AOF file.",
    ),
    "redis_memory_high": _w(
        "Redis uses most of its maxmemory.",
        "At the limit it evicts keys (by its policy) or refuses writes with OOM errors.",
        "Check used memory, fragmentation and the largest keys.",
        "Delete or expire unneeded keys, set TTLs, or raise maxmemory.",
    ),
    "redis_rejected_connections": _w(
        "Redis refuses new connections (maxclients reached).",
        "Clients that cannot connect fail their requests.",
        "Count connected clients and see which application holds them.",
        "Fix the client's connection leak or pool size; raise maxclients.",
    ),
    "redis_bgsave_failed": _w(
        "Redis's last background save failed.",
        "A restart would lose the data since the last good save; with "
        "stop-writes-on-bgsave-error Redis refuses writes.",
        "Read the Redis log for the reason (disk full, permissions, fork failing for memory).",
        "Fix the cause, then run `BGSAVE` and check `rdb_last_bgsave_status`.",
    ),
    "redis_hit_ratio_low": _w(
        "Most key lookups miss.",
        "The cache does not spare the backend: the database takes the load.",
        "Check evictions and keyspace misses; a new deploy may use new key names.",
        "Give the cache more memory or longer TTLs; fix the key scheme.",
    ),
    "redis_replica_link_down": _w(
        "The Redis replica lost its link to the master.",
        "The replica serves stale data and cannot take over safely.",
        "Check master_link_status and the master's reachability and auth.",
        "Restore the network or credentials; the replica resyncs by itself.",
    ),
    "redis_evictions": _w(
        "Redis evicts keys to stay under maxmemory.",
        "Cached data disappears early; a store used as a database loses data.",
        "Check memory use, maxmemory and the eviction policy.",
        "Raise maxmemory or shrink the data; never evict from a Redis used as a database.",
    ),
    "rabbitmq_down": _w(
        "The RabbitMQ management API does not answer.",
        _DOWN_IMPACT,
        "Check the broker's node status and its log.",
        "Restart the node; a node that will not start usually says why in its log.",
    ),
    "rabbitmq_queue_without_consumers": _w(
        "A queue holds ready messages and has no consumer.",
        "The messages wait: the work they stand for is not done.",
        "Check whether the consumer service is running and connected.",
        "Start or restart the consumer; if the queue is obsolete, delete it.",
    ),
    "rabbitmq_queue_deep": _w(
        "A queue holds more ready messages than the threshold.",
        "Work is delayed; the broker's memory and disk fill up until it blocks publishers.",
        "Compare publish and deliver rates; check the consumers' health and count.",
        "Add consumers or fix the slow one; purge only messages that are safe to lose.",
    ),
    "rabbitmq_memory_alarm": _w(
        "A RabbitMQ node raised its memory alarm.",
        "Every publisher connection is blocked until memory falls.",
        "Find the queues holding the most messages and memory.",
        "Drain the deep queues (more consumers) or raise vm_memory_high_watermark.",
    ),
    "rabbitmq_disk_alarm": _w(
        "A RabbitMQ node's free disk fell below its limit.",
        "Every publisher connection is blocked until disk is freed.",
        "Check the free space of the node's data directory.",
        "Free disk on that filesystem; drain deep queues.",
    ),
    "rabbitmq_node_down": _w(
        "A node of the RabbitMQ cluster is not running.",
        "The cluster runs with less capacity; queues on that node are unavailable.",
        "Check the node's status and log; check the network between the nodes.",
        "Start the node; rejoin it to the cluster if it was reset.",
    ),
    "rabbitmq_fd_high": _w(
        "A RabbitMQ node uses most of its file descriptors.",
        "At the limit new connections are refused.",
        "Count connections and channels by client.",
        "Fix the client leaking connections; raise the descriptor limit (LimitNOFILE).",
    ),
    "process_down": _w(
        "The watched process is not running.",
        _DOWN_IMPACT,
        "Check why it ended: its service's status and log, the kernel log (OOM killer).",
        "Start it again (a `systemd:restart:UNIT` or `process:` binding can do it).",
    ),
    "tcp_down": _w(
        "The TCP port refuses connections or does not answer.",
        _DOWN_IMPACT,
        "Check the process that should listen there and the firewall.",
        "Restart the service; fix the firewall rule.",
    ),
    "command_status": _w(
        "A Nagios-style plugin reported WARNING or CRITICAL.",
        "Whatever the plugin checks is degraded; its output says what.",
        "Read the plugin's output in the alert; run the plugin by hand.",
        "Follow the plugin's documentation for the reported state.",
    ),
    "backup_missing": _w(
        "No file matches the watched backup pattern.",
        "There is no backup to restore from.",
        "Check the backup job's schedule, its log and the target directory.",
        "Run the backup job by hand and fix what made it fail.",
    ),
    "backup_stale": _w(
        "The newest file matching the backup pattern is older than the threshold.",
        "A restore now would lose everything since that backup.",
        "Check the backup job's last runs and its log.",
        "Run the backup job by hand and fix what made it fail.",
    ),
    "app_metrics_down": _w(
        "The application's /metrics endpoint cannot be scraped.",
        "The application may be down; its error and latency rules are blind meanwhile.",
        "Check the application's process and its log.",
        "Restart the application if it hangs.",
    ),
    "app_error_ratio_high": _w(
        "A share of the application's requests above the threshold answers 5xx.",
        "Those users see errors now.",
        "Read the application's error log; check its database and dependencies.",
        "Roll back a recent deploy; fix or restart the failing dependency.",
    ),
    "app_latency_high": _w(
        "The application's p95 request latency is above the threshold.",
        "One request in twenty is slower than that: users notice.",
        "Compare with CPU, memory and the database's long queries.",
        "Relieve the bottleneck; scale out if it is load.",
    ),
    "heartbeat_missing": _w(
        "A job that pings opswatch did not ping within its schedule and grace.",
        "The job did not run or did not finish: its work (a backup, an export) is missing.",
        "Check the job's scheduler (cron, systemd timer) and its log.",
        "Run the job by hand; fix the schedule or what makes it fail.",
    ),
    "heartbeat_failed": _w(
        "A job reported failure in its ping.",
        "The job's work was not done.",
        "Read the job's output kept with the ping.",
        "Fix the cause and run the job again.",
    ),
    META_RULE: _w(
        "A notification channel keeps failing to deliver.",
        "Alerts to that channel are not seen; a fallback channel may get them instead.",
        "Run `opswatch test-notify` and read the channel's error.",
        "Fix the channel's credentials, URL or network; the outbox retries what is pending.",
    ),
}
# fmt: on

GENERIC = _w(
    "A user rule fired: the expression it watches crossed its levels.",
    "Depends on what the rule watches: see its summary and the targets below.",
    "Look at the series the rule selects on its targets (the commands below).",
    "Fix the cause the rule's author had in mind; a rule can carry a link to its own "
    "instructions (`runbook` in the rule's expression).",
)

_BY_METRIC = {spec.metric: spec.name for spec in BUILTIN}


def wording_for(rule: str, metrics: Iterable[str]) -> Wording:
    """The rule's own wording, else the built-in's of the same metric, else :data:`GENERIC`."""
    if rule in WORDING:
        return WORDING[rule]
    for metric in metrics:
        builtin = _BY_METRIC.get(metric)
        if builtin is not None:
            return WORDING[builtin]
    return GENERIC
