"""SPEC §11, the cancellation policy and its fees: the policy on POST and PATCH /shows, the fee a
cancel of a paid booking keeps, decided at the request from the policy then in force, and what
the booking, the my page, the gateway's ledger and the consistency check show of it."""
import secrets
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest

from tests.processes import wait_until

KOREAN = [{"hours_before": 168, "fee_percent": 0}, {"hours_before": 72, "fee_percent": 10},
          {"hours_before": 24, "fee_percent": 20}, {"hours_before": 0, "fee_percent": 30}]


def show_body(**fields):
    return {"title": f"Show {secrets.token_hex(3)}", "venue": "Hall", "price": 1000, "capacity": 10,
            "starts_at": (datetime.now(timezone.utc) + timedelta(days=30)).isoformat(), **fields}


def test_a_show_answers_with_its_policy_in_descending_hours_before_and_patch_replaces_it(app, admin_headers):
    client = app.test_client()
    created = client.post("/shows", headers=admin_headers, json=show_body(cancellation_policy=list(reversed(KOREAN))))
    assert created.status_code == 201, created.json
    assert created.json["cancellation_policy"] == KOREAN
    show_id = created.json["id"]
    assert client.get(f"/shows/{show_id}").json["cancellation_policy"] == KOREAN

    changed = client.patch(f"/shows/{show_id}", headers=admin_headers,
                           json={"cancellation_policy": [{"hours_before": 0, "fee_percent": 50}]})
    assert changed.status_code == 200 and changed.json["cancellation_policy"] == [{"hours_before": 0, "fee_percent": 50}]
    for none in (None, []):
        cleared = client.patch(f"/shows/{show_id}", headers=admin_headers, json={"cancellation_policy": none})
        assert cleared.status_code == 200 and cleared.json["cancellation_policy"] is None
    plain = client.post("/shows", headers=admin_headers, json=show_body())
    assert plain.json["cancellation_policy"] is None


@pytest.mark.parametrize("policy", [
    [{"hours_before": -1, "fee_percent": 10}],
    [{"hours_before": 24, "fee_percent": 101}],
    [{"hours_before": 24, "fee_percent": -5}],
    [{"hours_before": 1.5, "fee_percent": 10}],
    [{"hours_before": "24", "fee_percent": 10}],
    [{"hours_before": 24}],
    [{"hours_before": 24, "fee_percent": 10, "flat": 500}],
    [{"hours_before": 24, "fee_percent": 10}, {"hours_before": 24, "fee_percent": 20}],
    [{"hours_before": hours, "fee_percent": 1} for hours in range(21)],
    {"hours_before": 24, "fee_percent": 10},
    "30%",
])
def test_an_invalid_policy_is_refused_naming_the_field_and_changes_nothing(app, admin_headers, policy):
    client = app.test_client()
    refused = client.post("/shows", headers=admin_headers, json=show_body(cancellation_policy=policy))
    assert refused.status_code == 422, refused.json
    assert "cancellation_policy" in refused.json["errors"], refused.json
    show = client.post("/shows", headers=admin_headers, json=show_body(cancellation_policy=KOREAN)).json
    patched = client.patch(f"/shows/{show['id']}", headers=admin_headers, json={"cancellation_policy": policy})
    assert patched.status_code == 422 and "cancellation_policy" in patched.json["errors"], patched.json
    assert client.get(f"/shows/{show['id']}").json["cancellation_policy"] == KOREAN


def my_page_row(app, customer, booking_id, **expected):
    def entry():
        rows = app.test_client().get("/me/bookings", headers=customer["headers"]).json
        row = next((r for r in rows if r["booking_id"] == booking_id), None)
        return row if row and all(row[k] == v for k, v in expected.items()) else None
    return wait_until(entry, 30, 0.1, f"the my page to show {expected}")


def money_rows(app, gateway, ids):
    from models import consistency, db
    with app.app_context():
        rows = [row for row in consistency.booking_money_report(gateway.ledger()["by_reference"]) if row["booking_id"] in ids]
        db.session.remove()
    return rows


@pytest.mark.usefixtures("worker")
def test_a_paid_booking_cancelled_keeps_the_fee_of_the_policy_in_force_at_the_request(
        app, customer, make_show, book, wait_for, gateway, admin_headers):
    client = app.test_client()
    show = make_show(capacity=10, price=55_000, starts_in=timedelta(hours=50), cancellation_policy=KOREAN)
    booking_id = book(customer, show["id"], qty=2).json["id"]
    later_id = book(customer, show["id"], qty=1).json["id"]
    wait_for(booking_id, status="PAID", payment_status="PAID")
    wait_for(later_id, status="PAID", payment_status="PAID")
    seen = client.get(f"/bookings/{booking_id}", headers=customer["headers"]).json
    assert (seen["cancellation_fee"], seen["refunded_amount"]) == (0, 0)

    # 50 hours before the show: the rule of 24 hours, 20% of 110,000.
    answer = client.post(f"/bookings/{booking_id}/cancel", headers=customer["headers"])
    assert answer.status_code == 202
    assert (answer.json["status"], answer.json["cancellation_fee"]) == ("CANCELLING", 22_000)
    # A new policy applies to the cancels asked for after it; this one's fee stays.
    client.patch(f"/shows/{show['id']}", headers=admin_headers, json={"cancellation_policy": [
        {"hours_before": 0, "fee_percent": 50}]})
    wait_for(booking_id, status="CANCELLED", payment_status="REFUNDED", ticket_status="VOID")
    seen = client.get(f"/bookings/{booking_id}", headers=customer["headers"]).json
    assert (seen["amount"], seen["cancellation_fee"], seen["refunded_amount"]) == (110_000, 22_000, 88_000)
    ledger = gateway.ledger(booking_id)
    assert (ledger["captured"], ledger["refunded"]) == (110_000, 88_000)
    row = my_page_row(app, customer, booking_id, status="CANCELLED")
    assert (row["cancellation_fee"], row["refunded_amount"]) == (22_000, 88_000)

    assert client.post(f"/bookings/{later_id}/cancel", headers=customer["headers"]).json["cancellation_fee"] == 27_500
    wait_for(later_id, status="CANCELLED", payment_status="REFUNDED")
    assert gateway.ledger(later_id)["captured"] - gateway.ledger(later_id)["refunded"] == 27_500
    rows = money_rows(app, gateway, {booking_id, later_id})
    assert [(r["expected"], r["agrees"]) for r in rows] == [(22_000, True), (27_500, True)], rows
    report = client.get("/admin/consistency", headers=admin_headers).json
    assert not [r for r in report["money_problems"] if r["booking_id"] in (booking_id, later_id)]

    # The check sees a fee the gateway does not bear out, and a refund shown wrong.
    for corrupt in ({"cancellation_fee": 0}, {"refunded_amount": 110_000}, {"cancellation_fee": 120_000}):
        with corrupted(app, booking_id, **corrupt):
            report = client.get("/admin/consistency", headers=admin_headers).json
            problems = [r for r in report["money_problems"] if r["booking_id"] == booking_id]
            assert len(problems) == 1 and not problems[0]["agrees"], (corrupt, problems)
            assert report["counts"]["money_mismatches"] >= 1
    assert money_rows(app, gateway, {booking_id})[0]["agrees"]


@contextmanager
def corrupted(app, booking_id, **values):
    """A booking's money fields changed behind the code's back, then put back as they were."""
    from sqlalchemy import update

    from models import db
    from models.bookings import Booking
    with app.app_context():
        booking = db.session.get(Booking, booking_id)
        was = {"cancellation_fee": booking.cancellation_fee, "refunded_amount": booking.refunded_amount}
        db.session.execute(update(Booking).where(Booking.id == booking_id).values(**values))
        db.session.commit()
        db.session.remove()
    try:
        yield
    finally:
        with app.app_context():
            db.session.execute(update(Booking).where(Booking.id == booking_id).values(**was))
            db.session.commit()
            db.session.remove()


@pytest.mark.usefixtures("worker")
def test_a_booking_that_never_paid_has_no_fee(app, customer, make_show, book, wait_for, gateway):
    show = make_show(capacity=5, price=7000, starts_in=timedelta(hours=5), cancellation_policy=KOREAN)
    declined = book(customer, show["id"], payment_method="tok_declined").json["id"]
    wait_for(declined, status="PAYMENT_FAILED")
    seen = app.test_client().get(f"/bookings/{declined}", headers=customer["headers"]).json
    assert (seen["cancellation_fee"], seen["refunded_amount"]) == (0, 0)
    assert app.test_client().post(f"/bookings/{declined}/cancel", headers=customer["headers"]).status_code == 409
    assert app.test_client().get(f"/bookings/{declined}", headers=customer["headers"]).json["cancellation_fee"] == 0
    assert money_rows(app, gateway, {declined})[0]["agrees"]
