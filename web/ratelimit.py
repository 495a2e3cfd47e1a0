"""Rate limits (SPEC §5: generous for a person, there to stop bots), kept in Redis so every
gunicorn worker and every API host counts against the same window.

- POST /bookings: RATE_LIMIT_BOOKINGS per customer (the token's identity).
- /auth/*: per client IP, RATE_LIMIT_AUTH requests and RATE_LIMIT_AUTH_FAILURES failed ones
  (password guessing, mass registration), counted over all /auth routes together.
- Nothing else is limited, not even while Redis is down (see `_not_limited`).

Redis down, on purpose: bookings must still be accepted (the outbox relays their steps once the
broker is back), so the limiter does not fail closed. Each process falls back to an in-memory
window of RATE_LIMIT_FALLBACK per client (customer, else IP) and logs a warning; it checks the
storage again as requests come and goes back to Redis when it answers. The storage client times
out quickly so an unreachable Redis costs a request at most RATE_LIMIT_STORAGE_TIMEOUT_S.
"""
import logging
from functools import partial

import flask_limiter
from flask import Flask, current_app, request
from flask_jwt_extended import get_jwt_identity
from flask_limiter import RateLimitExceeded

log = logging.getLogger(__name__)


class Limiter(flask_limiter.Limiter):
    """flask-limiter, safe when Redis goes away under a threaded worker (gunicorn gthread).

    flask-limiter switches to its in-memory fallback in the first request that finds the storage
    unreachable; a request of another thread that was talking to the storage at that moment
    re-raises the connection error (a 500). Here that request is checked again, on the fallback.
    """

    def _check_request_limit(self, callable_name=None, in_middleware=True):
        dead_before = self._storage_dead
        try:
            return super()._check_request_limit(callable_name=callable_name, in_middleware=in_middleware)
        except RateLimitExceeded:
            raise
        except Exception as error:
            if dead_before or not (self._in_memory_fallback_enabled and self._storage_dead):
                raise
            log.warning("rate limit storage unreachable (%r); checking this request in memory", error)
            self.context.seen_limits.clear()
            return super()._check_request_limit(callable_name=callable_name, in_middleware=in_middleware)


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


# The routes that have a limit: POST /bookings (by its view's qualified name) and whole blueprints.
LIMITED_VIEWS: set[str] = set()
LIMITED_BLUEPRINTS: set[str] = set()


def _qualified(view) -> str:
    return f"{view.__module__}.{view.__qualname__}"


def queue_joins_limit() -> str:
    return current_app.config["RATE_LIMIT_QUEUE_JOINS"]


def limit_queue_joins(view):
    """Joins of waiting rooms, per client IP: a person joins a few queues, a bot farm many."""
    LIMITED_VIEWS.add(_qualified(view))
    return limiter.limit(queue_joins_limit, key_func=lambda: f"ip:{client_ip()}")(view)


def limit_bookings(view):
    """Decorates POST /bookings below login_required, so the token is verified and the key is the customer."""
    LIMITED_VIEWS.add(_qualified(view))
    return limiter.limit(bookings_limit, key_func=customer_or_ip)(view)


@limiter.request_filter
def _not_limited() -> bool:
    """Routes without a limit are left alone. flask-limiter's in-memory fallback (while Redis is
    down) would otherwise apply RATE_LIMIT_FALLBACK per IP to every route, health checks and show
    listings included, and turn a limiter outage into refused reads."""
    if request.blueprint in LIMITED_BLUEPRINTS:
        return False
    view = current_app.view_functions.get(request.endpoint or "")
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        view = getattr(view_class, request.method.lower(), None)
    return view is None or _qualified(view) not in LIMITED_VIEWS


def auth_failures_limit() -> str:
    return current_app.config["RATE_LIMIT_AUTH_FAILURES"]


def _ip_key() -> str:
    return f"ip:{client_ip()}"


def limit_per_ip(blueprint) -> None:
    """Over all routes of `blueprint` together, per client IP: RATE_LIMIT_AUTH requests, of which
    at most RATE_LIMIT_AUTH_FAILURES may fail (wrong password, taken email, invalid input). Password
    guessing hits the second limit long before a person logging in hits either. The budgets are
    shared by the routes (an address locked out of /auth/token cannot go on at /auth/register)."""
    LIMITED_BLUEPRINTS.add(blueprint.name)
    limiter.shared_limit(auth_limit, scope=f"{blueprint.name}-requests", key_func=_ip_key)(blueprint)
    limiter.shared_limit(auth_failures_limit, scope=f"{blueprint.name}-failures", key_func=_ip_key,
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
    _guard_after_request(app)
    # flask-limiter logs the switch to in-memory storage and back through its own logger.
    limiter.logger.setLevel(logging.INFO)


def _guard_after_request(app: Flask) -> None:
    """After the view, flask-limiter deducts conditional hits (failed logins) and adds the
    X-RateLimit-* headers, both in the storage. If Redis goes away between the check and that
    point (or another thread has just switched to the fallback) it raises, turning an answered
    request into a 500. Those extras are skipped instead; the request's own answer stands."""
    hooks = app.after_request_funcs.get(None, [])
    for index, hook in enumerate(hooks):
        if isinstance(hook, partial) and hook.args and hook.args[0] is limiter:
            hooks[index] = partial(_headers_if_possible, hook)


def _headers_if_possible(inject, response):
    try:
        return inject(response)
    except Exception as error:  # the storage went away mid-request; the fallback takes the next one
        log.warning("rate limit headers skipped, the storage is unreachable: %r", error)
        return response
