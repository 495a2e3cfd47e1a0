"""NFR 3: while ticket issuance is overloaded (the tickets queue backlog over its threshold),
charges pause and refunds are deferred, nothing is lost; once the backlog drains they resume by
themselves. A private Redis (its tickets queue is the backlog), gunicorn and workers."""
import pytest
import requests

from tests.integration.test_reliability_faults import Private, private_app
from tests.processes import wait_until

OVERLOADED = {"OVERLOAD_TICKETS_BACKLOG": "5", "TASK_MAX_RETRIES__PAYMENTS_CHARGE": "1000",
              "TASK_MAX_RETRIES__PAYMENTS_REFUND": "1000"}


@pytest.fixture(scope="module")
def private(workdir, gateway):
    stack = Private(workdir / "overload", gateway)
    yield stack
    stack.close()


def my_page_entry(private, customer, booking_id):
    response = requests.get(private.api_url + "/me/bookings?page_size=100", headers=customer["headers"], timeout=10)
    assert response.status_code == 200, response.text
    return next((entry for entry in response.json() if entry.get("booking_id", entry.get("id")) == booking_id), None)


def test_charges_and_refunds_wait_while_tickets_are_backlogged_and_resume_when_it_drains(
        app, private, gateway, customer, make_show, booking_state, wait_for):
    show = make_show(capacity=6, price=1100)
    worker = private.worker(queues="seats,payments,mypage,maintenance", extra_env=OVERLOADED)  # nobody on tickets
    earlier = private.book(customer, show["id"])
    wait_for(earlier, status="PAID", payment_status="PAID", ticket_status="NOT_ISSUABLE", timeout=90)
    other = private_app(app, private)
    with other.app_context():  # the backlog: ticket steps nobody takes (no-ops once they run)
        for _ in range(5):
            other.extensions["celery"].send_task("tickets.make_issuable", args=[earlier])
    assert private.redis().llen("tickets") >= 5

    booking_id = private.book(customer, show["id"])
    wait_until(lambda: "payments.charge deferred" in worker.log(), 90, 0.2, "the charge to be deferred")
    cancel = requests.post(f"{private.api_url}/bookings/{earlier}/cancel", headers=customer["headers"], timeout=10)
    assert cancel.status_code == 202, cancel.text
    wait_until(lambda: "payments.refund deferred" in worker.log(), 90, 0.2, "the refund to be deferred")

    state = booking_state(booking_id)
    assert (state["status"], state["payment_status"]) == ("CONFIRMED", "NONE")  # seats held, no charge yet
    assert gateway.ledger(booking_id)["charges"] == 0
    entry = wait_until(lambda: my_page_entry(private, customer, booking_id), 60, 0.2, "the my page entry")
    assert entry["status"] == "CONFIRMED"  # in progress, not failed
    assert booking_state(earlier)["status"] == "CANCELLING"
    assert gateway.ledger(earlier)["refunded"] == 0

    private.worker(queues="tickets")  # issuance catches up: the backlog drains
    wait_for(booking_id, status="PAID", payment_status="PAID", ticket_status="ISSUABLE", timeout=120)
    wait_for(earlier, status="CANCELLED", payment_status="REFUNDED", timeout=120)
    ledger = gateway.ledger(booking_id)
    assert (ledger["captured"], ledger["charges"]) == (1100, 1)
    ledger = gateway.ledger(earlier)
    assert (ledger["captured"], ledger["refunded"]) == (1100, 1100)
    assert booking_state(booking_id)["remaining"] == 5
    private.stop_processes()
