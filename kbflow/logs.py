"""Logging: one structlog configuration for the worker and the CLI.

Logs carry ``case_ref``, ``step``, ``workflow_id`` and similar ids, never personal data.
``drop_personal_fields`` is the safety net: any key named like a personal field is
replaced by ``"[removed]"`` before rendering.

The Temporal SDK's Rust core logs through Python logging too, when its runtime is made
with ``core_logging()`` (``kbflow.metrics.runtime``): its lines (WARN and up) go to the
``temporalio.core`` logger, so they are rendered like every other line (JSON on stderr for
the worker; no ANSI colours on stdout), with the core's target and fields under ``core``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from temporalio.runtime import LogForwardingConfig, LoggingConfig, TelemetryFilter

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


#: The logger the SDK core's lines are forwarded to.
CORE_LOGGER = "temporalio.core"


def core_logging(level: str = "WARN") -> LoggingConfig:
    """The SDK core's logging for ``temporalio.runtime.TelemetryConfig``: its lines at
    ``level`` and up (the SDK's other crates: ERROR) are forwarded to ``CORE_LOGGER``
    instead of being written to stdout."""
    return LoggingConfig(
        filter=TelemetryFilter(core_level=level, other_level="ERROR"),
        forwarding=LogForwardingConfig(
            logger=logging.getLogger(CORE_LOGGER), append_target_to_name=False,
            prepend_target_on_message=False, append_log_fields_to_message=False))


def add_core_fields(_: Any, __: str,
                    event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: a line forwarded from the SDK core gets ``core``: its target
    (the Rust module) and fields, values as text, personal-looking keys masked."""
    entry = getattr(event_dict.get("_record"), "temporal_log", None)
    if entry is not None:
        try:
            fields = dict(entry.fields)
        except Exception:  # the SDK says a conversion error would be its bug; keep the line
            fields = {}
        event_dict["core"] = {"target": entry.target, **{
            key: "[removed]" if key in PERSONAL_KEYS
            else value if isinstance(value, str | int | float | bool) or value is None
            else str(value)
            for key, value in fields.items()}}
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
        foreign_pre_chain=[*shared, add_core_fields],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *([structlog.processors.format_exc_info] if json else []),
            renderer,
        ],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
