"""A local HTTP peer for benchmarks (run as a child process, so its CPU is not counted).

``python -m bench._server PORT`` answers 200 ``ok`` on every path and Prometheus text on
``/metrics``; it prints ``ready`` on stdout once listening and runs until killed.
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web

METRICS = """# TYPE http_requests_total counter
http_requests_total{code="200"} 1000
http_requests_total{code="500"} 3
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.1"} 900
http_request_duration_seconds_bucket{le="0.5"} 990
http_request_duration_seconds_bucket{le="+Inf"} 1003
http_request_duration_seconds_sum 42.0
http_request_duration_seconds_count 1003
"""


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(text=METRICS, content_type="text/plain")


async def serve(port: int) -> None:
    app = web.Application()
    app.router.add_get("/metrics", _metrics)
    app.router.add_route("*", "/{tail:.*}", _ok)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
