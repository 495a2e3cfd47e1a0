"""Test-only: makes the real charge step (`payments.charge`, for a batch holding one of them)
SIGKILL its own worker process for chosen bookings, on every delivery (RELIABILITY row 3). Loaded into a test's worker with
`--include tests.integration.killer_tasks`, never by the application.

KILLER_BOOKINGS_FILE names a file of booking ids (one a line) whose charge must die; each death
is appended to `<file>.deaths` with the delivery info the worker saw, before the kill.
"""
import json
import os
import signal

from celery import current_task

from services import unit_of_work

_lock_bookings = unit_of_work.lock_bookings


def _doomed(booking_id: str) -> bool:
    path = os.environ.get("KILLER_BOOKINGS_FILE")
    if not path or not os.path.exists(path):
        return False
    with open(path) as file:
        return booking_id in file.read().split()


def _die(booking_id: str) -> None:
    request = current_task.request
    with open(os.environ["KILLER_BOOKINGS_FILE"] + ".deaths", "a") as file:
        file.write(json.dumps({"booking_id": booking_id, "task": current_task.name, "task_id": request.id,
                               "retries": request.retries, "delivery_info": request.delivery_info},
                              default=str) + "\n")
        file.flush()
        os.fsync(file.fileno())
    os.kill(os.getpid(), signal.SIGKILL)


def lock_bookings(booking_ids):
    if current_task and current_task.name == "payments.charge":
        for booking_id in booking_ids:
            if _doomed(booking_id):
                _die(booking_id)
    return _lock_bookings(booking_ids)


unit_of_work.lock_bookings = lock_bookings
