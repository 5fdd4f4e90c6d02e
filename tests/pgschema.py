"""A fresh PostgreSQL schema per test for the shared state store, dropped afterwards."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from opswatch.state.postgres import PostgresStore


def new_schema_name() -> str:
    return f"t_{secrets.token_hex(6)}"


@asynccontextmanager
async def fresh_schema(dsn: str) -> AsyncIterator[str]:
    """A schema name nothing uses yet (the store creates it); dropped with its tables after."""
    name = new_schema_name()
    try:
        yield name
    finally:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await conn.close()


@asynccontextmanager
async def two_replicas(dsn: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two open stores on one fresh schema: what two replicas share."""
    async with fresh_schema(dsn) as schema:
        one, two = (PostgresStore(dsn, schema=schema) for _ in range(2))
        await one.open()
        await two.open()
        try:
            yield one, two
        finally:
            await one.close()
            await two.close()
