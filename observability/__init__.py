"""Correlation ids and JSON logs, shared by the API and the workers (neither layer owns them).

Every log line is one JSON object carrying the current `request_id` and `booking_id` (and, in a
worker, the step's `task` and `task_id`), so one booking can be followed from its HTTP request
through every step in both processes' logs:

    grep '"booking_id": "<id>"' api.log worker-*.log

This package holds what both sides need: the context variables, the filter that stamps them on
every record, and the process's logging configuration. It imports neither web/ nor tasks/. The
HTTP side (web/observability.py) sets the ids from each request; the request id travels to the
workers in the task message headers (tasks/publishing.py), where tasks/telemetry.py sets them
again for each step.
"""
from __future__ import annotations

import logging
import os
import sys
import uuid
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
booking_id_var: ContextVar[str | None] = ContextVar("booking_id", default=None)
task_var: ContextVar[tuple[str, str] | None] = ContextVar("task", default=None)  # (name, id)


def new_request_id() -> str:
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    return request_id_var.get()


def note_booking(booking_id: str | None) -> None:
    """The booking this request or step is about, for every following log line."""
    if booking_id and booking_id_var.get() is None:
        booking_id_var.set(booking_id)


class CorrelationFilter(logging.Filter):
    """Adds the current request id, booking id and step to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = getattr(record, "request_id", None) or request_id_var.get()
        record.booking_id = getattr(record, "booking_id", None) or booking_id_var.get()
        task = task_var.get()
        if task and not hasattr(record, "task"):
            record.task, record.task_id = task
        return True


_HANDLER_MARK = "_boxoffice_json"


def configure_logging(level: int | str | None = None, stream=None) -> None:
    """JSON lines on stderr for the whole process (idempotent: the worker calls it again).

    LOG_FORMAT=plain keeps human-readable lines for a developer's terminal; the correlation
    fields are still there.
    """
    level = level or os.environ.get("LOG_LEVEL", "INFO")
    root = logging.getLogger()
    root.setLevel(level)
    if any(getattr(h, _HANDLER_MARK, False) for h in root.handlers):
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.addFilter(CorrelationFilter())
    if os.environ.get("LOG_FORMAT", "json") == "plain":
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s [req=%(request_id)s booking=%(booking_id)s] %(message)s"))
    else:
        handler.setFormatter(JsonFormatter(
            ["levelname", "name", "message", "process"],
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp=True,
        ))
    root.addHandler(handler)
