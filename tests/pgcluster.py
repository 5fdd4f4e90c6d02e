"""A private PostgreSQL cluster (initdb + pg_ctl in a temporary directory, on a free port) for
tests that stop or kill the server; the shared one on 5432 is never touched."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_SERVICES, free_port

#: the superuser of the cluster (trust authentication: any password is accepted)
ROLE = "opswatch"


def _bin(program: str) -> str | None:
    found = shutil.which(program)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{program}"))
    return candidates[-1] if candidates else None


@dataclass
class Cluster:
    port: int
    directory: Path
    _pg_ctl: str
    _user: str | None

    def dsn(self, password: str) -> str:
        return f"postgresql://{ROLE}:{password}@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [self._pg_ctl, "-D", str(self.directory / "data"), *args],
            check=True,
            capture_output=True,
            user=self._user,
            timeout=60,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._ctl("-l", str(self.directory / "log"), "-o", options, "-w", "start")

    def stop(self) -> None:
        """Stop at once (connections cut, no checkpoint), like a crash."""
        self._ctl("-m", "immediate", "-w", "stop")


@contextlib.contextmanager
def private_cluster() -> Iterator[Cluster]:
    """A started cluster, stopped and removed afterwards. Skipped (failed under
    ``OPSWATCH_REQUIRE_SERVICES=1``) without the PostgreSQL server binaries."""
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        message = "initdb and pg_ctl (the PostgreSQL server binaries) are not installed"
        if REQUIRE_SERVICES:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    # initdb refuses to run as root: then the cluster belongs to the postgres user
    user = "postgres" if os.geteuid() == 0 else None
    directory = Path(tempfile.mkdtemp(prefix="opswatch-pg-"))
    if user is not None:
        os.chown(directory, pwd.getpwnam(user).pw_uid, -1)
    cluster = Cluster(free_port(), directory, pg_ctl, user)
    try:
        subprocess.run(
            [initdb, "-D", str(directory / "data"), "-U", ROLE, "--auth=trust", "--no-sync"],
            check=True,
            capture_output=True,
            user=user,
            timeout=120,
        )
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)
