"""Redis collector: the INFO parser on captured payloads, then a real server."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
import redis.asyncio
from structlog.testing import capture_logs

from opswatch.collectors.redis import RedisCollector, RedisInfo, build_samples
from opswatch.config import ConfigError, Env
from opswatch.model import Sample
from tests.conftest import ManualClock, free_port

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

# Captured once from the local Redis 7.0.15 (`INFO`, no section): a master, no maxmemory.
INFO_MASTER = """\
# Server
redis_version:7.0.15
redis_git_sha1:00000000
redis_git_dirty:0
redis_build_id:ae4d7c971a948f0
redis_mode:standalone
os:Linux 6.18.44-fc-v782 x86_64
arch_bits:64
monotonic_clock:POSIX clock_gettime
multiplexing_api:epoll
atomicvar_api:c11-builtin
gcc_version:12.2.0
process_id:2203
process_supervised:no
run_id:e8bea2ba908fd5308b9464b1895b3f74a340730f
tcp_port:6379
server_time_usec:1795498282656981
uptime_in_seconds:651
uptime_in_days:0
hz:10
configured_hz:10
lru_clock:336170
executable:/redis-server
config_file:
io_threads_active:0

# Clients
connected_clients:1
cluster_connections:0
maxclients:10000
client_recent_max_input_buffer:0
client_recent_max_output_buffer:0
blocked_clients:0
tracking_clients:0
clients_in_timeout_table:0

# Memory
used_memory:1187032
used_memory_human:1.13M
used_memory_rss:7168000
used_memory_rss_human:6.84M
used_memory_peak:1187032
used_memory_peak_human:1.13M
used_memory_peak_perc:100.11%
used_memory_overhead:897100
used_memory_startup:876392
used_memory_dataset:289932
used_memory_dataset_perc:93.33%
allocator_allocated:2025136
allocator_active:2256896
allocator_resident:4927488
total_system_memory:25276063744
total_system_memory_human:23.54G
used_memory_lua:32768
used_memory_vm_eval:32768
used_memory_lua_human:32.00K
used_memory_scripts_eval:0
number_of_cached_scripts:0
number_of_functions:0
number_of_libraries:0
used_memory_vm_functions:33792
used_memory_vm_total:66560
used_memory_vm_total_human:65.00K
used_memory_functions:200
used_memory_scripts:200
used_memory_scripts_human:200B
maxmemory:0
maxmemory_human:0B
maxmemory_policy:noeviction
allocator_frag_ratio:1.11
allocator_frag_bytes:231760
allocator_rss_ratio:2.18
allocator_rss_bytes:2670592
rss_overhead_ratio:1.45
rss_overhead_bytes:2240512
mem_fragmentation_ratio:6.81
mem_fragmentation_bytes:6115488
mem_not_counted_for_evict:0
mem_replication_backlog:20508
mem_total_replication_buffers:20504
mem_clients_slaves:0
mem_clients_normal:0
mem_cluster_links:0
mem_aof_buffer:0
mem_allocator:jemalloc-5.3.0
active_defrag_running:0
lazyfree_pending_objects:0
lazyfreed_objects:0

# Persistence
loading:0
async_loading:0
current_cow_peak:0
current_cow_size:0
current_cow_size_age:0
current_fork_perc:0.00
current_save_keys_processed:0
current_save_keys_total:0
rdb_changes_since_last_save:2
rdb_bgsave_in_progress:0
rdb_last_save_time:1795497631
rdb_last_bgsave_status:ok
rdb_last_bgsave_time_sec:-1
rdb_current_bgsave_time_sec:-1
rdb_saves:0
rdb_last_cow_size:0
rdb_last_load_keys_expired:0
rdb_last_load_keys_loaded:0
aof_enabled:0
aof_rewrite_in_progress:0
aof_rewrite_scheduled:0
aof_last_rewrite_time_sec:-1
aof_current_rewrite_time_sec:-1
aof_last_bgrewrite_status:ok
aof_rewrites:0
aof_rewrites_consecutive_failures:0
aof_last_write_status:ok
aof_last_cow_size:0
module_fork_in_progress:0
module_fork_last_cow_size:0

# Stats
total_connections_received:23
total_commands_processed:39
instantaneous_ops_per_sec:0
total_net_input_bytes:1971
total_net_output_bytes:41826
total_net_repl_input_bytes:0
total_net_repl_output_bytes:0
instantaneous_input_kbps:0.00
instantaneous_output_kbps:0.00
instantaneous_input_repl_kbps:0.00
instantaneous_output_repl_kbps:0.00
rejected_connections:0
sync_full:1
sync_partial_ok:0
sync_partial_err:0
expired_keys:0
expired_stale_perc:0.00
expired_time_cap_reached_count:0
expire_cycle_cpu_milliseconds:10
evicted_keys:0
evicted_clients:0
total_eviction_exceeded_time:0
current_eviction_exceeded_time:0
keyspace_hits:3
keyspace_misses:1
pubsub_channels:0
pubsub_patterns:0
pubsubshard_channels:0
latest_fork_usec:0
total_forks:0
migrate_cached_sockets:0
slave_expires_tracked_keys:0
active_defrag_hits:0
active_defrag_misses:0
active_defrag_key_hits:0
active_defrag_key_misses:0
total_active_defrag_time:0
current_active_defrag_time:0
tracking_total_keys:0
tracking_total_items:0
tracking_total_prefixes:0
unexpected_error_replies:0
total_error_replies:15
dump_payload_sanitizations:0
total_reads_processed:74
total_writes_processed:50
io_threaded_reads_processed:0
io_threaded_writes_processed:0
reply_buffer_shrinks:1
reply_buffer_expands:0

# Replication
role:master
connected_slaves:0
master_failover_state:no-failover
master_replid:e0c203852c60e265247f827e8c94604fa858e63c
master_replid2:0000000000000000000000000000000000000000
master_repl_offset:102
second_repl_offset:-1
repl_backlog_active:1
repl_backlog_size:1048576
repl_backlog_first_byte_offset:1
repl_backlog_histlen:102

# CPU
used_cpu_sys:0.463394
used_cpu_user:0.328962
used_cpu_sys_children:0.000000
used_cpu_user_children:0.000000
used_cpu_sys_main_thread:0.463350
used_cpu_user_main_thread:0.328931

# Modules

# Errorstats
errorstat_ERR:count=12
errorstat_WRONGPASS:count=3

# Cluster
cluster_enabled:0

# Keyspace
"""

# Captured from a throwaway replica of it (`INFO replication`) before its first sync.
INFO_REPLICA_REPLICATION = """\
# Replication
role:slave
master_host:127.0.0.1
master_port:6379
master_link_status:down
master_last_io_seconds_ago:-1
master_sync_in_progress:0
slave_read_repl_offset:1
slave_repl_offset:1
master_link_down_since_seconds:-1
slave_priority:100
slave_read_only:1
replica_announced:1
connected_slaves:0
master_failover_state:no-failover
master_replid:76536e2aa0d9d98d24c70db07166ff0152776be5
master_replid2:0000000000000000000000000000000000000000
master_repl_offset:0
second_repl_offset:-1
repl_backlog_active:0
repl_backlog_size:1048576
repl_backlog_first_byte_offset:0
repl_backlog_histlen:0
"""


def with_fields(text: str, **changes: object) -> str:
    """The captured text with some ``key:value`` lines changed (each must exist)."""
    for key, new in changes.items():
        text, count = re.subn(rf"^{key}:.*$", f"{key}:{new}", text, flags=re.MULTILINE)
        assert count == 1, key
    return text


def values(samples: Sequence[Sample], metric: str) -> list[float]:
    return [s.value for s in samples if s.metric == metric]


def value(samples: Sequence[Sample], metric: str) -> float:
    [found] = values(samples, metric)
    return found


def run(text: str, *, at: datetime = T0, previous_text: str | None = None) -> list[Sample]:
    """Samples of one run on ``text``; with ``previous_text``, the run 30 s before it."""
    previous = None
    if previous_text is not None:
        previous = RedisInfo.parse(previous_text).counters(at - timedelta(seconds=30))
    return build_samples(
        "redis:cache",
        "cache",
        at=at,
        ping_seconds=0.001,
        info=RedisInfo.parse(text),
        previous=previous,
    )


def make_collector(url: str, clock: ManualClock) -> RedisCollector:
    [collector] = RedisCollector.from_env(Env({"OPSWATCH_REDIS_TARGETS": f"cache={url}"}), clock)
    return collector


@pytest.fixture
async def collector(redis_url: str, clock: ManualClock) -> AsyncIterator[RedisCollector]:
    collector = make_collector(redis_url, clock)
    yield collector
    await collector.close()


# --- pure: configuration and the parser ----------------------------------------------------


def test_from_env_gives_one_collector_per_target_with_its_timeout(clock: ManualClock) -> None:
    env = Env(
        {
            "OPSWATCH_REDIS_TARGETS": "cache=redis://r1:6379/0,queue=rediss://:Pa55w0rd@r2:6380/1",
            "OPSWATCH_REDIS_TIMEOUT": "1500ms",
        }
    )
    collectors = RedisCollector.from_env(env, clock)
    assert [c.check for c in collectors] == ["redis:cache", "redis:queue"]
    assert collectors[1].describe() == {
        "check": "redis:queue",
        "target": "queue",
        "url": "rediss://r2:6380/1",  # mask_url drops a password without a user
        "timeout": "1.5s",
    }


def test_from_env_names_the_variable_when_no_target_is_set(clock: ManualClock) -> None:
    with pytest.raises(ConfigError) as raised:
        RedisCollector.from_env(Env({}), clock)
    assert raised.value.variable == "OPSWATCH_REDIS_TARGETS"


def test_parses_memory_clients_and_persistence_from_captured_info() -> None:
    info = RedisInfo.parse(INFO_MASTER)
    assert info.used_memory == 1187032
    assert info.maxmemory == 0
    assert info.fragmentation_ratio == 6.81
    assert info.keyspace_hits == 3
    assert info.keyspace_misses == 1
    assert info.last_bgsave_ok is True
    assert info.role == "master"
    assert info.master_link_up is None
    assert info.server_time == pytest.approx(1795498282.656981)


def test_parses_the_same_text_with_the_servers_crlf_line_ends() -> None:
    assert RedisInfo.parse(INFO_MASTER.replace("\n", "\r\n")) == RedisInfo.parse(INFO_MASTER)


def test_first_run_reports_gauges_but_no_rate_nor_hit_ratio() -> None:
    samples = run(INFO_MASTER)
    assert value(samples, "redis.up") == 1.0
    assert value(samples, "redis.used_memory_bytes") == 1187032
    assert value(samples, "redis.connected_clients") == 1
    assert value(samples, "redis.last_bgsave_ok") == 1.0
    assert value(samples, "redis.last_bgsave_age_seconds") == pytest.approx(651.656981)
    for absent in (
        "rejected_connections_per_s",
        "evicted_keys_per_s",
        "keyspace_hit_ratio",
        "memory_percent",  # no maxmemory
        "master_link_up",  # a master
    ):
        assert values(samples, f"redis.{absent}") == [], absent
    assert all(s.labels == {"target": "cache"} for s in samples)


def test_rejected_connections_and_evictions_become_rates_over_the_clock() -> None:
    later = with_fields(INFO_MASTER, rejected_connections=12, evicted_keys=300)
    samples = run(later, previous_text=INFO_MASTER)
    assert value(samples, "redis.rejected_connections_per_s") == pytest.approx(0.4)
    assert value(samples, "redis.evicted_keys_per_s") == pytest.approx(10.0)


def test_a_counter_reset_gives_no_rate_that_run() -> None:
    before = with_fields(INFO_MASTER, rejected_connections=12, keyspace_hits=500)
    samples = run(INFO_MASTER, previous_text=before)  # a restart: counters back to small
    assert values(samples, "redis.rejected_connections_per_s") == []
    assert values(samples, "redis.keyspace_hit_ratio") == []
    assert value(samples, "redis.evicted_keys_per_s") == 0.0


def test_keyspace_hit_ratio_comes_from_the_deltas_of_hits_and_misses() -> None:
    later = with_fields(INFO_MASTER, keyspace_hits=63, keyspace_misses=41)
    samples = run(later, previous_text=INFO_MASTER)
    assert value(samples, "redis.keyspace_hit_ratio") == pytest.approx(60 / 100)


def test_keyspace_hit_ratio_is_absent_without_lookups() -> None:
    samples = run(INFO_MASTER, previous_text=INFO_MASTER)
    assert values(samples, "redis.keyspace_hit_ratio") == []


def test_memory_percent_only_when_maxmemory_is_set() -> None:
    samples = run(with_fields(INFO_MASTER, maxmemory=2_374_064))
    assert value(samples, "redis.memory_percent") == pytest.approx(50.0)
    assert value(samples, "redis.maxmemory_bytes") == 2_374_064


def test_a_failed_bgsave_reports_zero() -> None:
    samples = run(with_fields(INFO_MASTER, rdb_last_bgsave_status="err"))
    assert value(samples, "redis.last_bgsave_ok") == 0.0


def test_a_replica_reports_its_master_link() -> None:
    down = RedisInfo.parse(INFO_REPLICA_REPLICATION)
    up = RedisInfo.parse(with_fields(INFO_REPLICA_REPLICATION, master_link_status="up"))
    assert (down.role, down.master_link_up, up.master_link_up) == ("slave", False, True)
    assert value(run(INFO_REPLICA_REPLICATION), "redis.master_link_up") == 0.0


def test_missing_fields_leave_their_samples_out() -> None:
    samples = run("# Server\r\nredis_version:2.8.0\r\n")
    assert [s.metric for s in samples] == ["redis.up", "redis.ping_seconds"]


# --- against a real server ------------------------------------------------------------------


async def test_live_server_reports_memory_and_client_samples(
    collector: RedisCollector, redis_url: str
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        maxmemory = int(str((await client.config_get("maxmemory"))["maxmemory"]))
        samples = await collector.collect()
    finally:
        await client.aclose()
    assert value(samples, "redis.up") == 1.0
    assert value(samples, "redis.used_memory_bytes") > 0
    assert value(samples, "redis.maxmemory_bytes") == maxmemory  # the server's setting
    assert value(samples, "redis.fragmentation_ratio") > 0
    assert value(samples, "redis.connected_clients") >= 1
    assert value(samples, "redis.ping_seconds") > 0
    assert len(values(samples, "redis.last_bgsave_ok")) == 1


async def test_live_lookups_give_a_hit_ratio_on_the_next_run(
    collector: RedisCollector, redis_url: str, clock: ManualClock
) -> None:
    key = f"opswatch:test:{free_port()}"
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        rejected_before = (await client.info("stats"))["rejected_connections"]
        await collector.collect()
        await client.set(key, "1", ex=60)
        for _ in range(3):
            await client.get(key)
        await client.get(f"{key}:missing")
        clock.advance(30)
        samples = await collector.collect()
        rejected_after = (await client.info("stats"))["rejected_connections"]
    finally:
        await client.delete(key)
        await client.aclose()
    # other clients of this shared server may add lookups: ours make it strictly between
    assert 0.0 < value(samples, "redis.keyspace_hit_ratio") < 1.0
    # the counter's increase over the 30 s the injected clock moved
    assert value(samples, "redis.rejected_connections_per_s") == pytest.approx(
        (rejected_after - rejected_before) / 30
    )


async def test_failed_auth_gives_up_zero_and_keeps_the_password_out_of_logs(
    redis_url: str, clock: ManualClock
) -> None:
    password = "s3cret-Pa55word"
    parts = urlsplit(redis_url)
    url = f"redis://opswatch-no-such-user:{password}@{parts.hostname}:{parts.port}/0"
    collector = make_collector(url, clock)
    try:
        with capture_logs() as logs:
            samples = await collector.collect()
            await collector.collect()
    finally:
        await collector.close()
    assert [(s.metric, s.value) for s in samples] == [("redis.up", 0.0)]
    assert [(e["event"], e["error"]) for e in logs] == [
        ("collector_target_down", "AuthenticationError")
    ]
    assert password not in repr(logs)
    assert password not in repr(collector.describe())
