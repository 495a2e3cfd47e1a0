"""Test-only steps, loaded into a worker with `--include` (never by the application)."""
import os
import signal

from celery import shared_task

from models import db
from models.task_failures import TaskFailure


@shared_task(name="payments.reliability_dies_once")
def dies_once(marker: str) -> str:
    """Kills its own worker process on the first delivery, completes on the next (row 3)."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    with open(marker + ".done", "w") as file:
        file.write("done")
    return "done"


@shared_task(name="payments.reliability_always_dies")
def always_dies(marker: str) -> str:
    """Kills its own worker process on every delivery (row 3): only the attempt cap stops it."""
    with open(marker, "a") as file:
        file.write("x")
    os.kill(os.getpid(), signal.SIGKILL)


__all__ = ["dies_once", "always_dies", "TaskFailure", "db"]
