"""``docker``: restart (or start, stop) a container through the Docker Engine API.

Binding: ``docker:<restart|start|stop>:<container>`` (a name or id), e.g.
``OPSWATCH_RECOVERY_HTTP_DOWN_API=docker:restart:api``. The request goes to the engine's unix
socket, ``OPSWATCH_RECOVERY_DOCKER_SOCKET`` (default ``/var/run/docker.sock``):
``POST /containers/{id}/restart?t=<stop timeout>``. 204 (or 304: already in that state) is
success; 404 (no such container) is permanent; a refused socket or a 5xx is transient.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import quote

import aiohttp

from opswatch.config import PREFIX, ConfigError, Env
from opswatch.recovery.base import ActionContext, RecoveryError

SOCKET_VAR = f"{PREFIX}RECOVERY_DOCKER_SOCKET"
DEFAULT_SOCKET = "/var/run/docker.sock"
VERBS = ("restart", "start", "stop")
#: Docker's own rule for container names (ids are hex, which fits)
_CONTAINER = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
#: seconds the engine waits for the container to stop before killing it
STOP_TIMEOUT_S = 10


@dataclass(frozen=True, slots=True)
class DockerAction:
    name: ClassVar[str] = "docker"
    noun: ClassVar[str] = "restart"

    verb: str
    container: str
    socket: str = DEFAULT_SOCKET

    @classmethod
    def parse(cls, variable: str, args: str, env: Env) -> DockerAction:
        verb, sep, container = args.partition(":")
        if not sep or verb not in VERBS:
            raise ConfigError(
                variable, f"expected docker:<{'|'.join(VERBS)}>:<container>, got docker:{args}"
            )
        if not _CONTAINER.match(container):
            raise ConfigError(variable, f"not a container name or id: {container!r}")
        socket = env.string(SOCKET_VAR, DEFAULT_SOCKET)
        if not socket.startswith("/"):
            raise ConfigError(SOCKET_VAR, f"expected an absolute socket path, got {socket!r}")
        return cls(verb, container.lstrip("/"), socket)

    def target(self, ctx: ActionContext) -> str:
        del ctx
        return self.container

    def plan(self, ctx: ActionContext) -> str:
        del ctx
        return f"POST {self._path} on unix:{self.socket}"

    @property
    def _path(self) -> str:
        query = f"?t={STOP_TIMEOUT_S}" if self.verb in ("restart", "stop") else ""
        return f"/containers/{quote(self.container, safe='')}/{self.verb}{query}"

    async def run(self, ctx: ActionContext) -> str:
        connector = aiohttp.UnixConnector(path=self.socket)
        timeout = aiohttp.ClientTimeout(total=ctx.timeout)
        what = f"docker {self.verb} {self.container}"
        try:
            async with (
                aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
                session.post(f"http://docker{self._path}") as response,
            ):
                status = response.status
                message = await _message(response)
        except (aiohttp.ClientError, OSError) as exc:
            raise RecoveryError(
                f"{what}: cannot reach the Docker engine at {self.socket}: {type(exc).__name__}",
                transient=True,
            ) from None
        except TimeoutError:
            raise RecoveryError(
                f"{what}: timed out after {ctx.timeout:g}s", transient=True
            ) from None
        if status in (204, 304):
            return f"{what}: done" if status == 204 else f"{what}: already done"
        reason = f"HTTP {status}" + (f": {message}" if message else "")
        raise RecoveryError(f"{what} failed: {reason}", transient=status >= 500 or status == 409)

    def describe(self) -> dict[str, str]:
        return {
            "action": self.name,
            "verb": self.verb,
            "container": self.container,
            "socket": self.socket,
        }


async def _message(response: aiohttp.ClientResponse) -> str:
    """The engine's ``{"message": ...}`` error, shortened; empty when there is none."""
    try:
        body = await response.json(content_type=None)
    except (ValueError, aiohttp.ClientError):
        return ""
    message = body.get("message", "") if isinstance(body, dict) else ""
    return str(message)[:200]
