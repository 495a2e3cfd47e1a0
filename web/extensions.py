"""Flask extensions, created unbound and attached to the app in create_app."""
from flask_jwt_extended import JWTManager
from flask_migrate import Migrate
from flask_smorest import Api

from web.errors import error_body


DEFAULT_MESSAGES = {
    400: "the request body is not valid JSON",
    422: "the request has invalid fields",
}


class BoxofficeApi(Api):
    """flask-smorest's Api with SPEC §5 error bodies: always `message`, `errors` per field."""

    def handle_http_exception(self, error):
        data = getattr(error, "data", None) or {}
        message = data.get("message") or DEFAULT_MESSAGES.get(error.code) or error.description
        body = error_body(error.code, message, data.get("messages"))
        return body, error.code, data.get("headers") or {}


api = BoxofficeApi()
jwt = JWTManager()
migrate = Migrate()
