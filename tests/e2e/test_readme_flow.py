"""The README's walk-through, over HTTP against the stack as the run command starts it:
register, book, see it PAID with an issuable ticket, issue it, cancel another booking and see
it refunded with its seats returned, and find both on the my page; and the other parts of the
walk-through (reserved seating, the waiting room, the door, cancellation fees)."""
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from gateway.client import GatewayClient
from tests.processes import ROOT, wait_until


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def create_admin_with_the_cli(stack, email, password, command="create-admin"):
    env = {**os.environ, "DATABASE_URL": stack.database_url, "REDIS_URL": stack.redis_url,
           "BOXOFFICE_INSTANCE": str(stack.data_dir / "instance"), "PYTHONPATH": str(ROOT)}
    flask = str(Path(sys.executable).parent / "flask")
    result = subprocess.run([flask, "--app", "wsgi", "users", command, email, "--password", password],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert email in result.stdout


def token(api, email, password):
    response = api.post("/auth/token", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    return body["access_token"]


def wait_for_booking(api, headers, booking_id, **expected):
    def reached():
        body = api.get(f"/bookings/{booking_id}", headers=headers).json()
        return body if all(body[k] == v for k, v in expected.items()) else None
    return wait_until(reached, 120, 0.25, f"booking {booking_id} to reach {expected}")


def test_a_newcomer_books_pays_issues_and_cancels_through_the_api(stack, api):
    assert api.get("/healthz").status_code == 200
    assert api.get("/readyz").json()["status"] == "ok"

    create_admin_with_the_cli(stack, "ops@example.com", "ops-password")
    admin = bearer(token(api, "ops@example.com", "ops-password"))

    registered = api.post("/auth/register", json={"email": "kim@example.com", "password": "kim-password",
                                                  "name": "Kim"})
    assert registered.status_code == 201
    assert set(registered.json()) == {"id", "email", "name", "locale"} and registered.json()["locale"] == "ko"
    assert api.post("/auth/register", json={"email": "kim@example.com", "password": "kim-password",
                                            "name": "Kim"}).status_code == 409
    kim = bearer(token(api, "kim@example.com", "kim-password"))

    starts_at = (datetime.now(timezone.utc) + timedelta(days=60)).isoformat()
    created = api.post("/shows", headers=admin, json={"title": "Hamlet", "venue": "Seoul Arts Center",
                                                      "starts_at": starts_at, "price": 50000, "capacity": 100})
    assert created.status_code == 201
    show = created.json()
    assert show["remaining"] == 100
    assert api.post("/shows", headers=kim, json={"title": "x", "venue": "y", "starts_at": starts_at,
                                                 "price": 1, "capacity": 1}).status_code == 403

    booked = api.post("/bookings", headers={**kim, "Idempotency-Key": "first"},
                      json={"show_id": show["id"], "qty": 2, "payment_method": "tok_ok"})
    assert booked.status_code == 202
    assert booked.json()["status"] == "PENDING"
    assert booked.headers["Location"].endswith(f"/bookings/{booked.json()['id']}")
    first = booked.json()["id"]
    paid = wait_for_booking(api, kim, first, status="PAID", payment_status="PAID", ticket_status="ISSUABLE")
    assert paid["amount"] == 100000 and paid["qty"] == 2

    issued = api.post(f"/bookings/{first}/ticket", headers=kim)
    assert issued.status_code == 200
    ticket = issued.json()["ticket"]
    assert ticket["booking_id"] == first and ticket["qty"] == 2 and ticket["code"]
    assert api.post(f"/bookings/{first}/ticket", headers=kim).json()["ticket"]["code"] == ticket["code"]

    second = api.post("/bookings", headers=kim,
                      json={"show_id": show["id"], "qty": 3, "payment_method": "tok_ok"}).json()["id"]
    wait_for_booking(api, kim, second, status="PAID")
    assert api.get(f"/shows/{show['id']}").json()["remaining"] == 95
    cancelled = api.post(f"/bookings/{second}/cancel", headers=kim)
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "CANCELLING"
    wait_for_booking(api, kim, second, status="CANCELLED", payment_status="REFUNDED", ticket_status="VOID")
    assert api.get(f"/shows/{show['id']}").json()["remaining"] == 98
    assert api.post(f"/bookings/{second}/ticket", headers=kim).status_code == 409

    ledger = GatewayClient(stack.urls["gateway"]).ledger(second)
    assert (ledger["captured"], ledger["refunded"]) == (150000, 150000)

    def my_page_converged():
        rows = {row["booking_id"]: row for row in api.get("/me/bookings", headers=kim).json()}
        if rows.get(first, {}).get("ticket_status") == "ISSUED" and rows.get(second, {}).get("status") == "CANCELLED":
            return rows
    rows = wait_until(my_page_converged, 120, 0.25, "the my page to show both bookings")
    assert rows[first]["show_title"] == "Hamlet"
    assert rows[second]["payment_status"] == "REFUNDED"


def test_a_newcomer_makes_a_seat_map_and_books_a_pick_and_the_best_seats(stack, api):
    """The README's reserved seating part: a map, a show priced by category, the seat page and
    its ETag, a pick, the best two adjacent seats, and the limit."""
    create_admin_with_the_cli(stack, "seats@example.com", "seats-password")
    admin = bearer(token(api, "seats@example.com", "seats-password"))
    api.post("/auth/register", json={"email": "lee@example.com", "password": "lee-password", "name": "Lee"})
    lee = bearer(token(api, "lee@example.com", "lee-password"))

    seat_map = api.post("/seat-maps", headers=admin, json={"name": "Concert hall", "sections": [
        {"name": "Floor", "rows": [{"name": "A", "seats": 10, "category": "VIP"},
                                   {"name": "B", "seats": [1, 2, 3, 5, 6], "category": "R"}]},
        {"name": "Balcony", "rows": [{"name": "C", "seats": 12, "category": "S"}]}]})
    assert seat_map.status_code == 201 and seat_map.json()["seat_count"] == 27
    starts_at = (datetime.now(timezone.utc) + timedelta(days=90)).isoformat()
    concert = api.post("/shows", headers=admin, json={
        "title": "Concert", "venue": "Seoul Arts Center", "starts_at": starts_at, "seat_map_id": seat_map.json()["id"],
        "prices": {"VIP": 150000, "R": 110000, "S": 80000}, "max_per_customer": 4}).json()
    assert concert["seating"] == "reserved" and [c["name"] for c in concert["categories"]] == ["VIP", "R", "S"]
    page = api.get(f"/shows/{concert['id']}/seats")
    assert {seat["status"] for seat in page.json()["seats"]} == {"AVAILABLE"}
    assert api.get(f"/shows/{concert['id']}/seats", headers={"If-None-Match": page.headers["ETag"]}).status_code == 304

    def book(**form):
        response = api.post("/bookings", headers=lee, json={"show_id": concert["id"], "payment_method": "tok_ok", **form})
        assert response.status_code == 202, response.text
        return response.json()["id"]
    pick, best = book(seats=["1-1-5", "1-1-6"]), book(qty=2, category="S")
    assert wait_for_booking(api, lee, pick, status="PAID")["amount"] == 300000
    seats = wait_for_booking(api, lee, best, status="PAID")["seats"]
    assert [seat["id"] for seat in seats] == ["2-1-1", "2-1-2"] and seats[0]["section"] == "Balcony"
    assert api.get(f"/shows/{concert['id']}/seats").json()["seats"][4] == {
        "id": "1-1-5", "section": "Floor", "row": "A", "number": 5, "category": "VIP", "status": "SOLD"}
    over = book(qty=1, category="R")
    assert wait_for_booking(api, lee, over, status="REJECTED")["reject_reason"] == "limit_exceeded"


def test_a_newcomer_queues_in_the_waiting_room_and_books_with_the_token(stack, api):
    """The README's waiting room part: join before the sale (no place until the draw), be
    refused without a token, be admitted at the sale, book with the token, watch the counts."""
    create_admin_with_the_cli(stack, "queue@example.com", "queue-password")
    admin = bearer(token(api, "queue@example.com", "queue-password"))
    api.post("/auth/register", json={"email": "choi@example.com", "password": "choi-password", "name": "Choi"})
    choi = bearer(token(api, "choi@example.com", "choi-password"))

    on_sale = datetime.now(timezone.utc) + timedelta(seconds=5)
    hot = api.post("/shows", headers=admin, json={
        "title": "Idol tour", "venue": "KSPO Dome", "starts_at": (on_sale + timedelta(days=60)).isoformat(),
        "price": 132000, "capacity": 100, "on_sale_at": on_sale.isoformat(),
        "waiting_room": {"admit_per_minute": 60, "session_minutes": 10}})
    assert hot.status_code == 201 and hot.json()["waiting_room"] == {"admit_per_minute": 60, "session_minutes": 10}
    show_id = hot.json()["id"]
    joined = api.post(f"/shows/{show_id}/queue", headers=choi)
    assert joined.status_code == 201 and joined.json()["state"] == "WAITING" and joined.json()["position"] is None
    entry = joined.json()["id"]
    assert api.post(f"/shows/{show_id}/queue", headers=choi).json()["id"] == entry

    admitted = wait_until(lambda: (lambda body: body if body["state"] == "ADMITTED" else None)(
        api.get(f"/queue/{entry}", headers=choi).json()), 90, 0.5, "Choi's turn")
    assert admitted["admission_token"] and admitted["admitted_until"]
    refused = api.post("/bookings", headers=choi, json={"show_id": show_id, "qty": 2, "payment_method": "tok_ok"})
    assert refused.status_code == 403
    booking = api.post("/bookings", headers={**choi, "Admission-Token": admitted["admission_token"]},
                       json={"show_id": show_id, "qty": 2, "payment_method": "tok_ok"})
    assert booking.status_code == 202, booking.text
    wait_for_booking(api, choi, booking.json()["id"], status="PAID")
    stats = api.get(f"/shows/{show_id}/queue", headers=admin).json()
    assert (stats["waiting"], stats["admitted"], stats["draw"]["early_joiners"]) == (0, 1, 1)
    faster = api.patch(f"/shows/{show_id}", headers=admin, json={"waiting_room": {"admit_per_minute": 600}})
    assert faster.status_code == 200 and faster.json()["waiting_room"]["admit_per_minute"] == 600
def test_a_newcomer_issues_a_ticket_verifies_its_qr_offline_and_checks_it_in_once(stack, api):
    """The README's door part: a staff account from the CLI, a ticket's QR verified with nothing
    but the published key, admitted once, a second scan refused, the booking no longer
    cancellable, the offline list and upload, and a key rotation that old tickets survive."""
    import jwt
    create_admin_with_the_cli(stack, "door-admin@example.com", "door-admin-password")
    admin = bearer(token(api, "door-admin@example.com", "door-admin-password"))
    create_admin_with_the_cli(stack, "gate@example.com", "gate-password", command="create-staff")
    staff = bearer(token(api, "gate@example.com", "gate-password"))
    api.post("/auth/register", json={"email": "park@example.com", "password": "park-password", "name": "Park"})
    park = bearer(token(api, "park@example.com", "park-password"))
    starts_at = (datetime.now(timezone.utc) + timedelta(days=30)).isoformat()
    show = api.post("/shows", headers=admin, json={"title": "Macbeth", "venue": "Seoul Arts Center",
                                                   "starts_at": starts_at, "price": 40000, "capacity": 50}).json()
    booking = api.post("/bookings", headers=park, json={"show_id": show["id"], "qty": 2,
                                                        "payment_method": "tok_ok"}).json()["id"]
    wait_for_booking(api, park, booking, status="PAID", ticket_status="ISSUABLE")
    qr = api.post(f"/bookings/{booking}/ticket", headers=park).json()["ticket"]["qr"]

    keys = api.get(f"/shows/{show['id']}/checkin-key").json()
    assert keys["alg"] == "EdDSA" and keys["jwk"]["crv"] == "Ed25519"
    jwk = next(key for key in keys["keys"] if key["kid"] == jwt.get_unverified_header(qr)["kid"])
    claims = jwt.decode(qr, jwt.PyJWK(jwk).key, algorithms=["EdDSA"])
    assert (claims["bid"], claims["sid"], claims["qty"]) == (booking, show["id"], 2)

    admitted = api.post("/checkins", headers=staff, json={"qr": qr, "gate": "north", "show_id": show["id"]})
    assert admitted.status_code == 200 and admitted.json()["result"] == "ADMITTED"
    again = api.post("/checkins", headers=staff, json={"qr": qr, "gate": "south"})
    assert again.status_code == 409 and again.json()["result"] == "ALREADY_CHECKED_IN"
    assert again.json()["gate"] == "north"
    assert api.post(f"/bookings/{booking}/cancel", headers=park).status_code == 409
    assert api.post("/checkins", headers=park, json={"qr": qr}).status_code == 403

    listed = api.get(f"/shows/{show['id']}/checkin-list", headers=staff).json()
    assert listed["checked_in"] == [claims["tid"]] and listed["valid"] == [] and listed["version"]
    uploaded = api.post("/checkins/batch", headers=staff, json={"scans": [
        {"qr": qr, "scanned_at": datetime.now(timezone.utc).isoformat(), "gate": "east"}]})
    assert uploaded.status_code == 200 and uploaded.json()["results"][0]["result"] == "DUPLICATE"

    rotated = api.post(f"/shows/{show['id']}/checkin-key/rotate", headers=admin).json()
    assert rotated["jwk"]["kid"] != jwk["kid"] and jwk in rotated["keys"]
    assert api.post("/checkins", headers=staff, json={"qr": qr}).json()["result"] == "ALREADY_CHECKED_IN"


def test_a_newcomer_cancels_late_under_a_korean_cancellation_policy_and_gets_the_rest_back(stack, api):
    """The README's cancellation fees part: a show two days away with the common Korean schedule;
    a paid booking cancelled keeps 20% and gets 80% back, as the gateway's ledger shows."""
    create_admin_with_the_cli(stack, "fees-admin@example.com", "fees-admin-password")
    admin = bearer(token(api, "fees-admin@example.com", "fees-admin-password"))
    api.post("/auth/register", json={"email": "lee@example.com", "password": "lee-password", "name": "Lee"})
    lee = bearer(token(api, "lee@example.com", "lee-password"))
    policy = [{"hours_before": 168, "fee_percent": 0}, {"hours_before": 72, "fee_percent": 10},
              {"hours_before": 24, "fee_percent": 20}, {"hours_before": 0, "fee_percent": 30}]
    soon = (datetime.now(timezone.utc) + timedelta(days=2)).isoformat()
    created = api.post("/shows", headers=admin, json={
        "title": "Othello", "venue": "Seoul Arts Center", "starts_at": soon, "price": 50000, "capacity": 100,
        "cancellation_policy": list(reversed(policy))})
    assert created.status_code == 201, created.text
    show = api.get(f"/shows/{created.json()['id']}").json()
    assert show["cancellation_policy"] == policy

    booking = api.post("/bookings", headers=lee, json={"show_id": show["id"], "qty": 2,
                                                       "payment_method": "tok_ok"}).json()["id"]
    wait_for_booking(api, lee, booking, status="PAID")
    cancelling = api.post(f"/bookings/{booking}/cancel", headers=lee)
    assert cancelling.status_code == 202
    assert (cancelling.json()["status"], cancelling.json()["cancellation_fee"]) == ("CANCELLING", 20000)
    done = wait_for_booking(api, lee, booking, status="CANCELLED", payment_status="REFUNDED")
    assert (done["amount"], done["cancellation_fee"], done["refunded_amount"]) == (100000, 20000, 80000)
    ledger = GatewayClient(stack.urls["gateway"]).ledger(booking)
    assert (ledger["captured"], ledger["refunded"]) == (100000, 80000)


def test_a_newcomer_cancels_part_of_a_booking_then_the_whole_show(stack, api):
    """The README's part on partial cancels and a cancelled show: one seat of three given back 48
    hours before (20% of it kept), a new ticket for the rest, then the show cancelled by an admin:
    the rest refunded in full, no more bookings."""
    create_admin_with_the_cli(stack, "cancel-admin@example.com", "cancel-admin-password")
    admin = bearer(token(api, "cancel-admin@example.com", "cancel-admin-password"))
    api.post("/auth/register", json={"email": "park@example.com", "password": "park-password", "name": "Park"})
    park = bearer(token(api, "park@example.com", "park-password"))
    policy = [{"hours_before": 168, "fee_percent": 0}, {"hours_before": 72, "fee_percent": 10},
              {"hours_before": 24, "fee_percent": 20}, {"hours_before": 0, "fee_percent": 30}]
    show = api.post("/shows", headers=admin, json={
        "title": "Othello", "venue": "Seoul Arts Center", "price": 50000, "capacity": 100,
        "starts_at": (datetime.now(timezone.utc) + timedelta(days=2)).isoformat(),
        "cancellation_policy": policy}).json()

    booking = api.post("/bookings", headers=park, json={"show_id": show["id"], "qty": 3,
                                                        "payment_method": "tok_ok"}).json()["id"]
    wait_for_booking(api, park, booking, status="PAID", ticket_status="ISSUABLE")
    old = api.post(f"/bookings/{booking}/ticket", headers=park).json()["ticket"]
    part = api.post(f"/bookings/{booking}/cancel", headers=park, json={"qty": 1})
    assert part.status_code == 202, part.text
    assert {k: part.json()[k] for k in ("status", "qty", "amount", "cancellation_fee")} == {
        "status": "PAID", "qty": 2, "amount": 100000, "cancellation_fee": 10000}
    wait_for_booking(api, park, booking, refunded_amount=40000, ticket_status="ISSUABLE")
    new = api.post(f"/bookings/{booking}/ticket", headers=park).json()["ticket"]
    assert new["qty"] == 2 and new["qr"] != old["qr"]

    cancelled = api.post(f"/shows/{show['id']}/cancel", headers=admin)
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "CANCELLED"
    wait_until(lambda: api.get(f"/shows/{show['id']}").json()["refunds"] == {"total": 1, "done": 1, "pending": 0}
               or None, 120, 0.25, "the show's refunds to finish")
    done = wait_for_booking(api, park, booking, status="CANCELLED", payment_status="REFUNDED", ticket_status="VOID")
    assert (done["cancellation_fee"], done["refunded_amount"]) == (10000, 140000)
    ledger = GatewayClient(stack.urls["gateway"]).ledger(booking)
    assert (ledger["captured"], ledger["refunded"]) == (150000, 140000)
    refused = api.post("/bookings", headers=park, json={"show_id": show["id"], "qty": 1, "payment_method": "tok_ok"})
    assert refused.status_code == 409
