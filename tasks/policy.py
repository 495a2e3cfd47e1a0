"""What counts as a transient failure, and how steps back off when they meet one."""
from sqlalchemy.exc import InterfaceError, OperationalError

from gateway.client import GatewayUnavailable


class StepNotReady(Exception):
    """The step must wait (a charge may still be in flight); try again later."""


# Gateway timeouts and 5xx, lost database connections, lock and statement timeouts,
# serialization failures: all worth another try. Anything else is a bug or a permanent outcome.
TRANSIENT_ERRORS = (GatewayUnavailable, OperationalError, InterfaceError, StepNotReady)

# Bounded exponential backoff with full jitter: 1, 2, 4 … capped at RETRY_BACKOFF_MAX seconds.
# celeryconfig asserts these stay well below the broker's visibility timeout.
RETRY_BACKOFF_MAX = 120
MAX_RETRIES = 12

RETRY_POLICY = {
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": 1,
    "retry_backoff_max": RETRY_BACKOFF_MAX,
    "retry_jitter": True,
    "max_retries": MAX_RETRIES,
}
