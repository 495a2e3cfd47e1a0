"""Test-only: makes the real refund step (`payments.refund`) SIGKILL its own worker process right
after the gateway made a refund for a chosen booking, before the step could record anything: the
worst moment (money moved, our rows not). Once per booking. Loaded into a test's worker with
`--include tests.integration.refund_killer_tasks`, never by the application.

REFUND_KILLER_FILE names a file of booking ids (one a line); each death is appended to
`<file>.deaths` (the booking id and the refund the gateway answered) before the kill.
"""
import json
import os
import signal

from services import refund

_refund_rest = refund.refund_rest


def _dies_now(booking_id: str) -> bool:
    path = os.environ.get("REFUND_KILLER_FILE")
    if not path or not os.path.exists(path):
        return False
    with open(path) as file:
        if booking_id not in file.read().split():
            return False
    deaths = path + ".deaths"
    if os.path.exists(deaths):
        with open(deaths) as file:
            if any(json.loads(line)["booking_id"] == booking_id for line in file if line.strip()):
                return False
    return True


def refund_rest(charge, keep=0):
    made = _refund_rest(charge, keep)
    if made is not None and _dies_now(charge.reference):
        with open(os.environ["REFUND_KILLER_FILE"] + ".deaths", "a") as file:
            file.write(json.dumps({"booking_id": charge.reference, "refund_id": made.id, "amount": made.amount}) + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
    return made


refund.refund_rest = refund_rest
