"""Test-only steps, loaded into a worker with `--include` (never by the application).

A step that kills its worker on every delivery is the real charge step made to do so
(killer_tasks.py): RELIABILITY row 3's attempt cap is shown on the step it protects."""
import os
import signal

from celery import shared_task


@shared_task(name="payments.reliability_dies_once")
def dies_once(marker: str) -> str:
    """Kills its own worker process on the first delivery, completes on the next (row 3)."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    with open(marker + ".done", "w") as file:
        file.write("done")
    return "done"
