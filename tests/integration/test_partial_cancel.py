"""SPEC §11, partial cancellation through the API and a real worker: part of a PAID booking goes
back (qty for general admission, seats for reserved), its amount less the fee is refunded, the
booking stays PAID with the rest, the old ticket is void at the door and a new one is issuable;
bad input changes nothing; a partial cancel racing a check-in either admits or cancels."""
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
import requests

from tests.integration.observed_stack import start_api
from tests.processes import wait_until

pytestmark = pytest.mark.usefixtures("worker")

KOREAN = [{"hours_before": 168, "fee_percent": 0}, {"hours_before": 72, "fee_percent": 10},
          {"hours_before": 24, "fee_percent": 20}, {"hours_before": 0, "fee_percent": 30}]
HALL = {"name": "Partial hall", "sections": [
    {"name": "Floor", "rows": [{"name": "A", "seats": 6, "category": "VIP"}]},
    {"name": "Balcony", "rows": [{"name": "C", "seats": 6, "category": "R"}]},
]}
PRICES = {"VIP": 150_000, "R": 90_000}


@pytest.fixture
def paid(app, customer, make_show, book, wait_for):
    """A PAID booking of `qty` seats with its ticket issued; returns (show, booking id, ticket)."""
    def make(qty=4, show=None, issue=True):
        show = show or make_show(capacity=20, price=10_000, starts_in=timedelta(hours=50), cancellation_policy=KOREAN)
        booking_id = book(customer, show["id"], qty=qty).json["id"]
        wait_for(booking_id, status="PAID", ticket_status="ISSUABLE")
        ticket = None
        if issue:
            ticket = app.test_client().post(f"/bookings/{booking_id}/ticket", headers=customer["headers"]).json["ticket"]
        return show, booking_id, ticket
    return make


def read(client, customer, booking_id):
    return client.get(f"/bookings/{booking_id}", headers=customer["headers"]).json


def wait_refunded(client, customer, booking_id, amount):
    return wait_until(lambda: (lambda b: b if b["refunded_amount"] == amount else None)(read(client, customer, booking_id)),
                      60, 0.1, f"booking {booking_id} to show {amount} refunded")


def money_row(app, gateway, booking_id):
    from models import consistency, db
    with app.app_context():
        rows = [row for row in consistency.booking_money_report(gateway.ledger()["by_reference"])
                if row["booking_id"] == booking_id]
        db.session.remove()
    return rows[0]


def test_part_of_a_general_booking_goes_back_with_its_fee_and_a_new_ticket_replaces_the_old(
        app, client, customer, paid, gateway, staff_headers, show_remaining, wait_for):
    show, booking_id, old_ticket = paid(qty=4)
    assert show_remaining(show["id"]) == 16

    # 50 hours before the show: 20% of the 10,000 given back.
    answer = client.post(f"/bookings/{booking_id}/cancel", headers=customer["headers"], json={"qty": 1})
    assert answer.status_code == 202, answer.json
    body = answer.json
    assert (body["status"], body["qty"], body["amount"], body["cancellation_fee"]) == ("PAID", 3, 30_000, 2_000)
    assert body["ticket_status"] == "ISSUABLE" and body["payment_status"] == "PAID"
    assert show_remaining(show["id"]) == 17
    wait_refunded(client, customer, booking_id, 8_000)
    ledger = gateway.ledger(booking_id)
    assert (ledger["captured"], ledger["refunded"]) == (40_000, 8_000)
    assert money_row(app, gateway, booking_id)["agrees"]

    # The old QR is void at the door; the new ticket admits the three that are left.
    refused = client.post("/checkins", headers=staff_headers, json={"qr": old_ticket["qr"]})
    assert (refused.status_code, refused.json["result"]) == (409, "VOID"), refused.json
    new_ticket = client.post(f"/bookings/{booking_id}/ticket", headers=customer["headers"]).json["ticket"]
    assert new_ticket["tid"] != old_ticket["tid"] and new_ticket["qty"] == 3
    listed = client.get(f"/shows/{show['id']}/checkin-list", headers=staff_headers).json
    assert old_ticket["tid"] in listed["void"] and new_ticket["tid"] in listed["valid"]

    # Another part, then the rest: each fee adds up, each refund lands under its own key.
    assert client.post(f"/bookings/{booking_id}/cancel", headers=customer["headers"], json={"qty": 2}).json["amount"] == 10_000
    wait_refunded(client, customer, booking_id, 24_000)
    rest = client.post(f"/bookings/{booking_id}/cancel", headers=customer["headers"])
    assert rest.status_code == 202 and rest.json["cancellation_fee"] == 8_000
    wait_for(booking_id, status="CANCELLED", payment_status="REFUNDED", ticket_status="VOID")
    final = read(client, customer, booking_id)
    assert (final["qty"], final["amount"], final["cancellation_fee"], final["refunded_amount"]) == (1, 10_000, 8_000, 32_000)
    ledger = gateway.ledger(booking_id)
    assert ledger["captured"] - ledger["refunded"] == 8_000
    row = money_row(app, gateway, booking_id)
    assert row["agrees"] and row["expected"] == 8_000
    assert show_remaining(show["id"]) == 20
    entry = wait_until(lambda: next((r for r in client.get("/me/bookings", headers=customer["headers"]).json
                                     if r["booking_id"] == booking_id and r["status"] == "CANCELLED"), None),
                       30, 0.1, "the my page to show the cancel")
    assert (entry["qty"], entry["cancellation_fee"], entry["refunded_amount"]) == (1, 8_000, 32_000)


def test_part_of_a_reserved_booking_goes_back_seat_by_seat(app, client, admin_headers, customer, wait_for, gateway):
    seat_map = client.post("/seat-maps", headers=admin_headers, json=HALL).json
    show = client.post("/shows", headers=admin_headers, json={
        "title": f"Reserved {secrets.token_hex(3)}", "venue": "Partial hall", "seat_map_id": seat_map["id"],
        "prices": PRICES, "starts_at": (datetime.now(timezone.utc) + timedelta(days=20)).isoformat(),
        "cancellation_policy": KOREAN}).json
    booking = client.post("/bookings", headers=customer["headers"], json={
        "show_id": show["id"], "payment_method": "tok_ok", "seats": ["1-1-1", "1-1-2", "2-1-1"]}).json
    wait_for(booking["id"], status="PAID")

    strangers = client.post(f"/bookings/{booking['id']}/cancel", headers=customer["headers"], json={"seats": ["1-1-3"]})
    assert strangers.status_code == 422 and "seats" in strangers.json["errors"]
    by_qty = client.post(f"/bookings/{booking['id']}/cancel", headers=customer["headers"], json={"qty": 1})
    assert by_qty.status_code == 422 and "seats" in by_qty.json["errors"]

    # 20 days before: free (the 168-hour rule). The VIP seat and the R seat go back.
    answer = client.post(f"/bookings/{booking['id']}/cancel", headers=customer["headers"],
                         json={"seats": ["1-1-2", "2-1-1"]})
    assert answer.status_code == 202, answer.json
    assert [s["id"] for s in answer.json["seats"]] == ["1-1-1"]
    assert (answer.json["qty"], answer.json["amount"], answer.json["cancellation_fee"]) == (1, 150_000, 0)
    statuses = {s["id"]: s["status"] for s in client.get(f"/shows/{show['id']}/seats").json["seats"]}
    assert (statuses["1-1-1"], statuses["1-1-2"], statuses["2-1-1"]) == ("SOLD", "AVAILABLE", "AVAILABLE")
    read_show = client.get(f"/shows/{show['id']}").json
    assert {c["name"]: c["remaining"] for c in read_show["categories"]} == {"VIP": 5, "R": 6}
    wait_refunded(client, customer, booking["id"], 240_000)
    assert money_row(app, gateway, booking["id"])["agrees"]
    # The seat holds, the seat page and the categories' counts agree about this show.
    report = client.get("/admin/consistency", headers=admin_headers).json
    assert show["id"] not in str(report["seats"]) and booking["id"] not in str(report["seats"]), report["seats"]


def test_a_part_that_is_not_the_bookings_is_refused_and_changes_nothing(client, customer, paid, book, make_show,
                                                                        show_remaining, staff_headers):
    show, booking_id, ticket = paid(qty=3)
    before = read(client, customer, booking_id)
    for body, field in (({"qty": 0}, "qty"), ({"qty": 4}, "qty"), ({"qty": 11}, "qty"), ({"qty": "1"}, "qty"),
                        ({"qty": 1, "seats": ["1-1-1"]}, "seats"), ({"seats": ["1-1-1"]}, "seats"),
                        ({"seats": []}, "seats"), ({"qty": 1, "extra": True}, "extra")):
        answer = client.post(f"/bookings/{booking_id}/cancel", headers=customer["headers"], json=body)
        assert answer.status_code == 422, (body, answer.json)
        assert field in answer.json["errors"], (body, answer.json)
    assert read(client, customer, booking_id) == before
    assert show_remaining(show["id"]) == 17

    # All of it as a part is the whole booking.
    other_show, other_id, _ = paid(qty=2, issue=False)
    whole = client.post(f"/bookings/{other_id}/cancel", headers=customer["headers"], json={"qty": 2})
    assert whole.status_code == 202 and whole.json["status"] == "CANCELLING"

    # A ticket used at the door: no part goes back.
    assert client.post("/checkins", headers=staff_headers, json={"qr": ticket["qr"]}).status_code == 200
    used = client.post(f"/bookings/{booking_id}/cancel", headers=customer["headers"], json={"qty": 1})
    assert used.status_code == 409, used.json
    # A booking not PAID has no part to give back.
    unpaid_show = make_show(capacity=5, price=1000)
    declined = book(customer, unpaid_show["id"], qty=2, payment_method="tok_decline").json["id"]
    wait_until(lambda: read(client, customer, declined)["status"] == "PAYMENT_FAILED" or None, 60, 0.1, "the decline")
    refused = client.post(f"/bookings/{declined}/cancel", headers=customer["headers"], json={"qty": 1})
    assert refused.status_code == 409, refused.json


@pytest.fixture(scope="module")
def api_url(workdir):
    process, url = start_api(workdir, {"REDIS_URL": os.environ["REDIS_URL"]}, name="partial-api", workers=2)
    yield url
    process.stop()


def test_a_partial_cancel_racing_a_check_in_either_admits_or_cancels_never_both(
        api_url, client, customer, paid, staff_headers, make_show, gateway):
    show = make_show(capacity=40, price=10_000, starts_in=timedelta(days=10))
    outcomes = {"admitted": 0, "cancelled": 0}
    for _ in range(8):
        _, booking_id, ticket = paid(qty=3, show=show)
        barrier = threading.Barrier(2)

        def check_in():
            barrier.wait(timeout=30)
            return requests.post(f"{api_url}/checkins", headers=staff_headers, json={"qr": ticket["qr"]}, timeout=60)

        def cancel_part():
            barrier.wait(timeout=30)
            return requests.post(f"{api_url}/bookings/{booking_id}/cancel", headers=customer["headers"],
                                 json={"qty": 1}, timeout=60)

        with ThreadPoolExecutor(2) as pool:
            checked, cancelled = pool.submit(check_in), pool.submit(cancel_part)
            checked, cancelled = checked.result(), cancelled.result()
        state = read(client, customer, booking_id)
        if checked.status_code == 200:
            assert cancelled.status_code == 409, cancelled.json()
            assert (state["qty"], state["ticket_status"], state["refunded_amount"]) == (3, "CHECKED_IN", 0)
            outcomes["admitted"] += 1
        else:
            assert (checked.status_code, checked.json()["result"]) == (409, "VOID"), checked.json()
            assert cancelled.status_code == 202, cancelled.json()
            assert (state["qty"], state["ticket_status"]) == (2, "ISSUABLE")
            wait_refunded(client, customer, booking_id, 10_000)
            outcomes["cancelled"] += 1
    print(f"partial cancel vs check-in: {outcomes}")
