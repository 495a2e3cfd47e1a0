"""What counts as a transient failure, and how steps back off when they meet one."""
import os

from sqlalchemy.exc import InterfaceError, OperationalError

from celeryconfig import RETRY_BACKOFF_MAX, RETRY_BACKOFF_MAX_BOUND  # noqa: F401 (re-exported)
from gateway.client import GatewayUnavailable
from services.errors import StepNotReady


# Gateway timeouts and 5xx, lost database connections, lock and statement timeouts,
# serialization failures: all worth another try. Anything else is a bug or a permanent outcome.
TRANSIENT_ERRORS = (GatewayUnavailable, OperationalError, InterfaceError, StepNotReady)

# Bounded exponential backoff with full jitter: 1, 2, 4 … capped at RETRY_BACKOFF_MAX seconds.
# The bound is set in celeryconfig, which asserts it stays well below the broker's visibility
# timeout (and must not import this package to do so). Retries can be lowered by environment.
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

