"""Choosing the state store and the lease from the environment; the URL stays masked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opswatch.daemon.cli import main
from opswatch.daemon.configure import load_config
from opswatch.state import open_lease, open_store
from opswatch.state.leases import NoLease, PostgresLease, RedisLease
from opswatch.state.postgres import PostgresStore
from opswatch.state.sqlite import SQLiteStore
from opswatch.timing import Timing

URL = "postgresql://opswatch:hunter2@db.example:5432/ops"


def test_without_a_state_url_the_state_is_a_sqlite_file_and_leases_are_no_ops(
    tmp_path: Path,
) -> None:
    settings = load_config({"OPSWATCH_STATE_PATH": str(tmp_path / "s.sqlite3")}).settings
    store = open_store(settings)
    assert isinstance(store, SQLiteStore)
    assert store.path == tmp_path / "s.sqlite3"
    assert isinstance(open_lease(settings, store), NoLease)


def test_a_state_url_selects_postgresql_with_its_lease_table() -> None:
    settings = load_config(
        {"OPSWATCH_STATE_URL": URL, "OPSWATCH_STATE_SCHEMA": "opswatch", "OPSWATCH_INTERVAL": "10s"}
    ).settings
    store = open_store(settings, replica="host:1:ab")
    assert isinstance(store, PostgresStore)
    assert (store.schema, store.replica, store.poll_interval) == ("opswatch", "host:1:ab", 10.0)
    assert "hunter2" not in repr(store)
    lease = open_lease(settings, store)
    assert isinstance(lease, PostgresLease)
    assert lease.holder == "host:1:ab"
    assert Timing.of(settings).lease_ttl == 30.0


def test_a_lease_url_puts_the_leases_in_redis() -> None:
    settings = load_config(
        {"OPSWATCH_STATE_URL": URL, "OPSWATCH_LEASE_URL": "redis://:pw@cache:6379/2"}
    ).settings
    lease = open_lease(settings, open_store(settings))
    assert isinstance(lease, RedisLease)
    assert lease.prefix == "opswatch:lease:public:"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OPSWATCH_STATE_URL", "mysql://db/ops"),
        ("OPSWATCH_STATE_URL", "postgresql://db:port/ops"),
        ("OPSWATCH_STATE_SCHEMA", "Robert'); DROP TABLE"),
        ("OPSWATCH_LEASE_URL", "http://cache:6379"),
    ],
)
def test_a_malformed_state_variable_exits_2_naming_it(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPSWATCH_STATE_URL", URL)
    monkeypatch.setenv(variable, value)
    assert main(["check-config"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert variable in line


def test_a_lease_url_without_a_state_url_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPSWATCH_LEASE_URL", "redis://cache:6379/0")
    assert main(["check-config"]) == 2
    assert "OPSWATCH_LEASE_URL" in capsys.readouterr().err


def test_check_config_shows_the_state_url_with_its_password_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    secret = tmp_path / "state_url"
    secret.write_text(URL + "\n")
    monkeypatch.setenv("OPSWATCH_STATE_URL_FILE", str(secret))
    assert main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["state_url"] == "postgresql://opswatch:***@db.example:5432/ops"
    assert "hunter2" not in out
