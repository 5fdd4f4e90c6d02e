"""``webhook``: ask an automation endpoint (Rundeck, AWX, a CI job, ...) to fix it.

Binding: ``webhook`` (POSTs to ``OPSWATCH_RECOVERY_WEBHOOK_URL``, a secret: ``_FILE`` works)
or ``webhook:<URL>``. The JSON body names the alert: ``{"rule", "target", "check",
"fingerprint", "summary", "labels"}``. 2xx is success; 408, 429 and 5xx, timeouts and
refused connections are transient; other statuses are permanent. The URL (which carries its
token in the path or query) appears only masked, in logs, errors and the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import aiohttp

from opswatch import __version__
from opswatch.config import PREFIX, ConfigError, Env, Secret, mask_url
from opswatch.recovery.base import ActionContext, RecoveryError

URL_VAR = f"{PREFIX}RECOVERY_WEBHOOK_URL"


@dataclass(frozen=True, slots=True)
class WebhookAction:
    name: ClassVar[str] = "webhook"
    noun: ClassVar[str] = "webhook call"

    url: Secret

    @classmethod
    def parse(cls, variable: str, args: str, env: Env) -> WebhookAction:
        if args:
            url = Env({variable: args}).url(variable, schemes=("http", "https"), hide_path=True)
            if url is not None:  # recorded with env's secrets (the scrubber's source)
                env.keep(url)
        else:
            url = env.url(URL_VAR, schemes=("http", "https"), hide_path=True)
            if url is None:
                raise ConfigError(variable, f"webhook without a URL needs {URL_VAR}")
        assert url is not None
        return cls(url)

    def target(self, ctx: ActionContext) -> str:
        return f"{self.url}#{ctx.rule}:{ctx.target}"

    def plan(self, ctx: ActionContext) -> str:
        return f"POST {self.url} for {ctx.rule} on {ctx.target or ctx.check or '-'}"

    async def run(self, ctx: ActionContext) -> str:
        body = {
            "rule": ctx.rule,
            "target": ctx.target,
            "check": ctx.check,
            "fingerprint": ctx.fingerprint,
            "summary": ctx.summary,
            "labels": dict(ctx.labels),
        }
        timeout = aiohttp.ClientTimeout(total=ctx.timeout)
        headers = {"User-Agent": f"opswatch/{__version__}"}
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(self.url.reveal(), json=body, headers=headers) as response,
            ):
                status = response.status
        except (aiohttp.ClientError, OSError) as exc:
            raise RecoveryError(f"POST {self.url}: {type(exc).__name__}", transient=True) from None
        except TimeoutError:
            raise RecoveryError(
                f"POST {self.url}: timed out after {ctx.timeout:g}s", transient=True
            ) from None
        if 200 <= status < 300:
            return f"POST {self.url}: HTTP {status}"
        raise RecoveryError(
            f"POST {self.url}: HTTP {status}", transient=status in (408, 429) or status >= 500
        )

    def describe(self) -> dict[str, str]:
        return {"action": self.name, "url": mask_url(self.url.reveal(), hide_path=True)}
