"""Logging: one structlog configuration for the worker and the CLI.

Logs carry ``case_ref``, ``step``, ``workflow_id`` and similar ids, never personal data.
``drop_personal_fields`` is the safety net: any key named like a personal field is
replaced by ``"[removed]"`` before rendering.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

PERSONAL_KEYS = frozenset({
    "name", "address", "place_of_residence", "date_of_birth", "v_number", "persons",
    "relaas", "body", "packet", "event", "weighing", "note",
})


def drop_personal_fields(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: mask keys that could hold personal data (the message stays)."""
    for key in PERSONAL_KEYS.intersection(event_dict):
        if key != "event":  # structlog's own message key
            event_dict[key] = "[removed]"
    return event_dict


def configure_logging(*, json: bool = True, level: int = logging.INFO) -> None:
    """Route structlog and the standard library (Temporal's loggers) to one renderer:
    JSON lines on stderr for machines, or the console renderer for people."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        drop_personal_fields,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        # plain tracebacks: the default rich formatter prints local variables' values
        else structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *([structlog.processors.format_exc_info] if json else []),
            renderer,
        ],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
