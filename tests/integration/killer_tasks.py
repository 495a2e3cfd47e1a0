"""Test-only: makes the real `payments.charge` step SIGKILL its own worker process for chosen
bookings, on every delivery (RELIABILITY row 3). Loaded into a test's worker with
`--include tests.integration.killer_tasks`, never by the application.

KILLER_BOOKINGS_FILE names a file of booking ids (one a line) whose charge must die; each death
is appended to `<file>.deaths` with the delivery info the worker saw, before the kill.
"""
import json
import os
import signal

from celery import current_task

from tasks import payments

_get_booking = payments.get_booking


def _doomed(booking_id: str) -> bool:
    path = os.environ.get("KILLER_BOOKINGS_FILE")
    if not path or not os.path.exists(path):
        return False
    with open(path) as file:
        return booking_id in file.read().split()


def get_booking(booking_id, *args, **kwargs):
    if _doomed(booking_id):
        request = current_task.request
        with open(os.environ["KILLER_BOOKINGS_FILE"] + ".deaths", "a") as file:
            file.write(json.dumps({"booking_id": booking_id, "task_id": request.id, "retries": request.retries,
                                   "delivery_info": request.delivery_info}, default=str) + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
    return _get_booking(booking_id, *args, **kwargs)


payments.get_booking = get_booking
