"""All settings in one place, from the environment, with safe defaults for a developer's machine."""
import os


def database_url(url: str) -> str:
    """Accept plain postgresql:// URLs and use the psycopg 3 driver for them."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


class Config:
    SQLALCHEMY_DATABASE_URI = database_url(
        os.environ.get("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5433/boxoffice"))
    SQLALCHEMY_ENGINE_OPTIONS = {
        "pool_size": int(os.environ.get("DB_POOL_SIZE", "5")),
        "max_overflow": int(os.environ.get("DB_MAX_OVERFLOW", "10")),
        "pool_pre_ping": True,
        "pool_recycle": 1800,
        # A statement stuck on a lock fails (and its task retries) instead of hanging a worker.
        "connect_args": {"options": "-c lock_timeout=5000 -c statement_timeout=30000"},
    }
    REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6380/0")
    GATEWAY_URL = os.environ.get("GATEWAY_URL", "http://127.0.0.1:8100")
    GATEWAY_TIMEOUT_S = float(os.environ.get("GATEWAY_TIMEOUT_S", "5"))

    # How long seats stay held while the payment completes (SPEC: hold deadline).
    HOLD_MINUTES = float(os.environ.get("HOLD_MINUTES", "10"))

    # The payment gateway's circuit breaker (tasks/breaker.py), shared by all workers via Redis:
    # opens after BREAKER_FAIL_MAX consecutive failures, tries again after BREAKER_RESET_S.
    BREAKER_REDIS_URL = os.environ.get("BREAKER_REDIS_URL") or REDIS_URL
    BREAKER_FAIL_MAX = int(os.environ.get("BREAKER_FAIL_MAX", "5"))
    BREAKER_RESET_S = float(os.environ.get("BREAKER_RESET_S", "15"))
    # NFR 3 (tasks/overload.py): charges pause and refunds wait while ticket issuance is overloaded.
    OVERLOAD_TICKETS_BACKLOG = int(os.environ.get("OVERLOAD_TICKETS_BACKLOG", "5000"))
    OVERLOAD_TICKETS_FAILURE_RATE = float(os.environ.get("OVERLOAD_TICKETS_FAILURE_RATE", "0.5"))
    OVERLOAD_MIN_SAMPLES = int(os.environ.get("OVERLOAD_MIN_SAMPLES", "20"))
    OVERLOAD_WINDOW_S = int(os.environ.get("OVERLOAD_WINDOW_S", "60"))

    # The waiting room (services/waiting_room.py): its index in Redis, the key of its
    # Admission-Tokens (derived from SECRET_KEY unless set), and the joins one client IP may make.
    QUEUE_REDIS_URL = os.environ.get("QUEUE_REDIS_URL")  # None: REDIS_URL
    QUEUE_REDIS_TIMEOUT_S = float(os.environ.get("QUEUE_REDIS_TIMEOUT_S", "1"))
    ADMISSION_TOKEN_SECRET = os.environ.get("ADMISSION_TOKEN_SECRET")
    RATE_LIMIT_QUEUE_JOINS = os.environ.get("RATE_LIMIT_QUEUE_JOINS", "30/minute")  # per client IP

    # Webhooks (SPEC §12, docs/webhooks.md): a delivery's timeouts (short: a slow receiver holds a
    # worker for no longer), its backoff (exponential with jitter, base doubling up to the cap) and
    # how long a delivery keeps being retried before it is recorded FAILED (at least 24 hours);
    # the lease an attempt holds its delivery for (above the timeouts: then it is due again).
    WEBHOOK_CONNECT_TIMEOUT_S = float(os.environ.get("WEBHOOK_CONNECT_TIMEOUT_S", "3"))
    WEBHOOK_TIMEOUT_S = float(os.environ.get("WEBHOOK_TIMEOUT_S", "5"))
    WEBHOOK_RETRY_BASE_S = float(os.environ.get("WEBHOOK_RETRY_BASE_S", "10"))
    WEBHOOK_RETRY_MAX_S = float(os.environ.get("WEBHOOK_RETRY_MAX_S", "3600"))
    WEBHOOK_RETRY_FOR_S = float(os.environ.get("WEBHOOK_RETRY_FOR_S", str(24 * 3600)))
    WEBHOOK_LEASE_S = float(os.environ.get("WEBHOOK_LEASE_S", "60"))
    # Production: refuse endpoints (and deliveries) whose host resolves to a loopback, private,
    # link-local or reserved address. Off by default, for receivers on 127.0.0.1 in development.
    WEBHOOK_REFUSE_PRIVATE = os.environ.get("WEBHOOK_REFUSE_PRIVATE", "off") == "on"

    # Customer mail (SPEC §12): the SMTP server (bin/run's local sink by default), the sender, the
    # base of the links in the mail, and the retries while the server is down or refuses.
    SMTP_URL = os.environ.get("SMTP_URL", "smtp://127.0.0.1:8025")
    SMTP_TIMEOUT_S = float(os.environ.get("SMTP_TIMEOUT_S", "10"))
    MAIL_FROM = os.environ.get("MAIL_FROM", "boxoffice <tickets@boxoffice.example>")
    PUBLIC_URL = os.environ.get("PUBLIC_URL", "http://127.0.0.1:8000")
    MAIL_RETRY_BASE_S = float(os.environ.get("MAIL_RETRY_BASE_S", "5"))
    MAIL_RETRY_MAX_S = float(os.environ.get("MAIL_RETRY_MAX_S", "600"))
    MAIL_RETRY_FOR_S = float(os.environ.get("MAIL_RETRY_FOR_S", str(3 * 24 * 3600)))
    MAIL_LEASE_S = float(os.environ.get("MAIL_LEASE_S", "120"))

    # The waiting room page's link to the promoter's shop once admitted ({show_id}, {token}); unset: no link.
    SHOP_URL_TEMPLATE = os.environ.get("SHOP_URL_TEMPLATE")

    # Auth: a secret from the environment, else one generated at first run in the instance folder.
    JWT_SECRET_KEY = os.environ.get("SECRET_KEY")
    JWT_ACCESS_TOKEN_EXPIRES = int(os.environ.get("TOKEN_TTL_S", "3600"))
    JWT_ERROR_MESSAGE_KEY = "message"

    MAX_CONTENT_LENGTH = 64 * 1024

    # Rate limits (web/ratelimit.py), counted in Redis across workers; "N/second|minute|hour|day".
    RATE_LIMIT_BOOKINGS = os.environ.get("RATE_LIMIT_BOOKINGS", "120/minute")  # per customer
    RATE_LIMIT_AUTH = os.environ.get("RATE_LIMIT_AUTH", "300/minute")  # per client IP on /auth/*
    RATE_LIMIT_AUTH_FAILURES = os.environ.get("RATE_LIMIT_AUTH_FAILURES", "30/minute")  # failed ones
    RATE_LIMIT_KEY_PREFIX = os.environ.get("RATE_LIMIT_KEY_PREFIX", "boxoffice")
    RATE_LIMIT_FALLBACK = os.environ.get("RATE_LIMIT_FALLBACK", "600/minute")  # per process, Redis down
    RATELIMIT_STORAGE_URI = os.environ.get("RATE_LIMIT_STORAGE_URL") or REDIS_URL
    RATE_LIMIT_STORAGE_TIMEOUT_S = float(os.environ.get("RATE_LIMIT_STORAGE_TIMEOUT_S", "0.5"))
    RATELIMIT_ENABLED = os.environ.get("RATE_LIMITS", "on") != "off"
    TRUSTED_PROXIES = int(os.environ.get("TRUSTED_PROXIES", "0"))  # X-Forwarded-For hops to trust

    # OpenAPI (flask-smorest).
    API_TITLE = "boxoffice"
    API_VERSION = "1.0"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/"
    OPENAPI_JSON_PATH = "openapi.json"
    # /docs: Swagger UI from the flask-swagger-ui package's files, served by web/docs.py (no CDN).
    OPENAPI_SWAGGER_UI_PATH = "docs"
    OPENAPI_SWAGGER_UI_URL = "/docs/assets/"
    OPENAPI_SWAGGER_UI_CONFIG = {"deepLinking": True, "persistAuthorization": True}
    API_SPEC_OPTIONS = {
        "info": {"description": (
            "Ticket booking. Get a token from POST /auth/token and send it as `Authorization: Bearer "
            "<token>`. Every error has the body `{code, status, message, errors?}`; `errors` lists, "
            "per field, why input was rejected. Unknown fields are rejected (422). List endpoints "
            "take `page` and `page_size` and return an `X-Pagination` header. POST /bookings is "
            "rate limited per customer and /auth/* per IP (429 with Retry-After).")},
        "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
    }
