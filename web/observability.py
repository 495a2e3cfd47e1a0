"""Request ids in and out of the API, and one JSON log line per request.

The request id comes from the caller's `X-Request-ID` header (a load balancer or client), or is
generated; it is echoed in the response and set in the correlation context of the neutral
`observability` package (shared with the workers), so every log line of the request carries it.
"""
from __future__ import annotations

import logging
import re
import time

from flask import Flask, g, request

from observability import booking_id_var, new_request_id, note_booking, request_id_var

REQUEST_ID_HEADER = "X-Request-ID"
# Ids from outside are accepted only if they look like ids: no log injection, bounded size.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

http_log = logging.getLogger("boxoffice.http")


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
