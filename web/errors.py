"""Every error the API returns, in one shape: {code, status, message, errors?}.

Domain exceptions are mapped to HTTP here and nowhere else.
"""
from http import HTTPStatus

from flask import Flask

from models.errors import Conflict, DomainError, InvalidInput, NotFound

STATUS_OF = ((NotFound, 404), (InvalidInput, 422), (Conflict, 409))


def error_body(code: int, message: str | None, errors: dict | None = None) -> dict:
    body = {"code": code, "status": HTTPStatus(code).phrase, "message": message or HTTPStatus(code).phrase}
    if errors:
        body["errors"] = _per_field(errors)
    return body


def _per_field(errors: dict) -> dict:
    """webargs nests messages by location ({"json": {...}}); clients want them per field."""
    if set(errors) <= {"json", "query", "headers", "path", "view_args", "form", "files", "cookies"}:
        flat = {}
        for location_errors in errors.values():
            flat.update(location_errors if isinstance(location_errors, dict) else {"_schema": location_errors})
        return flat
    return errors


def init_app(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def domain_error(error: DomainError):
        code = next((status for kind, status in STATUS_OF if isinstance(error, kind)), 409)
        return error_body(code, error.message, getattr(error, "errors", None)), code

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        app.logger.exception("unhandled error")
        return error_body(500, "internal error"), 500

    from werkzeug.exceptions import HTTPException
    from web.extensions import api

    # Errors raised outside flask-smorest views (404 on unknown URLs, 405, 413) get the same shape.
    app.register_error_handler(HTTPException, api.handle_http_exception)
