"""Every error the API returns, in one shape: {code, status, message, errors?}.

Domain exceptions are mapped to HTTP here and nowhere else.
"""
from http import HTTPStatus

from flask import Flask
from marshmallow import Schema, fields
from sqlalchemy.exc import IntegrityError

from models import db
from models.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound, Unavailable

STATUS_OF = ((NotFound, 404), (InvalidInput, 422), (Conflict, 409), (Forbidden, 403), (Unavailable, 503))
UNIQUE_VIOLATION = "23505"  # PostgreSQL's SQLSTATE
# What a unique constraint that lost a race means to the caller (the same words as the check).
UNIQUE_CONFLICTS = {"uq_users_email": "this email is already registered"}
MAX_PAGE = 1_000_000

# What each status means when an operation does not say more (SPEC §5).
STANDARD_ERRORS = {
    400: "The request body is not valid JSON",
    401: "No bearer token, or an invalid or expired one",
    403: "The token's role may not do this",
    404: "Not found (or not yours)",
    409: "The resource's state does not allow this",
    413: "The request body is too large",
    415: "The request body is not JSON (send Content-Type: application/json)",
    422: "Invalid input: `errors` tells which field and why",
    429: "Rate limited: retry after the Retry-After header's seconds",
}


class ErrorSchema(Schema):
    """The one error body of the API (documentation only; bodies are built by error_body)."""

    code = fields.Integer(required=True, metadata={"description": "The HTTP status code"})
    status = fields.String(required=True, metadata={"description": "The HTTP status phrase"})
    message = fields.String(required=True, metadata={"description": "What went wrong, for a person"})
    errors = fields.Dict(keys=fields.String(), metadata={
        "description": "Per field (or `_schema`), the reasons it was rejected; validation errors only"})


def documented_errors(blp, *codes: int, **descriptions: str):
    """Document error responses of an operation, all with the ErrorSchema body.

    `codes` use STANDARD_ERRORS' descriptions; `descriptions` (e.g. e409="...") override them.
    """
    wanted = dict.fromkeys(codes)
    if 400 in wanted:  # an operation that reads a JSON body also refuses other media types
        wanted.setdefault(415, None)
    for key, text in descriptions.items():
        wanted[int(key.lstrip("e"))] = text

    def decorate(view):
        for code, text in wanted.items():
            view = blp.alt_response(code, schema=ErrorSchema, description=text or STANDARD_ERRORS[code])(view)
        return view
    return decorate


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


def init_app(app: Flask, api) -> None:
    """Error handlers for the app; `api` (web.extensions.api, passed in: extensions imports this
    module for the error schema) describes the operations whose query parameters are checked."""
    @app.errorhandler(DomainError)
    def domain_error(error: DomainError):
        code = next((status for kind, status in STATUS_OF if isinstance(error, kind)), 409)
        # `details`: fields an answer adds to the error's shape (a refused check-in's `result`).
        return {**error_body(code, error.message, getattr(error, "errors", None)),
                **getattr(error, "details", {})}, code

    @app.errorhandler(IntegrityError)
    def integrity_error(error: IntegrityError):
        """A unique constraint lost a race (two registrations of one email at the same moment):
        the check before the INSERT passed for both, the database refused the second. That is
        the same conflict the check reports (409), after the failed transaction is rolled back."""
        db.session.rollback()
        constraint = _unique_violation(error)
        if constraint is None:
            return unexpected(error)
        return error_body(409, UNIQUE_CONFLICTS.get(constraint, "this already exists")), 409

    def malformed_body(error: Exception):
        return error_body(400, f"the request body is not valid HTTP: {str(error)[:200]}"), 400

    for kind in _server_body_errors():
        app.register_error_handler(kind, malformed_body)

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        app.logger.exception("unhandled error")
        return error_body(500, "internal error"), 500

    from werkzeug.exceptions import HTTPException

    @app.before_request
    def reject_unknown_query_parameters():
        """Unknown fields are rejected (SPEC §5) in the query string as in bodies, and NUL
        characters anywhere in the URL are refused before they reach the database."""
        from flask import request
        if "\x00" in request.path or any("\x00" in k or "\x00" in v for k, v in request.args.items(multi=True)):
            return error_body(422, "the URL must not contain NUL characters"), 422
        if request.url_rule is None:
            return None
        operation = _operations(app, api).get((request.url_rule.rule, request.method.lower()))
        if operation is None:
            return None  # not an API operation (docs, spec, assets)
        allowed, takes_json = operation
        if takes_json and not request.is_json and (takes_json == "required" or request.content_length
                                                   or request.headers.get("Transfer-Encoding")):
            # Without this a form or text body reads as "no fields" and gets a misleading 422.
            return error_body(415, "the request body must be JSON (Content-Type: application/json)"), 415
        unknown = sorted(set(request.args) - allowed)
        if unknown:
            return error_body(422, "the request has invalid fields",
                              {name: ["Unknown field."] for name in unknown}), 422
        page = request.args.get("page", "")
        # An OFFSET past bigint is a database error. Only ASCII digits are a number here (the
        # parser refuses the rest: int() would take "²", then fail on it), and a long one is not
        # converted at all (int() refuses more than 4,300 digits).
        digits = page.lstrip("0")
        if page.isascii() and page.isdigit() and (len(digits) > len(str(MAX_PAGE)) or int(digits or 0) > MAX_PAGE):
            return error_body(422, "the request has invalid fields",
                              {"page": [f"Must be less than or equal to {MAX_PAGE}."]}), 422
        return None

    # Errors raised outside flask-smorest views (404 on unknown URLs, 405, 413) get the same shape.
    app.register_error_handler(HTTPException, api.handle_http_exception)


def _server_body_errors() -> tuple:
    """What gunicorn raises while the app reads a malformed body (a bad chunk size in a chunked
    one, say): the request is not HTTP, and that is the client's error, not a 500."""
    try:
        from gunicorn.http.errors import NoMoreData, ParseException
    except ImportError:  # served by another server
        return ()
    return ParseException, NoMoreData


def _unique_violation(error: IntegrityError) -> str | None:
    """The name of the unique constraint the statement violated, or None for another kind."""
    orig = getattr(error, "orig", None)
    if getattr(orig, "sqlstate", None) != UNIQUE_VIOLATION:
        return None
    return getattr(getattr(orig, "diag", None), "constraint_name", None) or ""


def _operations(app: Flask, api) -> dict:
    """(flask rule, method) -> (the query parameter names its OpenAPI operation declares,
    whether it reads a JSON request body: "required", "optional" or False)."""
    cached = app.extensions.get("api_operations")
    if cached is None:
        import re
        cached = {}
        for path, operations in api.spec.to_dict().get("paths", {}).items():
            rule = re.sub(r"\{(\w+)\}", r"<\1>", path)
            shared = operations.get("parameters", [])
            for method, operation in operations.items():
                if method == "parameters":
                    continue
                names = {p.get("name") for p in [*shared, *operation.get("parameters", [])]
                         if isinstance(p, dict) and p.get("in") == "query"}
                body = operation.get("requestBody", {})
                # An optional body (POST /bookings/{id}/cancel) may be left out altogether.
                takes_json = "application/json" in body.get("content", {}) and (
                    "required" if body.get("required") else "optional")
                cached[(rule, method)] = (names, takes_json)
                if method == "get":
                    cached[(rule, "head")] = (names, False)
        app.extensions["api_operations"] = cached
    return cached
