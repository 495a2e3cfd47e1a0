"""Registration, tokens, and the role checks every other blueprint uses."""
from functools import wraps

from flask import current_app
from flask.views import MethodView
from flask_jwt_extended import create_access_token, get_jwt, get_jwt_identity, verify_jwt_in_request
from flask_smorest import abort
from marshmallow import Schema, fields, validate

from web.fields import Text

from models.users import Role
from services.accounts import log_in, register_user
from web.errors import documented_errors
from web.extensions import jwt
from web.parsing import Blueprint
from web.ratelimit import limit_per_ip

blp = Blueprint("auth", __name__, url_prefix="/auth", description="Registration and access tokens")
limit_per_ip(blp)  # RATE_LIMIT_AUTH per client IP
BEARER = [{"bearerAuth": []}]


class RegisterSchema(Schema):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    password = Text(required=True, load_only=True, validate=validate.Length(min=8, max=128))
    name = Text(required=True, validate=validate.Length(min=1, max=100))
    locale = fields.String(load_default="ko", validate=validate.OneOf(["ko", "en"]),
                           metadata={"description": "the language of the customer's mail (default ko)"})


class UserSchema(Schema):
    id = fields.String(dump_only=True)
    email = fields.String()
    name = fields.String()
    locale = fields.String()


class TokenRequestSchema(Schema):
    email = Text(required=True, validate=validate.Length(min=1, max=254))
    password = Text(required=True, load_only=True, validate=validate.Length(min=1, max=128))


class TokenSchema(Schema):
    access_token = fields.String()
    token_type = fields.String()
    expires_in = fields.Integer()


@blp.route("/register")
class Registration(MethodView):
    @blp.arguments(RegisterSchema)
    @blp.response(201, UserSchema)
    @documented_errors(blp, 400, 413, 422, 429, e409="The email is already registered")
    def post(self, body):
        """Register a customer account"""
        return register_user(body["email"], body["password"], body["name"], locale=body["locale"])


@blp.route("/token")
class Token(MethodView):
    @blp.arguments(TokenRequestSchema)
    @blp.response(200, TokenSchema)
    @documented_errors(blp, 400, 413, 422, 429, e401="Wrong email or password")
    def post(self, body):
        """Exchange email and password for a bearer token"""
        user = log_in(body["email"], body["password"])
        if user is None:
            abort(401, message="wrong email or password")
        ttl = current_app.config["JWT_ACCESS_TOKEN_EXPIRES"]
        token = create_access_token(identity=user.id, additional_claims={"role": user.role})
        return {"access_token": token, "token_type": "Bearer", "expires_in": ttl}


def current_user_id() -> str:
    return get_jwt_identity()


def current_role() -> str:
    return get_jwt().get("role", Role.CUSTOMER)


def is_admin() -> bool:
    return current_role() == Role.ADMIN


def login_required(*roles: str):
    """Require a valid bearer token, and one of `roles` if given (403 otherwise)."""
    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            verify_jwt_in_request()
            if roles and current_role() not in roles:
                abort(403, message="this needs the role: " + " or ".join(roles))
            return view(*args, **kwargs)
        return wrapper
    return decorate


def owner_filter() -> str | None:
    """The customer whose bookings the caller may see; None for an admin (all of them)."""
    return None if is_admin() else current_user_id()


def _unauthorized(message: str):
    from web.errors import error_body
    return error_body(401, message), 401


@jwt.unauthorized_loader
def _missing_token(reason):
    return _unauthorized("a bearer token is required")


@jwt.invalid_token_loader
def _invalid_token(reason):
    return _unauthorized("the token is invalid")


@jwt.expired_token_loader
def _expired_token(header, payload):
    return _unauthorized("the token has expired")
