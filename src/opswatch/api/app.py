"""The aiohttp application and its listener."""

from __future__ import annotations

import structlog
from aiohttp import web

from opswatch.api.metrics import MetricsExporter, add_metrics_route
from opswatch.api.routes import SOURCE, ApiSource, add_routes

log = structlog.get_logger("opswatch.api")


def build_app(source: ApiSource, metrics: MetricsExporter | None = None) -> web.Application:
    app = web.Application()
    app[SOURCE] = source
    add_routes(app)
    if metrics is not None:
        add_metrics_route(app, metrics)
    return app


class ApiServer:
    """Serves :func:`build_app` on ``host:port`` (port 0 picks a free port: see ``port``)."""

    def __init__(
        self, source: ApiSource, host: str, port: int, metrics: MetricsExporter | None = None
    ) -> None:
        self._runner = web.AppRunner(build_app(source, metrics), access_log=None)
        self._host = host
        self._port = port
        self.port = port

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])  # the bound port when 0 was asked for
        log.info("api_listening", host=self._host, port=self.port)

    async def stop(self) -> None:
        await self._runner.cleanup()
