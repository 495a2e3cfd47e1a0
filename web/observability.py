"""Correlation ids and JSON logs, shared by the API and the workers.

Every log line is one JSON object carrying the current `request_id` and `booking_id` (and, in a
worker, the step's `task` and `task_id`), so one booking can be followed from its HTTP request
through every step in both processes' logs:

    grep '"booking_id": "<id>"' api.log worker-*.log

The request id comes from the caller's `X-Request-ID` header (a load balancer or client), or is
generated; it is echoed in the response and travels to the workers in the task message headers
(tasks/dispatch.py), where tasks/telemetry.py picks it up again.
"""
from __future__ import annotations

import logging
import os
import re
import sys
import time
import uuid
from contextvars import ContextVar

from flask import Flask, g, request
from pythonjsonlogger.json import JsonFormatter

REQUEST_ID_HEADER = "X-Request-ID"
# Ids from outside are accepted only if they look like ids: no log injection, bounded size.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
booking_id_var: ContextVar[str | None] = ContextVar("booking_id", default=None)
task_var: ContextVar[tuple[str, str] | None] = ContextVar("task", default=None)  # (name, id)

http_log = logging.getLogger("boxoffice.http")


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


def init_app(app: Flask) -> None:
    """Request ids in and out, booking ids from the URL, and one JSON line per request."""

    @app.before_request
    def _start():
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else new_request_id()
        g.request_id = request_id
        g.started = time.perf_counter()
        g.log_tokens = (request_id_var.set(request_id), booking_id_var.set(None))
        note_booking((request.view_args or {}).get("booking_id"))

    @app.after_request
    def _finish(response):
        request_id = g.get("request_id")
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        if "started" in g:
            http_log.info("%s %s %s", request.method, request.path, response.status_code, extra={
                "method": request.method, "path": request.path,
                "endpoint": request.url_rule.rule if request.url_rule else None,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - g.started) * 1000, 2),
            })
        return response

    @app.teardown_request
    def _forget(_error=None):
        tokens = g.pop("log_tokens", None)
        if tokens:
            request_id_var.reset(tokens[0])
            booking_id_var.reset(tokens[1])
