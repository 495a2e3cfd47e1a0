"""SPEC §11, a cancelled show, through the API and real workers: POST /shows/{id}/cancel refuses new
bookings and queue joins, cancels every live booking in full without a fee and refunds it in the
background (refunds on the show), voids every ticket, and is harmless to repeat; racing new
bookings and charges in flight, every booking ends refunded in full or never charged; a worker
SIGKILLed in the middle of the fan-out loses nothing."""
import os
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
import requests

from tests.integration.observed_stack import PrivateStack, start_api
from tests.processes import wait_until

KOREAN = [{"hours_before": 168, "fee_percent": 0}, {"hours_before": 72, "fee_percent": 10},
          {"hours_before": 24, "fee_percent": 20}, {"hours_before": 0, "fee_percent": 30}]
LIVE = ("PENDING", "CONFIRMED", "PAID", "CANCELLING")


def refunds_done(client, show_id, timeout=120):
    def done():
        show = client.get(f"/shows/{show_id}").json
        return show if show["refunds"] and show["refunds"]["pending"] == 0 else None
    return wait_until(done, timeout, 0.2, f"the refunds of show {show_id} to finish")


def bookings_of(app, show_id):
    from sqlalchemy import select

    from models import db
    from models.bookings import Booking
    with app.app_context():
        rows = {b.id: {"status": b.status, "payment_status": b.payment.status, "ticket_status": b.ticket.status,
                       "amount": b.amount, "cancellation_fee": b.cancellation_fee, "refunded_amount": b.refunded_amount,
                       "cancelled_with_show": b.cancelled_with_show}
                for b in db.session.scalars(select(Booking).where(Booking.show_id == show_id)).unique()}
        db.session.remove()
    return rows


def money_problems(app, gateway, ids):
    from models import consistency, db
    with app.app_context():
        rows = [row for row in consistency.booking_money_report(gateway.ledger()["by_reference"])
                if row["booking_id"] in ids and not row["agrees"]]
        db.session.remove()
    return rows


@pytest.mark.usefixtures("worker")
def test_a_cancelled_show_refunds_every_live_booking_in_full_and_takes_no_more(
        app, client, admin_headers, customer, new_customer, make_show, book, wait_for, gateway, staff_headers):
    show = make_show(capacity=20, price=10_000, starts_in=timedelta(hours=50), cancellation_policy=KOREAN)
    used, part, plain, earlier = (book(customer, show["id"], qty=2).json["id"] for _ in range(4))
    for booking_id in (used, part, plain, earlier):
        wait_for(booking_id, status="PAID", ticket_status="ISSUABLE")
    qr = client.post(f"/bookings/{used}/ticket", headers=customer["headers"]).json["ticket"]["qr"]
    assert client.post("/checkins", headers=staff_headers, json={"qr": qr}).status_code == 200
    # Before the show is cancelled: one seat of `part` given back (fee 2,000), `earlier` cancelled whole (4,000).
    assert client.post(f"/bookings/{part}/cancel", headers=customer["headers"], json={"qty": 1}).json["cancellation_fee"] == 2_000
    assert client.post(f"/bookings/{earlier}/cancel", headers=customer["headers"]).json["cancellation_fee"] == 4_000
    wait_for(earlier, status="CANCELLED")
    assert client.get(f"/shows/{show['id']}").json["refunds"] is None

    customer_only = client.post(f"/shows/{show['id']}/cancel", headers=customer["headers"])
    assert customer_only.status_code == 403
    answer = client.post(f"/shows/{show['id']}/cancel", headers=admin_headers)
    assert answer.status_code == 202, answer.json
    assert answer.json["status"] == "CANCELLED" and answer.json["cancelled_at"]
    again = client.post(f"/shows/{show['id']}/cancel", headers=admin_headers)
    assert again.status_code == 202 and again.json["cancelled_at"] == answer.json["cancelled_at"]

    refused = book(new_customer(), show["id"], qty=1)
    assert refused.status_code == 409 and "cancelled" in refused.json["message"], refused.json
    assert client.patch(f"/shows/{show['id']}", headers=admin_headers, json={"title": "New"}).status_code == 409

    final = refunds_done(client, show["id"])
    assert final["refunds"] == {"total": 3, "done": 3, "pending": 0}
    rows = bookings_of(app, show["id"])
    assert {rows[b]["status"] for b in (used, part, plain)} == {"CANCELLED"}
    assert {row["ticket_status"] for row in rows.values()} == {"VOID"}
    assert [rows[b]["cancelled_with_show"] for b in (used, part, plain, earlier)] == [True, True, True, False]
    # In full: no new fee. What was kept before the show was cancelled stays kept.
    for booking_id, kept in ((used, 0), (part, 2_000), (plain, 0), (earlier, 4_000)):
        ledger = gateway.ledger(booking_id)
        assert (rows[booking_id]["cancellation_fee"], ledger["captured"] - ledger["refunded"]) == (kept, kept), booking_id
    assert not money_problems(app, gateway, set(rows))
    assert final["remaining"] == 20
    # The used ticket is void at the door now; a customer's cancel of a cancelled show's booking is harmless.
    assert client.post("/checkins", headers=staff_headers, json={"qr": qr}).json["result"] == "VOID"
    assert client.post(f"/bookings/{plain}/cancel", headers=customer["headers"]).status_code == 202
    counts = client.get("/admin/consistency", headers=admin_headers).json["counts"]
    assert (counts["cancelled_show_live"], counts["cancelled_show_tickets_valid"]) == (0, 0), counts
    # The check sees a ticket of the cancelled show that could still be used.
    from sqlalchemy import text

    from models import db
    with app.app_context():
        db.session.execute(text("UPDATE tickets SET status = 'ISSUABLE' WHERE booking_id = :b"), {"b": plain})
        db.session.commit()
    try:
        found = client.get("/admin/consistency", headers=admin_headers).json
        assert found["counts"]["cancelled_show_tickets_valid"] == 1
        assert found["cancelled_shows"]["cancelled_show_tickets_valid"] == [plain]
    finally:
        with app.app_context():
            db.session.execute(text("UPDATE tickets SET status = 'VOID' WHERE booking_id = :b"), {"b": plain})
            db.session.commit()
    # Partners hear of it once (SPEC §12), and of each booking's cancel.
    from sqlalchemy import select

    from models import db
    from models.events import Event
    with app.app_context():
        told = db.session.execute(select(Event.type, Event.booking_id).where(Event.show_id == show["id"])).all()
        db.session.remove()
    assert [booking for kind, booking in told if kind == "show.cancelled"] == [None], told
    assert {booking for kind, booking in told if kind == "booking.cancelled"} >= {used, part, plain}, told


def test_a_cancelled_show_takes_no_queue_joins(client, admin_headers, new_customer):
    now = datetime.now(timezone.utc)
    show = client.post("/shows", headers=admin_headers, json={
        "title": f"Queued {secrets.token_hex(3)}", "venue": "Arena", "price": 1000, "capacity": 100,
        "starts_at": (now + timedelta(days=10)).isoformat(), "on_sale_at": (now - timedelta(seconds=1)).isoformat(),
        "waiting_room": {"admit_per_minute": 60, "session_minutes": 10}}).json
    first = new_customer()
    joined = client.post(f"/shows/{show['id']}/queue", headers=first["headers"])
    assert joined.status_code == 201, joined.json
    assert client.post(f"/shows/{show['id']}/cancel", headers=admin_headers).status_code == 202
    time.sleep(1.1)  # the join path caches a show's facts for a second
    late = client.post(f"/shows/{show['id']}/queue", headers=new_customer()["headers"])
    assert late.status_code == 409 and "cancelled" in late.json["message"], late.json


def test_a_join_in_the_same_second_as_the_cancel_is_refused_by_the_batch_writer(app, client, admin_headers,
                                                                                   new_customer):
    """The cached facts still say "open" (read just before the cancel): the batch writer, which
    locks the room after the cancel's FOR UPDATE, writes nothing and answers 409."""
    now = datetime.now(timezone.utc)
    show = client.post("/shows", headers=admin_headers, json={
        "title": f"Queued {secrets.token_hex(3)}", "venue": "Arena", "price": 1000, "capacity": 100,
        "starts_at": (now + timedelta(days=10)).isoformat(), "on_sale_at": (now - timedelta(seconds=1)).isoformat(),
        "waiting_room": {"admit_per_minute": 60, "session_minutes": 10}}).json
    assert client.post(f"/shows/{show['id']}/queue", headers=new_customer()["headers"]).status_code == 201
    assert client.post(f"/shows/{show['id']}/cancel", headers=admin_headers).status_code == 202
    late = client.post(f"/shows/{show['id']}/queue", headers=new_customer()["headers"])
    assert late.status_code == 409 and "cancelled" in late.json["message"], late.json
    from sqlalchemy import text

    from models import db
    with app.app_context():
        entries = db.session.execute(text("SELECT count(*) FROM queue_entries WHERE show_id = :s"), {"s": show["id"]}).scalar()
        db.session.remove()
    assert entries == 1


@pytest.fixture(scope="module")
def api_url(workdir):
    process, url = start_api(workdir, {"REDIS_URL": os.environ["REDIS_URL"]}, name="show-cancel-api", workers=2)
    yield url
    process.stop()


@pytest.mark.usefixtures("worker")
def test_a_show_cancel_racing_new_bookings_and_charges_in_flight_leaves_each_refunded_in_full_or_never_charged(
        app, client, api_url, admin_headers, new_customer, make_show, gateway):
    show = make_show(capacity=1_000, price=5_000)
    customers = [new_customer() for _ in range(12)]
    gateway.set_faults(latency_ms=300)  # charges in flight while the cancel lands
    accepted, answers = [], []
    stop = threading.Event()
    try:
        def keep_booking(customer):
            with requests.Session() as session:
                while not stop.is_set():
                    response = session.post(f"{api_url}/bookings", headers=customer["headers"], timeout=60,
                                            json={"show_id": show["id"], "qty": 1, "payment_method": "tok_ok"})
                    answers.append(response.status_code)
                    if response.status_code == 202:
                        accepted.append(response.json()["id"])
                    stop.wait(0.1)  # a steady flow, not a sell-out before the cancel

        with ThreadPoolExecutor(len(customers)) as pool:
            for customer in customers:
                pool.submit(keep_booking, customer)
            # Some paid, more with their charge under way, more still pending: then the cancel.
            wait_until(lambda: sum(r["status"] == "PAID" for r in bookings_of(app, show["id"]).values()) >= 8 or None,
                       90, 0.05, "bookings to be paid")
            cancelled = requests.post(f"{api_url}/shows/{show['id']}/cancel", headers=admin_headers, timeout=60)
            assert cancelled.status_code == 202, cancelled.text
            time.sleep(1.0)  # bookings keep arriving after the cancel: each is refused
            stop.set()
    finally:
        gateway.clear_faults()
    assert set(answers) <= {202, 409}, set(answers)
    assert answers.count(409) > 0

    refunds_done(client, show["id"], timeout=180)

    def settled():
        rows = bookings_of(app, show["id"])
        return rows if not [r for r in rows.values() if r["status"] in LIVE or r["payment_status"] in ("PENDING", "REFUNDING")] else None
    rows = wait_until(settled, 120, 0.2, "every booking of the cancelled show to settle")
    assert set(accepted) <= set(rows)
    outcomes = {}
    for booking_id, row in rows.items():
        ledger = gateway.ledger(booking_id)
        assert row["status"] in ("CANCELLED", "REJECTED"), (booking_id, row)
        assert ledger["captured"] == ledger["refunded"], (booking_id, row, ledger)
        outcome = "refunded in full" if ledger["captured"] else "never charged"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert not money_problems(app, gateway, set(rows))
    print(f"show cancel vs bookings and charges in flight: {len(rows)} bookings: {outcomes}")
    assert outcomes.get("refunded in full", 0) >= 8 and outcomes.get("never charged", 0) > 0, outcomes


class CancelStack(PrivateStack):
    def __init__(self, folder, gateway):
        super().__init__(folder, {"GATEWAY_URL": gateway.base_url, "SHOW_CANCEL_CHUNK": "10",
                                  "SHOW_CANCEL_RUN_LIMIT": "40", "REDRIVE_STUCK_AFTER_S": "3",
                                  "UNSAFE_TEST_VISIBILITY_TIMEOUT_S": "5"}, api_name="cancel-api")


@pytest.fixture(scope="module")
def cancel_stack(workdir, gateway):
    stack = CancelStack(workdir / "show-cancel-faults", gateway)
    yield stack
    stack.close()


def test_workers_sigkilled_in_the_middle_of_the_fan_out_lose_nothing(app, client, cancel_stack, admin_headers,
                                                                     new_customer, gateway):
    stack = cancel_stack
    worker = stack.worker(concurrency=2)
    show = requests.post(f"{stack.api_url}/shows", headers=admin_headers, timeout=30, json={
        "title": f"Doomed {secrets.token_hex(3)}", "venue": "Hall", "price": 3_000, "capacity": 400,
        "starts_at": (datetime.now(timezone.utc) + timedelta(days=5)).isoformat()}).json()
    customers = [new_customer() for _ in range(4)]
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda n: requests.post(
            f"{stack.api_url}/bookings", headers=customers[n % 4]["headers"], timeout=60,
            json={"show_id": show["id"], "qty": 1, "payment_method": "tok_ok"}).json()["id"], range(160)))
    wait_until(lambda: all(r["status"] == "PAID" for r in bookings_of(app, show["id"]).values()) or None,
               180, 0.3, "every booking to be paid")

    gateway.set_faults(latency_ms=40)  # refunds slow enough to be cut in the middle
    try:
        assert requests.post(f"{stack.api_url}/shows/{show['id']}/cancel", headers=admin_headers,
                             timeout=30).status_code == 202
        def midway():
            refunds = client.get(f"/shows/{show['id']}").json["refunds"]
            return refunds if 0 < refunds["done"] < refunds["total"] else None
        seen = wait_until(midway, 120, 0.05, "the fan-out to be under way")
        worker.kill()  # SIGKILL to the worker and its pool processes: nothing is handed back
        left = client.get(f"/shows/{show['id']}").json["refunds"]
        assert left["pending"] > 0, left
        stack.worker(concurrency=2)
        stack.beat()  # the re-drive job finds the show's live bookings and refunds still due
        final = refunds_done(client, show["id"], timeout=240)
    finally:
        gateway.clear_faults()
    print(f"killed at {seen}, {left} left; then {final['refunds']}")
    assert final["refunds"] == {"total": 160, "done": 160, "pending": 0}
    rows = bookings_of(app, show["id"])
    assert set(ids) == set(rows) and {r["status"] for r in rows.values()} == {"CANCELLED"}
    for booking_id in ids:
        ledger = gateway.ledger(booking_id)
        assert (ledger["captured"], ledger["refunded"]) == (3_000, 3_000), (booking_id, ledger)
    assert not money_problems(app, gateway, set(ids))
    stack.stop_processes()
