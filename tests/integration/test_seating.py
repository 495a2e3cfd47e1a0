"""Reserved seating through the API and a real worker (SPEC §8): seat maps, reserved shows priced
by category, picks and best available decided in arrival order, the seat page and its ETag,
purchase limits, blocked seats, and the database refusing a second holder of a seat."""
import secrets
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from tests.processes import wait_until

pytestmark = pytest.mark.usefixtures("worker")

HALL = {"name": "Small hall", "sections": [
    {"name": "Floor", "rows": [{"name": "A", "seats": 6, "category": "VIP"},
                               {"name": "B", "seats": [1, 2, 3, {"number": 4, "category": "R"}], "category": "VIP"}]},
    {"name": "Balcony", "rows": [{"name": "C", "seats": 8, "category": "R"}]},
]}
PRICES = {"VIP": 150000, "R": 90000}


@pytest.fixture
def seat_map(client, admin_headers):
    response = client.post("/seat-maps", headers=admin_headers, json=HALL)
    assert response.status_code == 201, response.json
    return response.json


@pytest.fixture
def reserved_show(client, admin_headers, seat_map):
    def make(**extra):
        response = client.post("/shows", headers=admin_headers, json={
            "title": f"Reserved {secrets.token_hex(3)}", "venue": "Small hall", "seat_map_id": seat_map["id"],
            "prices": PRICES, "starts_at": (datetime.now(timezone.utc) + timedelta(days=20)).isoformat(), **extra})
        assert response.status_code == 201, response.json
        return response.json
    return make


def book_seats(client, customer, show_id, **form):
    return client.post("/bookings", headers=customer["headers"],
                       json={"show_id": show_id, "payment_method": "tok_ok", **form})


def seat_statuses(client, show_id):
    return {seat["id"]: seat["status"] for seat in client.get(f"/shows/{show_id}/seats").json["seats"]}


def test_a_seat_map_is_validated_and_counted_by_category(client, admin_headers, seat_map):
    assert seat_map["seat_count"] == 18
    assert seat_map["categories"] == [{"name": "VIP", "seats": 9}, {"name": "R", "seats": 9}]
    assert client.get(f"/seat-maps/{seat_map['id']}").json["sections"][0]["name"] == "Floor"
    bad = {"name": "Bad", "sections": [{"name": "S", "rows": [{"name": "A", "seats": [1, 2, 2], "category": "R"}]}]}
    response = client.post("/seat-maps", headers=admin_headers, json=bad)
    assert response.status_code == 422 and "sections.0.rows.0.seats" in str(response.json["errors"])
    assert client.post("/seat-maps", headers=admin_headers, json={**HALL, "extra": 1}).status_code == 422


def test_a_reserved_show_is_priced_by_every_category_of_its_map(client, admin_headers, seat_map, reserved_show):
    show = reserved_show()
    assert show["seating"] == "reserved" and show["capacity"] == 18 and show["remaining"] == 18
    assert {c["name"]: (c["price"], c["capacity"]) for c in show["categories"]} == {"VIP": (150000, 9), "R": (90000, 9)}
    base = {"title": "X", "venue": "Y", "starts_at": show["starts_at"], "seat_map_id": seat_map["id"]}
    for prices in ({"VIP": 1}, {**PRICES, "S": 1}):
        assert client.post("/shows", headers=admin_headers, json={**base, "prices": prices}).status_code == 422
    unknown = client.post("/shows", headers=admin_headers, json={**base, "seat_map_id": "nope", "prices": PRICES})
    assert unknown.status_code == 422 and "seat_map_id" in unknown.json["errors"]
    general = client.post("/shows", headers=admin_headers, json={**base, "seat_map_id": None, "capacity": 5, "price": 1})
    assert general.status_code == 201 and general.json["seating"] == "general"


def test_a_pick_and_best_available_get_their_seats_and_the_page_follows(client, customer, reserved_show, wait_for):
    show = reserved_show()
    page = client.get(f"/shows/{show['id']}/seats")
    assert page.status_code == 200 and set(seat_statuses(client, show["id"]).values()) == {"AVAILABLE"}
    assert client.get(f"/shows/{show['id']}/seats", headers={"If-None-Match": page.headers["ETag"]}).status_code == 304

    pick = book_seats(client, customer, show["id"], seats=["1-1-3", "1-1-4"])
    assert pick.status_code == 202 and pick.json["amount"] == 300000
    best = book_seats(client, customer, show["id"], qty=3, category="R")
    assert best.status_code == 202 and best.json["amount"] == 270000
    wait_for(pick.json["id"], status="PAID")
    wait_for(best.json["id"], status="PAID")

    seen = client.get(f"/bookings/{best.json['id']}", headers=customer["headers"]).json
    assert [s["id"] for s in seen["seats"]] == ["2-1-1", "2-1-2", "2-1-3"]  # the best R row with 3 together
    assert {s["category"] for s in seen["seats"]} == {"R"}
    statuses = seat_statuses(client, show["id"])
    assert [statuses[s] for s in ("1-1-3", "1-1-4", "2-1-1", "2-1-2", "2-1-3")] == ["SOLD"] * 5
    assert list(statuses.values()).count("AVAILABLE") == 13
    changed = client.get(f"/shows/{show['id']}/seats", headers={"If-None-Match": page.headers["ETag"]})
    assert changed.status_code == 200 and changed.headers["ETag"] != page.headers["ETag"]
    read = client.get(f"/shows/{show['id']}").json
    assert read["remaining"] == 13 and {c["name"]: c["remaining"] for c in read["categories"]} == {"VIP": 7, "R": 6}


def test_the_same_seat_picked_twice_goes_to_the_first_and_the_second_learns_why(client, new_customer, reserved_show,
                                                                                wait_for):
    show = reserved_show()
    first, second = new_customer(), new_customer()
    one = book_seats(client, first, show["id"], seats=["1-2-1", "1-2-2"]).json["id"]
    two = book_seats(client, second, show["id"], seats=["1-2-2", "1-2-3"]).json["id"]
    wait_for(one, status="PAID")
    wait_for(two, status="REJECTED")
    refused = client.get(f"/bookings/{two}", headers=second["headers"]).json
    assert refused["reject_reason"] == "seat_taken" and refused["seats"] is None
    assert seat_statuses(client, show["id"])["1-2-3"] == "AVAILABLE"  # all or nothing


def test_the_purchase_limit_counts_live_bookings_in_arrival_order(client, customer, reserved_show, wait_for):
    show = reserved_show(max_per_customer=4)
    first = book_seats(client, customer, show["id"], qty=3, category="VIP").json["id"]
    second = book_seats(client, customer, show["id"], qty=2, category="VIP").json["id"]
    third = book_seats(client, customer, show["id"], seats=["2-1-8"]).json["id"]
    wait_for(first, status="PAID")
    wait_for(second, status="REJECTED")
    wait_for(third, status="PAID")
    assert client.get(f"/bookings/{second}", headers=customer["headers"]).json["reject_reason"] == "limit_exceeded"


def test_a_cancel_gives_back_exactly_the_bookings_seats(client, customer, reserved_show, wait_for):
    show = reserved_show()
    booking_id = book_seats(client, customer, show["id"], seats=["2-1-5", "2-1-6"]).json["id"]
    wait_for(booking_id, status="PAID")
    assert client.post(f"/bookings/{booking_id}/cancel", headers=customer["headers"]).status_code == 202
    wait_for(booking_id, status="CANCELLED", payment_status="REFUNDED")
    assert set(seat_statuses(client, show["id"]).values()) == {"AVAILABLE"}
    read = client.get(f"/shows/{show['id']}").json
    assert read["remaining"] == 18 and all(c["remaining"] == c["capacity"] for c in read["categories"])


def test_blocked_seats_are_out_of_sale_and_a_sold_seat_cannot_be_blocked(client, admin_headers, customer,
                                                                          reserved_show, wait_for):
    show = reserved_show()
    sold = book_seats(client, customer, show["id"], seats=["1-1-1"]).json["id"]
    wait_for(sold, status="PAID")
    patch = client.patch(f"/shows/{show['id']}", headers=admin_headers, json={"blocked_seats": ["1-1-2", "1-1-3"]})
    assert patch.status_code == 200 and patch.json["remaining"] == 15
    assert client.patch(f"/shows/{show['id']}", headers=admin_headers,
                        json={"blocked_seats": ["1-1-1"]}).status_code == 409
    statuses = seat_statuses(client, show["id"])
    assert (statuses["1-1-1"], statuses["1-1-2"], statuses["1-1-3"]) == ("SOLD", "BLOCKED", "BLOCKED")
    taken = book_seats(client, customer, show["id"], seats=["1-1-2"]).json["id"]
    wait_for(taken, status="REJECTED")
    unblock = client.patch(f"/shows/{show['id']}", headers=admin_headers, json={"blocked_seats": []})
    assert unblock.status_code == 200 and unblock.json["remaining"] == 17
    assert seat_statuses(client, show["id"])["1-1-2"] == "AVAILABLE"


def test_the_database_refuses_a_second_holder_of_a_seat_whatever_the_code_does(app, client, customer,
                                                                              reserved_show, wait_for):
    show = reserved_show()
    booking_id = book_seats(client, customer, show["id"], seats=["1-1-5"]).json["id"]
    wait_for(booking_id, status="PAID")
    from models import db
    with app.app_context():
        with pytest.raises(IntegrityError, match="pk_seat_holds"):  # past the service layer, straight to SQL
            db.session.execute(text("INSERT INTO seat_holds (show_id, seat_id, booking_id) VALUES (:s, '1-1-5', :b)"),
                               {"s": show["id"], "b": booking_id})
        db.session.rollback()
        db.session.execute(text("INSERT INTO seat_holds (show_id, seat_id, booking_id) VALUES (:s, '1-1-6', :b)"),
                           {"s": show["id"], "b": booking_id})  # a free seat: the same statement goes in
        db.session.rollback()
        db.session.remove()


def test_forms_that_do_not_fit_the_show_are_refused_and_record_nothing(client, customer, reserved_show, make_show):
    show, general = reserved_show(), make_show(capacity=3)
    for form in ({"qty": 1}, {"seats": ["9-9-9"]}, {"qty": 2, "category": "S"}, {"seats": ["1-1-1"], "qty": 1},
                 {"seats": ["1-1-1", "1-1-1"]}):
        assert book_seats(client, customer, show["id"], **form).status_code == 422, form
    for form in ({"seats": ["1-1-1"]}, {"qty": 1, "category": "VIP"}):
        assert book_seats(client, customer, general["id"], **form).status_code == 422, form
    assert client.get("/me/bookings", headers=customer["headers"]).json == []
    assert client.get(f"/shows/{general['id']}/seats").status_code == 404


def test_a_general_rejection_says_why_and_sales_wait_for_on_sale_at(client, customer, make_show, book, wait_for,
                                                                   admin_headers):
    show = make_show(capacity=2)
    booking_id = book(customer, show["id"], qty=3).json["id"]
    wait_for(booking_id, status="REJECTED")
    assert client.get(f"/bookings/{booking_id}", headers=customer["headers"]).json["reject_reason"] == "sold_out"
    later = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    assert client.patch(f"/shows/{show['id']}", headers=admin_headers, json={"on_sale_at": later}).status_code == 200
    early = book(customer, show["id"], qty=1)
    assert early.status_code == 409 and "not opened" in early.json["message"]


def test_the_consistency_report_finds_a_seat_held_wrongly_and_a_customer_over_the_limit(
        app, client, admin_headers, customer, reserved_show, wait_for):
    show = reserved_show(max_per_customer=2)
    booking_id = book_seats(client, customer, show["id"], seats=["1-1-1", "1-1-2"]).json["id"]
    wait_for(booking_id, status="PAID")

    def seat_counts():
        counts = client.get("/admin/consistency", headers=admin_headers).json["counts"]
        return {key: counts[key] for key in ("seat_double_held", "category_mismatches", "limit_exceeded")}
    assert seat_counts() == {"seat_double_held": 0, "category_mismatches": 0, "limit_exceeded": 0}

    from models import db
    corrupt = [  # past every rule: a hold of a seat the booking does not list, and a third seat's qty
        "INSERT INTO seat_holds (show_id, seat_id, booking_id) VALUES (:s, '1-1-3', :b)",
        "UPDATE bookings SET qty = 3, seats = ARRAY['1-1-1', '1-1-2', '1-1-3'] WHERE id = :b",
    ]
    with app.app_context():
        db.session.execute(text(corrupt[0]), {"s": show["id"], "b": booking_id})
        db.session.commit()
        found = seat_counts()
        assert found["seat_double_held"] >= 2 and found["category_mismatches"] == 1  # the page and the count disagree
        db.session.execute(text(corrupt[1]), {"s": show["id"], "b": booking_id})
        db.session.commit()
        assert seat_counts()["limit_exceeded"] == 1
        db.session.execute(text("UPDATE bookings SET qty = 2, seats = ARRAY['1-1-1', '1-1-2'] WHERE id = :b"),
                           {"b": booking_id})
        db.session.execute(text("DELETE FROM seat_holds WHERE show_id = :s AND seat_id = '1-1-3'"), {"s": show["id"]})
        db.session.commit()
        db.session.remove()
    assert seat_counts() == {"seat_double_held": 0, "category_mismatches": 0, "limit_exceeded": 0}


def test_a_declined_payment_and_an_expired_hold_give_the_seats_back(app, client, customer, reserved_show, wait_for,
                                                                    gateway):
    show = reserved_show()
    declined = book_seats(client, customer, show["id"], seats=["1-2-1", "1-2-2"], payment_method="tok_declined")
    wait_for(declined.json["id"], status="PAYMENT_FAILED")
    gateway.set_faults(outage=True)  # the charge cannot complete: the hold stays until its deadline
    try:
        held = book_seats(client, customer, show["id"], qty=2, category="R")
        state = wait_for(held.json["id"], status="CONFIRMED")
        from models import db
        from services.expiry import expire_holds
        with app.app_context():  # its hold deadline passes now, not in ten minutes
            db.session.execute(text("UPDATE bookings SET hold_deadline = now() - interval '1 second' WHERE id = :b"),
                               {"b": held.json["id"]})
            db.session.commit()
            assert expire_holds() >= 1
            db.session.remove()
        wait_for(held.json["id"], status="EXPIRED")
    finally:
        gateway.clear_faults()
    assert set(seat_statuses(client, show["id"]).values()) == {"AVAILABLE"}
    read = client.get(f"/shows/{show['id']}").json
    assert read["remaining"] == 18 and all(c["remaining"] == c["capacity"] for c in read["categories"])
    assert state["seats_held"]


def _at_once(count, call):
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(lambda _: call(), range(count)))


def test_many_customers_picking_the_same_seats_at_once_leave_one_holder(app, new_customer, reserved_show, wait_for):
    show = reserved_show()
    customers = [new_customer() for _ in range(12)]
    queue = list(customers)

    def pick():
        customer = queue.pop()
        response = book_seats(app.test_client(), customer, show["id"], seats=["2-1-4", "2-1-5"])
        assert response.status_code == 202, response.json
        return customer, response.json["id"]
    booked = _at_once(len(customers), pick)
    finals = [_final(app, wait_for, booking_id) for _, booking_id in booked]
    assert finals.count("PAID") == 1 and finals.count("REJECTED") == 11, finals
    statuses = seat_statuses(app.test_client(), show["id"])
    assert (statuses["2-1-4"], statuses["2-1-5"]) == ("SOLD", "SOLD")


def test_one_customer_booking_many_times_at_once_never_exceeds_the_limit(app, customer, reserved_show, make_show,
                                                                          admin_headers, wait_for):
    reserved = reserved_show(max_per_customer=5)
    general = make_show(capacity=50)
    assert app.test_client().patch(f"/shows/{general['id']}", headers=admin_headers,
                                   json={"max_per_customer": 5}).status_code == 200
    for show, form in ((reserved, {"qty": 1, "category": "R"}), (general, {"qty": 1})):
        ids = _at_once(16, lambda: book_seats(app.test_client(), customer, show["id"], **form).json["id"])
        finals = [_final(app, wait_for, booking_id) for booking_id in ids]
        assert finals.count("PAID") == 5 and finals.count("REJECTED") == 11, (show["seating"], finals)


def _final(app, wait_for, booking_id):
    from models import db
    from models.bookings import Booking

    def settled():
        with app.app_context():
            booking = db.session.get(Booking, booking_id)
            done = booking.status in ("PAID", "REJECTED") and booking.payment.status in ("PAID", "NONE")
            status = booking.status
            db.session.remove()
        return status if done else None
    return wait_until(settled, 90, 0.1, f"booking {booking_id} to be PAID or REJECTED")
