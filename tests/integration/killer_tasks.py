"""Test-only: makes the real charge steps (`payments.charge`, and `payments.charge_many` for a
batch holding one of them) SIGKILL their own worker process for chosen bookings, on every
delivery (RELIABILITY row 3). Loaded into a test's worker with
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
_lock_bookings = payments.lock_bookings


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


def get_booking(booking_id, *args, **kwargs):
    if _doomed(booking_id):
        _die(booking_id)
    return _get_booking(booking_id, *args, **kwargs)


def lock_bookings(booking_ids):
    for booking_id in booking_ids:
        if _doomed(booking_id):
            _die(booking_id)
    return _lock_bookings(booking_ids)


payments.get_booking = get_booking
payments.lock_bookings = lock_bookings
