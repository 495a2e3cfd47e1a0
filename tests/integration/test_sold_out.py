"""Sold out, answered at once (services/sold_out.py): once a show, or a category of a reserved
show, has no seat left and no hold that could give one back, POST /bookings answers 409 with
`reject_reason: sold_out` and writes no booking; a seat coming back lifts the refusal at once.
Real PostgreSQL, Redis, gateway sandbox and a worker process; the requests are real threads."""
import secrets
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from tests.processes import free_port, wait_until

pytestmark = pytest.mark.usefixtures("worker")

HALL = {"name": "Two categories", "sections": [
    {"name": "Floor", "rows": [{"name": "A", "seats": 1, "category": "VIP"}]},
    {"name": "Balcony", "rows": [{"name": "B", "seats": 3, "category": "R"}]},
]}
# The bound the refusal must keep after seats come back: one kick interval, plus what measuring
# it costs here (the request that ends the window must arrive, on a small shared machine).
MEASUREMENT_SLACK_S = 0.1


def bookings_of(app, show_id: str) -> int:
    from models import db
    from models.bookings import Booking
    with app.app_context():
        count = db.session.scalar(select(func.count()).select_from(Booking).where(Booking.show_id == show_id))
        db.session.rollback()
        return count


def fact_of(app, show_id: str) -> set:
    from shared_state.redis_clients import redis_client
    from shared_state.sold_out import SoldOutFacts
    return SoldOutFacts(redis_client(app.config["REDIS_URL"])).read(show_id).sold_out


def post(app, customer, show_id, key=None, **form):
    headers = dict(customer["headers"], **({"Idempotency-Key": key} if key else {}))
    return app.test_client().post("/bookings", headers=headers,
                                  json={"show_id": show_id, "payment_method": "tok_ok", **form})


def sell_out(app, customer, show_id, wait_for, **form):
    """Book what is left (one booking, PAID), then one more that is REJECTED: that run finds the
    show sold out for good and earns the fact."""
    paid = post(app, customer, show_id, **form)
    assert paid.status_code == 202, paid.json
    wait_for(paid.json["id"], status="PAID")
    extra = post(app, customer, show_id, **form)
    assert extra.status_code == 202, extra.json
    wait_for(extra.json["id"], status="REJECTED")
    wait_until(lambda: fact_of(app, show_id), 10, 0.05, "the sold-out fact")
    return paid.json


def assert_sold_out(response):
    assert response.status_code == 409, response.json
    assert response.json["reject_reason"] == "sold_out"
    assert response.json["code"] == 409 and response.json["status"] == "Conflict"


def test_a_sold_out_show_answers_409_sold_out_and_writes_no_booking(app, make_show, customer, wait_for):
    show = make_show(capacity=2)
    sell_out(app, customer, show["id"], wait_for, qty=2)
    before = bookings_of(app, show["id"])
    for _ in range(5):
        assert_sold_out(post(app, customer, show["id"], qty=1))
    assert bookings_of(app, show["id"]) == before


def test_an_idempotency_key_replay_returns_its_booking_not_sold_out(app, make_show, customer, wait_for):
    show = make_show(capacity=1)
    key = secrets.token_hex(8)
    first = post(app, customer, show["id"], key=key, qty=1)
    wait_for(first.json["id"], status="PAID")
    rejected = post(app, customer, show["id"], qty=1)
    wait_for(rejected.json["id"], status="REJECTED")
    wait_until(lambda: fact_of(app, show["id"]), 10, 0.05, "the sold-out fact")
    replay = post(app, customer, show["id"], key=key, qty=1)
    assert replay.status_code == 202 and replay.json["id"] == first.json["id"]
    assert_sold_out(post(app, customer, show["id"], key=secrets.token_hex(8), qty=1))  # a new key: refused


def test_no_refusal_while_a_hold_could_come_back_and_its_seat_is_sold_once_it_does(
        app, make_show, customer, new_customer, wait_for, booking_state, gateway):
    show = make_show(capacity=1)
    gateway.set_faults(latency_ms=1500)
    meanwhile = []
    try:
        slow = post(app, customer, show["id"], qty=1, payment_method="tok_declined")
        wait_for(slow.json["id"], status="CONFIRMED")  # its payment is on its way: the hold may come back
        while booking_state(slow.json["id"])["status"] == "CONFIRMED":
            response = post(app, new_customer(), show["id"], qty=1)
            assert response.status_code == 202, response.json  # recorded, decided the normal way
            meanwhile.append(response.json["id"])
            wait_until(lambda: booking_state(meanwhile[-1])["status"] != "PENDING", 30, 0.05, "a decision")
    finally:
        gateway.clear_faults()
    assert meanwhile
    wait_for(slow.json["id"], status="PAYMENT_FAILED")
    if not any(booking_state(each)["seats_held"] for each in meanwhile):  # all came before the decline
        after = post(app, new_customer(), show["id"], qty=1)
        assert after.status_code == 202
        meanwhile.append(after.json["id"])
    taker = next(each for each in meanwhile if wait_until(
        lambda: booking_state(each)["status"] in ("REJECTED", "PAID"), 30, 0.1, "settled") and
        booking_state(each)["status"] == "PAID")
    assert booking_state(taker)["remaining"] == 0


def test_after_a_cancel_the_next_request_is_accepted_and_gets_the_seats(app, make_show, customer, new_customer,
                                                                        wait_for):
    show = make_show(capacity=2)
    paid = sell_out(app, customer, show["id"], wait_for, qty=2)
    assert_sold_out(post(app, customer, show["id"], qty=2))
    cancelled = app.test_client().post(f"/bookings/{paid['id']}/cancel", headers=customer["headers"])
    assert cancelled.status_code == 202
    taker = post(app, new_customer(), show["id"], qty=2)  # the refund may still be under way: not refused
    assert taker.status_code == 202, taker.json
    wait_for(paid["id"], status="CANCELLED")
    wait_until(lambda: wait_for(taker.json["id"])["status"] in ("REJECTED", "PAID"), 30, 0.1, "the taker decided")
    if wait_for(taker.json["id"])["status"] == "REJECTED":  # decided before the refund gave the seats back
        taker = post(app, new_customer(), show["id"], qty=2)
        assert taker.status_code == 202, taker.json
    wait_for(taker.json["id"], status="PAID", remaining=0)


def test_raising_the_capacity_lifts_the_refusal(app, make_show, customer, admin_headers, wait_for):
    show = make_show(capacity=1)
    sell_out(app, customer, show["id"], wait_for, qty=1)
    raised = app.test_client().patch(f"/shows/{show['id']}", headers=admin_headers, json={"capacity": 2})
    assert raised.status_code == 200
    taker = post(app, customer, show["id"], qty=1)
    assert taker.status_code == 202, taker.json
    wait_for(taker.json["id"], status="PAID")


def test_the_race_refusals_end_within_one_kick_interval_of_the_seats_coming_back(app, make_show, new_customer,
                                                                                 wait_for):
    """Threads hammer a sold-out show while a paid booking gives a seat back (a partial cancel: the
    seat is back in the cancel's own commit). The window in which requests are still refused is
    measured from server-side times: the cancel's (taken in its transaction, so before its commit:
    the window measured is if anything too long) to the created_at of the first booking accepted
    after it."""
    from tasks.reservation_kicks import ReservationAsks
    show = make_show(capacity=3)
    owner = new_customer()
    paid = post(app, owner, show["id"], qty=2)
    wait_for(paid.json["id"], status="PAID")
    sell_out(app, owner, show["id"], wait_for, qty=1)

    stop, answers, lock = threading.Event(), [], threading.Lock()
    customers = [new_customer() for _ in range(6)]

    def hammer(customer):
        client = app.test_client()
        while not stop.is_set():
            response = client.post("/bookings", headers=customer["headers"],
                                   json={"show_id": show["id"], "qty": 1, "payment_method": "tok_ok"})
            with lock:
                answers.append((response.status_code, response.json))

    threads = [threading.Thread(target=hammer, args=(each,)) for each in customers]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: sum(1 for status, _ in answers if status == 409) >= 50, 30, 0.01, "refusals")
        part = app.test_client().post(f"/bookings/{paid.json['id']}/cancel", headers=owner["headers"], json={"qty": 1})
        assert part.status_code == 202, part.json
        seat_back_at = datetime.fromisoformat(part.json["updated_at"])

        def freed_seat_sold():
            with lock:
                taken = [body for status, body in answers if status == 202]
            return [body for body in taken if wait_for(body["id"])["status"] == "PAID"] if taken else None
        sold = wait_until(freed_seat_sold, 60, 0.1, "the freed seat sold")
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    accepted = sorted(datetime.fromisoformat(body["created_at"]) for status, body in answers if status == 202)
    assert not [at for at in accepted if at < seat_back_at]  # refused, every one, while sold out
    window = (accepted[0] - seat_back_at).total_seconds()
    bound = ReservationAsks.INTERVAL_S + MEASUREMENT_SLACK_S
    print(f"\nrefused {sum(1 for s, _ in answers if s == 409)}, accepted {len(accepted)}; "
          f"refusal window after the seat came back: {window * 1000:.1f} ms (bound {bound * 1000:.0f} ms)")
    assert window <= bound
    assert len(sold) == 1 and wait_for(sold[0]["id"])["remaining"] == 0  # the freed seat, sold: none unsold


@pytest.fixture
def two_category_show(app, admin_headers):
    client = app.test_client()
    seat_map = client.post("/seat-maps", headers=admin_headers, json=HALL).json
    response = client.post("/shows", headers=admin_headers, json={
        "title": f"Reserved {secrets.token_hex(3)}", "venue": "Hall", "seat_map_id": seat_map["id"],
        "prices": {"VIP": 100000, "R": 50000},
        "starts_at": (datetime.now(timezone.utc) + timedelta(days=20)).isoformat()})
    assert response.status_code == 201, response.json
    return response.json


def test_only_the_sold_out_category_of_a_reserved_show_is_refused(app, two_category_show, customer, wait_for):
    show_id = two_category_show["id"]
    sell_out(app, customer, show_id, wait_for, qty=1, category="VIP")
    assert fact_of(app, show_id) == {"VIP"}
    before = bookings_of(app, show_id)
    assert_sold_out(post(app, customer, show_id, qty=1, category="VIP"))
    assert_sold_out(post(app, customer, show_id, seats=["1-1-1"]))  # a pick of the VIP seat
    assert bookings_of(app, show_id) == before
    other = post(app, customer, show_id, qty=1, category="R")
    assert other.status_code == 202, other.json
    wait_for(other.json["id"], status="PAID")


def test_redis_down_means_no_refusal(app, make_show, customer, wait_for):
    from models import db
    from tasks.reservation_kicks import send_reserve
    show = make_show(capacity=1)
    sell_out(app, customer, show["id"], wait_for, qty=1)
    working = app.config["REDIS_URL"]
    app.config["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    try:
        response = post(app, customer, show["id"], qty=1)
    finally:
        app.config["REDIS_URL"] = working
    assert response.status_code == 202, response.json  # the normal path: recorded, decided by a run
    with app.app_context():
        send_reserve(show["id"], force=True)  # its own ask went to the Redis that was down
        db.session.rollback()
    wait_for(response.json["id"], status="REJECTED")


def test_unblocking_seats_lifts_the_refusal_of_their_category(app, two_category_show, customer, admin_headers,
                                                              wait_for):
    show_id, balcony = two_category_show["id"], ["2-1-1", "2-1-2", "2-1-3"]
    client = app.test_client()
    assert client.patch(f"/shows/{show_id}", headers=admin_headers, json={"blocked_seats": balcony}).status_code == 200
    refused = post(app, customer, show_id, qty=1, category="R")  # no R seat left, none held: earns the fact
    wait_for(refused.json["id"], status="REJECTED")
    wait_until(lambda: fact_of(app, show_id) == {"R"}, 10, 0.05, "the sold-out fact of R")
    assert_sold_out(post(app, customer, show_id, qty=1, category="R"))
    unblocked = client.patch(f"/shows/{show_id}", headers=admin_headers, json={"blocked_seats": balcony[1:]})
    assert unblocked.status_code == 200
    taker = post(app, customer, show_id, qty=1, category="R")
    assert taker.status_code == 202, taker.json
    wait_for(taker.json["id"], status="PAID")


def test_a_set_that_lost_the_race_to_a_clear_is_refused_by_the_fence(app):
    """A run reads the fence before its lock and sets after its commit; a release that committed
    in between bumped the fence with its clear, so the run's late set must not land."""
    from shared_state.redis_clients import redis_client
    from shared_state.sold_out import FACT_KEY, TTL_MS, Fact, SoldOutFacts
    facts, show_id = SoldOutFacts(redis_client(app.config["REDIS_URL"])), f"show-{secrets.token_hex(4)}"
    read_before_the_lock = facts.fence(show_id)
    facts.seats_back([show_id])  # a release's clear, after the run read the fence
    assert not facts.publish(show_id, Fact({None}, False), read_before_the_lock)
    assert facts.read(show_id).sold_out == set()
    assert facts.publish(show_id, Fact({"VIP", "R"}, True), facts.fence(show_id))  # a run after it: earned
    assert facts.read(show_id) == Fact({"VIP", "R"}, True)
    assert 0 < facts.redis.pttl(FACT_KEY.format(show_id=show_id)) <= TTL_MS
    facts.seats_back([show_id])
    assert facts.read(show_id).sold_out == set()


def test_a_lost_clear_is_made_good_by_the_run_the_refusal_asks_for(app, make_show, customer, wait_for):
    """A fact left standing on a show with a free seat (as if its clear was lost), set to live far
    longer than its TTL: the refusal asks for a reservation run, which finds the seat and deletes
    the fact; the seat is then sold."""
    from shared_state.redis_clients import redis_client
    from shared_state.sold_out import FACT_KEY
    show = make_show(capacity=1)
    redis_client(app.config["REDIS_URL"]).set(FACT_KEY.format(show_id=show["id"]),
                                               '{"sold_out": ["*"], "queued": false}', px=600_000)
    assert_sold_out(post(app, customer, show["id"], qty=1))
    wait_until(lambda: not fact_of(app, show["id"]), 10, 0.02, "the run to delete the fact")
    taker = post(app, customer, show["id"], qty=1)
    assert taker.status_code == 202, taker.json
    wait_for(taker.json["id"], status="PAID")


def test_a_sold_out_show_with_a_waiting_room_still_asks_for_the_admission_token_first(app, admin_headers,
                                                                                      new_customer, wait_for):
    from services import waiting_room
    client, now = app.test_client(), datetime.now(timezone.utc)
    show = client.post("/shows", headers=admin_headers, json={
        "title": f"Queued {secrets.token_hex(3)}", "venue": "Arena", "price": 1000, "capacity": 1,
        "starts_at": (now + timedelta(days=10)).isoformat(), "on_sale_at": (now - timedelta(seconds=1)).isoformat(),
        "waiting_room": {"admit_per_minute": 600, "session_minutes": 10}}).json
    alice, bob = new_customer(), new_customer()
    entries = [client.post(f"/shows/{show['id']}/queue", headers=each["headers"]).json for each in (alice, bob)]
    with app.app_context():
        for seconds in (1, 2):
            waiting_room.admit_due(now + timedelta(seconds=seconds), only=[show["id"]])
    alice_token, bob_token = (client.get(f"/queue/{entry['id']}", headers=each["headers"]).json["admission_token"]
                              for entry, each in zip(entries, (alice, bob)))
    paid = client.post("/bookings", headers={**alice["headers"], "Admission-Token": alice_token},
                       json={"show_id": show["id"], "qty": 1, "payment_method": "tok_ok"})
    wait_for(paid.json["id"], status="PAID")
    bobs = {**bob["headers"], "Admission-Token": bob_token}
    rejected = client.post("/bookings", headers=bobs, json={"show_id": show["id"], "qty": 1, "payment_method": "tok_ok"})
    wait_for(rejected.json["id"], status="REJECTED")  # frees bob's turn for another try; earns the fact
    wait_until(lambda: fact_of(app, show["id"]), 10, 0.05, "the sold-out fact")
    before = bookings_of(app, show["id"])
    assert_sold_out(client.post("/bookings", headers=bobs, json={"show_id": show["id"], "qty": 1,
                                                                 "payment_method": "tok_ok"}))
    no_token = post(app, new_customer(), show["id"], qty=1)
    assert no_token.status_code == 403, no_token.json
    assert bookings_of(app, show["id"]) == before


def test_a_refusal_is_answered_before_the_rate_limit_and_does_not_count_against_it(
        app, make_show, customer, new_customer, wait_for, monkeypatch):
    """A sold-out answer costs less than the limiter's check and changes nothing (web/bookings.py,
    sold_out_first): a customer asking again and again is answered 409 every time, never 429, and
    still has the whole limit for a show with seats."""
    sold, open_show = make_show(capacity=1), make_show(capacity=10)
    sell_out(app, customer, sold["id"], wait_for, qty=1)
    monkeypatch.setitem(app.config, "RATE_LIMIT_BOOKINGS", "3/hour")
    bob = new_customer()
    for _ in range(6):
        assert_sold_out(post(app, bob, sold["id"], qty=1))
    taken = post(app, bob, open_show["id"], qty=1)
    assert taken.status_code == 202, taken.json
    assert taken.headers["X-RateLimit-Remaining"] == "2"  # the six refusals were not counted
    for _ in range(2):
        assert post(app, bob, open_show["id"], qty=1).status_code == 202
    assert post(app, bob, open_show["id"], qty=1).status_code == 429  # the limit itself still holds


def test_bad_input_for_a_sold_out_show_is_still_a_422_not_a_refusal(app, make_show, customer, wait_for):
    show = make_show(capacity=1)
    sell_out(app, customer, show["id"], wait_for, qty=1)
    before = bookings_of(app, show["id"])
    for form in ({"qty": 0}, {"qty": "two"}, {"qty": 1, "colour": "red"}):
        answer = post(app, customer, show["id"], **form)
        assert answer.status_code == 422, (form, answer.json)
    missing = app.test_client().post("/bookings", headers=customer["headers"], json={"show_id": show["id"], "qty": 1})
    assert missing.status_code == 422, missing.json  # no payment_method
    unauthenticated = app.test_client().post("/bookings", json={"show_id": show["id"], "qty": 1,
                                                                "payment_method": "tok_ok"})
    assert unauthenticated.status_code == 401, unauthenticated.json
    assert bookings_of(app, show["id"]) == before
