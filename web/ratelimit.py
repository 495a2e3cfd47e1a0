"""Rate limits (SPEC §5: generous for a person, there to stop bots), kept in Redis so every
gunicorn worker and every API host counts against the same window.

- POST /bookings: RATE_LIMIT_BOOKINGS per customer (the token's identity).
- /auth/*: per client IP, RATE_LIMIT_AUTH requests and RATE_LIMIT_AUTH_FAILURES failed ones
  (password guessing, mass registration).

Redis down, on purpose: bookings must still be accepted (the outbox relays their steps once the
broker is back), so the limiter does not fail closed. Each process falls back to an in-memory
window of RATE_LIMIT_FALLBACK per client (customer, else IP) and logs a warning; it checks the
storage again as requests come and goes back to Redis when it answers. The storage client times
out quickly so an unreachable Redis costs a request at most RATE_LIMIT_STORAGE_TIMEOUT_S.
"""
import logging

from flask import Flask, current_app, request
from flask_jwt_extended import get_jwt_identity
from flask_limiter import Limiter

log = logging.getLogger(__name__)


def client_ip() -> str:
    """The caller's address. Behind a proxy, set TRUSTED_PROXIES so this is the client's, not the proxy's."""
    return request.remote_addr or "unknown"


def customer_or_ip() -> str:
    """The customer of an already verified token, else the client IP."""
    try:
        identity = get_jwt_identity()
    except RuntimeError:  # no token verified in this request (yet)
        identity = None
    return f"user:{identity}" if identity else f"ip:{client_ip()}"


limiter = Limiter(key_func=customer_or_ip, headers_enabled=True)


def bookings_limit() -> str:
    return current_app.config["RATE_LIMIT_BOOKINGS"]


def auth_limit() -> str:
    return current_app.config["RATE_LIMIT_AUTH"]


# Decorates POST /bookings below login_required, so the token is verified and the key is the customer.
limit_bookings = limiter.limit(bookings_limit, key_func=customer_or_ip)


def auth_failures_limit() -> str:
    return current_app.config["RATE_LIMIT_AUTH_FAILURES"]


def _ip_key() -> str:
    return f"ip:{client_ip()}"


def limit_per_ip(blueprint) -> None:
    """On every route of `blueprint`, per client IP: RATE_LIMIT_AUTH requests, of which at most
    RATE_LIMIT_AUTH_FAILURES may fail (wrong password, taken email, invalid input). Password
    guessing hits the second limit long before a person logging in hits either."""
    limiter.limit(auth_limit, key_func=_ip_key)(blueprint)
    limiter.limit(auth_failures_limit, key_func=_ip_key, scope="auth-failures",
                  deduct_when=lambda response: response.status_code >= 400)(blueprint)


def init_app(app: Flask) -> None:
    config = app.config
    config.setdefault("RATELIMIT_STORAGE_URI", config["REDIS_URL"])
    timeout = float(config.get("RATE_LIMIT_STORAGE_TIMEOUT_S", 0.5))
    config.setdefault("RATELIMIT_STORAGE_OPTIONS", {"socket_timeout": timeout, "socket_connect_timeout": timeout})
    config.setdefault("RATELIMIT_KEY_PREFIX", config.get("RATE_LIMIT_KEY_PREFIX") or "boxoffice")
    config["RATELIMIT_IN_MEMORY_FALLBACK_ENABLED"] = True
    config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK", config["RATE_LIMIT_FALLBACK"])
    config.setdefault("RATELIMIT_HEADERS_ENABLED", True)

    proxies = int(config.get("TRUSTED_PROXIES", 0))
    if proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies)
    limiter.init_app(app)
    # flask-limiter logs the switch to in-memory storage and back through its own logger.
    limiter.logger.setLevel(logging.INFO)
