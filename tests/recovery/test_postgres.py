"""The postgres action and evidence against a real server: a non-superuser session idle in a
transaction is terminated, a superuser's is left alone, and so is opswatch's own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from opswatch.config import Env, Secret
from opswatch.recovery.base import ActionContext
from opswatch.recovery.evidence import longest_queries
from opswatch.recovery.postgres import PostgresAction

VAR = "OPSWATCH_RECOVERY_POSTGRES_IDLE_IN_TRANSACTION"


def with_path(dsn: str, *, user: str | None = None, database: str | None = None) -> str:
    parts = urlsplit(dsn)
    netloc = parts.netloc
    if user is not None:
        netloc = f"{user}@{netloc.rpartition('@')[2]}"
    path = parts.path if database is None else f"/{database}"
    return urlunsplit((parts.scheme, netloc, path, parts.query, ""))


@pytest.fixture
async def database(postgres_dsn: str) -> AsyncIterator[tuple[str, str]]:
    """A database and a non-superuser role of this test's own (dropped after): the action
    only acts on its target's database, so other tests' sessions are out of reach."""
    name = f"opswatch_recovery_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(postgres_dsn)
    try:
        await admin.execute(f"CREATE ROLE {name} LOGIN NOSUPERUSER")
        await admin.execute(f"CREATE DATABASE {name}")
        yield with_path(postgres_dsn, database=name), name
    finally:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        await admin.execute(f"DROP DATABASE IF EXISTS {name}")
        await admin.execute(f"DROP ROLE IF EXISTS {name}")
        await admin.close()


async def _idle_in_transaction(dsn: str) -> asyncpg.Connection:
    connection: asyncpg.Connection = await asyncpg.connect(dsn)
    await connection.execute("BEGIN")
    await connection.fetchval("SELECT 1")
    return connection


async def test_terminates_a_session_idle_in_transaction_but_not_a_superusers(
    database: tuple[str, str],
) -> None:
    dsn, role = database
    victim = await _idle_in_transaction(with_path(dsn, user=role))
    superuser = await _idle_in_transaction(dsn)
    victim_pid = victim.get_server_pid()
    try:
        action = PostgresAction.parse(
            VAR, "idle_in_transaction:0s", Env({"OPSWATCH_POSTGRES_TARGETS": f"main={dsn}"})
        )
        detail = await action.run(ActionContext(rule="postgres_idle_in_transaction", target="main"))
        assert f"terminated 1 backend: {victim_pid} ({role}," in detail
        # gone already: the action waits for the backend to exit (PostgreSQL 14+)
        await superuser.execute("SELECT pg_stat_clear_snapshot()")
        alive = "SELECT count(*) FROM pg_stat_activity WHERE pid = $1"
        assert await superuser.fetchval(alive, victim_pid) == 0
        assert await superuser.fetchval("SELECT 1") == 1
        assert await action.run(ActionContext(rule="x", target="main")) == (
            "postgres:main: no backend to terminate"
        )
    finally:
        victim.terminate()
        await superuser.close()


async def test_a_limit_not_reached_terminates_nothing(database: tuple[str, str]) -> None:
    dsn, role = database
    victim = await _idle_in_transaction(with_path(dsn, user=role))
    try:
        action = PostgresAction("idle_in_transaction", 3600.0, "1h", {"main": Secret(dsn)})
        assert "no backend" in await action.run(ActionContext(rule="x", target="main"))
        assert await victim.fetchval("SELECT 1") == 1
    finally:
        await victim.close()


async def test_evidence_lists_the_longest_running_statements(database: tuple[str, str]) -> None:
    dsn, role = database
    busy = await _idle_in_transaction(with_path(dsn, user=role))
    try:
        queries = await longest_queries(dsn, 5)
        assert [q.pid for q in queries] == [busy.get_server_pid()]
        assert queries[0].state == "idle in transaction"
        assert queries[0].user == role
    finally:
        await busy.close()
