"""structlog configuration: called once, from ``main()`` only.

JSON lines on stdout when stdout is not a terminal (systemd journal, containers), the console
renderer on a terminal; ``OPSWATCH_LOG_FORMAT`` forces either. Timestamps are UTC ISO 8601;
exceptions become structured ``exception`` fields in JSON, a plain traceback on the console,
both without frame locals (library frames hold DSNs, URLs and header values). Every event is
scrubbed of the configured secrets (:func:`opswatch.redact.scrub_event`) just before it is
rendered.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

from opswatch.redact import scrub_event

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logging(log_format: str, level: str, stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    json_output = log_format == "json" or (log_format == "auto" and not out.isatty())
    renderer: structlog.typing.Processor
    exceptions: structlog.typing.Processor
    if json_output:
        renderer = structlog.processors.JSONRenderer()
        exceptions = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
    else:
        # rendered here, not by the renderer, so that the scrubber sees the text
        renderer = structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
        exceptions = structlog.processors.format_exc_info
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            exceptions,
            scrub_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(out),
        # Not cached: a cached module-level logger would keep writing to the stream of the
        # first configuration (``opswatch recover`` logs to stderr); a few lines per cycle
        # make the lookup cost nothing.
        cache_logger_on_first_use=False,
    )
    # Libraries that use stdlib logging (APScheduler, asyncio) go to stderr at warning+.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
