"""``postgres``: terminate sessions idle in a transaction, or queries running, too long.

Binding: ``postgres:<idle_in_transaction|long_query|both>:<age>``, e.g.
``OPSWATCH_RECOVERY_POSTGRES_IDLE_IN_TRANSACTION=postgres:idle_in_transaction:10m``. The
database is the ``OPSWATCH_POSTGRES_TARGETS`` entry named by the alert's ``target`` label
(the only one when there is one), so the collector's DSN and its role are reused: that role
needs ``pg_signal_backend``.

Every matching client backend of the target's database is ended with
``pg_terminate_backend``, except: superusers' and replication roles' sessions, non-client
backends (walsenders, autovacuum, ...), and opswatch's own sessions (``pg_backend_pid()`` and
``application_name = 'opswatch'``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from opswatch.config import PREFIX, ConfigError, Env, Secret
from opswatch.recovery.base import ActionContext, RecoveryError, plural

if TYPE_CHECKING:
    import asyncpg

TARGETS_VAR = f"{PREFIX}POSTGRES_TARGETS"
MODES = ("idle_in_transaction", "long_query", "both")
APPLICATION_NAME = "opswatch"

TERMINATE_QUERY = """
SELECT a.pid, a.usename::text AS usename, a.state,
       extract(epoch FROM now() - CASE WHEN a.state = 'active' THEN a.query_start
                                       ELSE a.state_change END)::float8 AS age,
       {terminate} AS terminated
FROM pg_stat_activity a
JOIN pg_roles r ON r.oid = a.usesysid
WHERE a.backend_type = 'client backend'
  AND a.datname = current_database()
  AND a.pid <> pg_backend_pid()
  AND coalesce(a.application_name, '') <> 'opswatch'
  AND NOT r.rolsuper
  AND NOT r.rolreplication
  AND (
        ($1::bool AND a.state LIKE 'idle in transaction%'
              AND now() - a.state_change >= make_interval(secs => $3::float8))
     OR ($2::bool AND a.state = 'active'
              AND now() - a.query_start >= make_interval(secs => $3::float8))
  )
ORDER BY a.pid
"""
#: PostgreSQL 14+ waits (up to 5 s) until the backend has exited, so that the verification
#: that follows sees it gone
_TERMINATE_WAITING = "pg_terminate_backend(a.pid, 5000)"
_TERMINATE = "pg_terminate_backend(a.pid)"


@dataclass(frozen=True, slots=True)
class PostgresAction:
    name: ClassVar[str] = "postgres"
    noun: ClassVar[str] = "backend termination"

    mode: str
    age_s: float
    age_text: str
    dsns: Mapping[str, Secret]

    @classmethod
    def parse(cls, variable: str, args: str, env: Env) -> PostgresAction:
        mode, sep, age = args.partition(":")
        if not sep or mode not in MODES:
            raise ConfigError(variable, f"expected postgres:<{'|'.join(MODES)}>:<age such as 10m>")
        age_s = Env({variable: age}).duration(variable, 0.0, minimum=0.0)
        targets = env.targets(TARGETS_VAR, schemes=("postgresql", "postgres"))
        if not targets:
            raise ConfigError(variable, f"the postgres action needs {TARGETS_VAR}")
        return cls(mode, age_s, age, {t.name: t.url for t in targets})

    def target(self, ctx: ActionContext) -> str:
        return f"postgres:{self._target_name(ctx) or '?'}"

    def plan(self, ctx: ActionContext) -> str:
        what = {
            "idle_in_transaction": "idle in transaction",
            "long_query": "running a query",
            "both": "idle in transaction or running a query",
        }[self.mode]
        return (
            f"terminate non-superuser client backends {what} for at least {self.age_text} "
            f"on {self.target(ctx)}"
        )

    async def run(self, ctx: ActionContext) -> str:
        name = self._target_name(ctx)
        if name is None:
            raise RecoveryError(
                f"no PostgreSQL target {ctx.target!r} in {TARGETS_VAR}", transient=False
            )
        import asyncpg  # noqa: PLC0415 - imported only when the action runs

        idle = self.mode in ("idle_in_transaction", "both")
        active = self.mode in ("long_query", "both")
        try:
            connection: asyncpg.Connection = await asyncpg.connect(
                self.dsns[name].reveal(),
                timeout=ctx.timeout,
                server_settings={"application_name": APPLICATION_NAME},
            )
            try:
                waits = connection.get_server_version().major >= 14
                query = TERMINATE_QUERY.format(
                    terminate=_TERMINATE_WAITING if waits else _TERMINATE
                )
                rows = await connection.fetch(query, idle, active, self.age_s, timeout=ctx.timeout)
            finally:
                await connection.close(timeout=ctx.timeout)
        except asyncpg.InsufficientPrivilegeError:
            raise RecoveryError(
                f"postgres:{name}: the role may not terminate backends (grant pg_signal_backend)",
                transient=False,
            ) from None
        except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
            code = getattr(exc, "sqlstate", None) or getattr(exc, "errno", None)
            raise RecoveryError(
                f"postgres:{name}: {type(exc).__name__}" + (f" ({code})" if code else ""),
                transient=True,
            ) from None
        ended = [row for row in rows if row["terminated"]]
        if len(ended) < len(rows):
            raise RecoveryError(
                f"postgres:{name}: terminated {len(ended)} of {len(rows)} backends",
                transient=True,
            )
        if not ended:
            return f"postgres:{name}: no backend to terminate"
        pids = ", ".join(f"{row['pid']} ({row['usename']}, {row['age']:.0f}s)" for row in ended)
        return f"postgres:{name}: terminated {plural(len(ended), 'backend')}: {pids}"

    def describe(self) -> dict[str, str]:
        return {
            "action": self.name,
            "mode": self.mode,
            "age": self.age_text,
            "targets": ",".join(sorted(self.dsns)),
        }

    def _target_name(self, ctx: ActionContext) -> str | None:
        if ctx.target in self.dsns:
            return ctx.target
        if not ctx.target and len(self.dsns) == 1:
            return next(iter(self.dsns))
        return None
