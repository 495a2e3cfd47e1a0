"""Flask extensions, created unbound and attached to the app in create_app."""
import threading
import time
from collections import OrderedDict

from flask import current_app
from flask_jwt_extended import JWTManager
from flask_migrate import Migrate
from flask_smorest import Api

from web.errors import ErrorSchema, error_body


DEFAULT_MESSAGES = {
    400: "the request body is not valid JSON",
    404: "nothing is at this URL",
    405: "this method is not allowed here",
    413: "the request body is too large",
    415: "the request body must be JSON",
    422: "the request has invalid fields",
}


class BoxofficeApi(Api):
    """flask-smorest's Api with SPEC §5 error bodies: always `message`, `errors` per field."""

    ERROR_SCHEMA = ErrorSchema

    def _register_pagination_header(self):
        """X-Pagination carries JSON: say so (`content`), not a `schema` of the simple header style,
        or clients and validators read it as comma-separated key/value pairs."""
        from flask_smorest.pagination import PaginationMetadataSchema
        self.spec.components.header("PAGINATION", {
            "description": "Pagination metadata, JSON: total, total_pages, first_page, last_page, page, "
                           "previous_page, next_page",
            "content": {"application/json": {"schema": PaginationMetadataSchema}},
        }, lazy=True)

    def handle_http_exception(self, error):
        data = getattr(error, "data", None) or {}
        if error.code == 429:  # flask-limiter's RateLimitExceeded: say which limit
            return error_body(429, f"rate limit exceeded ({error.description}); retry later"), 429
        message = data.get("message") or DEFAULT_MESSAGES.get(error.code) or error.description
        body = error_body(error.code, message, data.get("messages"))
        headers = dict(data.get("headers") or {})
        if error.code == 405 and getattr(error, "valid_methods", None):
            headers["Allow"] = ", ".join(error.valid_methods)
        return body, error.code, headers


class CachingJWTManager(JWTManager):
    """flask-jwt-extended, remembering the tokens it has verified (per process, bounded).

    Verifying a token (decoding it three times, checking its signature) was a tenth of the CPU of
    a booking request. A token is immutable: once verified with this app's key it stays valid
    until its `exp`, which is checked on every use; past it, the full decode runs again and
    reports the expiry as usual.
    """

    CACHE_SIZE = 4096

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._verified: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def _decode_jwt_from_config(self, encoded_token: str, csrf_value=None, allow_expired: bool = False) -> dict:
        key = (current_app.config["JWT_SECRET_KEY"], encoded_token, csrf_value)
        claims = self._verified.get(key)
        if claims is not None and time.time() < claims.get("exp", 0):
            return claims
        claims = super()._decode_jwt_from_config(encoded_token, csrf_value, allow_expired)
        if "exp" in claims and time.time() < claims["exp"]:
            with self._lock:
                self._verified[key] = claims
                if len(self._verified) > self.CACHE_SIZE:
                    self._verified.popitem(last=False)
        return claims


api = BoxofficeApi()
jwt = CachingJWTManager()
migrate = Migrate()
