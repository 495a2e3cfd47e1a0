"""Every lifecycle path, carried out by a real Celery worker process against real PostgreSQL,
Redis and the gateway sandbox."""
import pytest

pytestmark = pytest.mark.usefixtures("worker")


def test_booking_is_accepted_at_once_then_paid_with_an_issuable_ticket(app, customer, make_show, book, wait_for, gateway):
    show = make_show(capacity=10, price=5000)
    response = book(customer, show["id"], qty=3)
    assert response.status_code == 202
    assert response.json["status"] == "PENDING"
    assert response.headers["Location"] == f"/bookings/{response.json['id']}"
    assert response.json["amount"] == 15000

    booking_id = response.json["id"]
    state = wait_for(booking_id, status="PAID", payment_status="PAID", ticket_status="ISSUABLE")
    assert state["remaining"] == 7
    assert gateway.ledger(booking_id)["captured"] == 15000

    seen = app.test_client().get(f"/bookings/{booking_id}", headers=customer["headers"]).json
    assert (seen["status"], seen["payment_status"], seen["ticket_status"]) == ("PAID", "PAID", "ISSUABLE")


def test_my_page_catches_up_with_the_booking(app, customer, make_show, book, wait_for):
    show = make_show()
    booking_id = book(customer, show["id"], qty=2).json["id"]
    wait_for(booking_id, status="PAID", ticket_status="ISSUABLE")

    from tests.processes import wait_until

    def entry():
        rows = app.test_client().get("/me/bookings", headers=customer["headers"]).json
        row = next((r for r in rows if r["booking_id"] == booking_id), None)
        return row if row and row["ticket_status"] == "ISSUABLE" else None
    row = wait_until(entry, 30, 0.1, "the my page to show the issuable ticket")
    assert row["status"] == "PAID" and row["payment_status"] == "PAID"
    assert row["show_title"] == show["title"] and row["qty"] == 2


def test_declined_card_fails_the_booking_and_gives_the_seats_back(customer, make_show, book, wait_for, show_remaining, gateway):
    show = make_show(capacity=5)
    booking_id = book(customer, show["id"], qty=4, payment_method="tok_declined").json["id"]
    state = wait_for(booking_id, status="PAYMENT_FAILED")
    assert state["payment_status"] == "DECLINED"
    assert state["ticket_status"] == "NOT_ISSUABLE"
    assert show_remaining(show["id"]) == 5
    assert gateway.ledger(booking_id)["captured"] == 0


def test_booking_more_seats_than_remain_is_rejected_and_holds_nothing(customer, make_show, book, wait_for, show_remaining, gateway):
    show = make_show(capacity=3)
    booking_id = book(customer, show["id"], qty=4).json["id"]
    state = wait_for(booking_id, status="REJECTED")
    assert state["payment_status"] == "NONE" and not state["seats_held"]
    assert show_remaining(show["id"]) == 3
    assert gateway.ledger(booking_id)["captured"] == 0  # no seats, no charge


def test_issuing_a_paid_ticket_returns_the_same_ticket_every_time(app, customer, make_show, book, wait_for):
    show = make_show()
    booking_id = book(customer, show["id"], qty=2).json["id"]
    wait_for(booking_id, ticket_status="ISSUABLE")
    client = app.test_client()
    first = client.post(f"/bookings/{booking_id}/ticket", headers=customer["headers"])
    again = client.post(f"/bookings/{booking_id}/ticket", headers=customer["headers"])
    assert first.status_code == again.status_code == 200
    assert first.json == again.json
    ticket = first.json["ticket"]
    assert ticket["booking_id"] == booking_id and ticket["show_id"] == show["id"] and ticket["qty"] == 2
    assert ticket["code"] and ticket["issued_at"]


def test_a_ticket_cannot_be_issued_before_payment(app, customer, make_show, book, wait_for):
    show = make_show(capacity=1)
    book(customer, show["id"], qty=1)  # takes the only seat
    late = book(customer, show["id"], qty=1).json["id"]
    wait_for(late, status="REJECTED")
    response = app.test_client().post(f"/bookings/{late}/ticket", headers=customer["headers"])
    assert response.status_code == 409
    assert response.json["message"]


def test_cancelling_a_paid_booking_voids_the_ticket_refunds_and_returns_the_seats(app, customer, make_show, book, wait_for, show_remaining, gateway):
    show = make_show(capacity=6, price=2000)
    booking_id = book(customer, show["id"], qty=2).json["id"]
    wait_for(booking_id, status="PAID", ticket_status="ISSUABLE")
    assert show_remaining(show["id"]) == 4

    response = app.test_client().post(f"/bookings/{booking_id}/cancel", headers=customer["headers"])
    assert response.status_code == 202
    assert response.json["status"] == "CANCELLING"
    assert response.json["ticket_status"] == "VOID"  # in the same transaction as the cancel

    state = wait_for(booking_id, status="CANCELLED")
    assert state["payment_status"] == "REFUNDED" and state["ticket_status"] == "VOID"
    assert show_remaining(show["id"]) == 6
    ledger = gateway.ledger(booking_id)
    assert ledger["captured"] == 4000 and ledger["refunded"] == 4000

    again = app.test_client().post(f"/bookings/{booking_id}/cancel", headers=customer["headers"])
    assert again.status_code == 202 and again.json["status"] == "CANCELLED"
    issue = app.test_client().post(f"/bookings/{booking_id}/ticket", headers=customer["headers"])
    assert issue.status_code == 409


def test_cancelling_an_issued_ticket_voids_it(app, customer, make_show, book, wait_for, gateway):
    show = make_show()
    booking_id = book(customer, show["id"], qty=1).json["id"]
    wait_for(booking_id, ticket_status="ISSUABLE")
    client = app.test_client()
    assert client.post(f"/bookings/{booking_id}/ticket", headers=customer["headers"]).status_code == 200
    assert client.post(f"/bookings/{booking_id}/cancel", headers=customer["headers"]).status_code == 202
    state = wait_for(booking_id, status="CANCELLED")
    assert state["ticket_status"] == "VOID" and state["payment_status"] == "REFUNDED"
    ledger = gateway.ledger(booking_id)
    assert ledger["captured"] - ledger["refunded"] == 0


def test_cancelling_a_rejected_booking_is_a_conflict(app, customer, make_show, book, wait_for):
    show = make_show(capacity=1)
    booking_id = book(customer, show["id"], qty=2).json["id"]
    wait_for(booking_id, status="REJECTED")
    response = app.test_client().post(f"/bookings/{booking_id}/cancel", headers=customer["headers"])
    assert response.status_code == 409


def test_same_idempotency_key_returns_the_same_booking_and_charges_once(app, customer, make_show, book, wait_for, gateway):
    show = make_show(capacity=10)
    first = book(customer, show["id"], qty=2, key="order-42")
    second = book(customer, show["id"], qty=2, key="order-42")
    assert first.status_code == second.status_code == 202
    assert first.json["id"] == second.json["id"]
    other_body = book(customer, show["id"], qty=3, key="order-42")
    assert other_body.status_code == 422
    wait_for(first.json["id"], status="PAID")
    assert gateway.ledger(first.json["id"])["charges"] == 1
    assert app.test_client().get(f"/shows/{show['id']}").json["remaining"] == 8


def test_a_step_delivered_twice_moves_money_once(app, worker, customer, make_show, book, wait_for, gateway):
    """Duplicate charges and refunds, each waited for until the worker has finished it: every one
    ends normally (none fails, none is recorded as given up), the charges find nothing to do, and
    the gateway holds one charge and one refund. The gateway is slow meanwhile, so the duplicate
    refunds are at the gateway together with the real one, not after it has settled."""
    from tests.integration.observed_stack import assert_each_started_once, ended_deliveries, failures_of, returned
    show = make_show(capacity=4, price=3000)
    booking_id = book(customer, show["id"], qty=1).json["id"]
    wait_for(booking_id, status="PAID", ticket_status="ISSUABLE")
    celery = app.extensions["celery"]
    charges = [celery.send_task("payments.charge", args=[booking_id]).id for _ in range(3)]
    gateway.set_faults(latency_ms=700)
    try:
        assert app.test_client().post(f"/bookings/{booking_id}/cancel", headers=customer["headers"]).status_code == 202
        refunds = [celery.send_task("payments.refund", args=[booking_id]).id for _ in range(3)]
        ended = ended_deliveries(worker, charges + refunds)
    finally:
        gateway.clear_faults()
    assert all(returned(ended[task_id]).startswith("nothing to charge") for task_id in charges), ended
    assert all(ended[task_id]["state"] == "SUCCESS" for task_id in refunds), ended
    assert_each_started_once(app, charges + refunds)  # each ran once, no retry
    assert failures_of(app, booking_id) == []
    state = wait_for(booking_id, status="CANCELLED", payment_status="REFUNDED", ticket_status="VOID")
    assert state["remaining"] == 4 and not state["seats_held"]
    ledger = gateway.ledger(booking_id)
    assert (ledger["charges"], ledger["refunds"]) == (1, 1)
    assert ledger["captured"] == 3000 and ledger["refunded"] == 3000
