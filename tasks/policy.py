"""What counts as a transient failure, and how steps back off when they meet one."""
import os

from sqlalchemy.exc import InterfaceError, OperationalError

from gateway.client import GatewayUnavailable


class StepNotReady(Exception):
    """The step must wait (a charge may still be in flight); try again later."""


# Gateway timeouts and 5xx, lost database connections, lock and statement timeouts,
# serialization failures: all worth another try. Anything else is a bug or a permanent outcome.
TRANSIENT_ERRORS = (GatewayUnavailable, OperationalError, InterfaceError, StepNotReady)

# Bounded exponential backoff with full jitter: 1, 2, 4 … capped at RETRY_BACKOFF_MAX seconds.
# celeryconfig asserts these stay well below the broker's visibility timeout. Both can be lowered
# by environment (tests, the chaos harness), never raised above the defaults' bound.
RETRY_BACKOFF_MAX_BOUND = 120
RETRY_BACKOFF_MAX = min(int(os.environ.get("RETRY_BACKOFF_MAX_S", RETRY_BACKOFF_MAX_BOUND)), RETRY_BACKOFF_MAX_BOUND)
MAX_RETRIES = int(os.environ.get("TASK_MAX_RETRIES", "12"))


def retry_policy(task_name: str | None = None, *, max_retries: int | None = None,
                 backoff_max: int | None = None) -> dict:
    """Celery retry options for one task: per-task bounds, overridable per task by environment
    (TASK_MAX_RETRIES__PAYMENTS_CHARGE=5 for `payments.charge`)."""
    retries = MAX_RETRIES if max_retries is None else max_retries
    if task_name:
        retries = int(os.environ.get(f"TASK_MAX_RETRIES__{task_name.replace('.', '_').upper()}", retries))
    return {
        "autoretry_for": TRANSIENT_ERRORS,
        "retry_backoff": 1,
        "retry_backoff_max": min(backoff_max or RETRY_BACKOFF_MAX, RETRY_BACKOFF_MAX),
        "retry_jitter": True,
        "max_retries": retries,
    }


RETRY_POLICY = retry_policy()
