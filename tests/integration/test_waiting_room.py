"""The waiting room through the API (SPEC §9), against real PostgreSQL and Redis: join once per
customer, the draw of the early joiners, admission in queue order at the room's rate, the
Admission-Token that POST /bookings demands, leaving, and the admin's counts and rate change.

The admission job is run here by calling it with a chosen clock (services/waiting_room.py), so
each test says exactly which tick admits whom; test_waiting_room_faults.py runs it for real
(beat and its worker) under killed processes and an emptied Redis.
"""
import secrets
from datetime import datetime, timedelta, timezone

import jwt
import pytest
from sqlalchemy import text

from tests.processes import wait_until

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def queued_show(client, admin_headers):
    def make(on_sale_in=timedelta(seconds=-1), admit_per_minute=60, session_minutes=10, capacity=50, **extra):
        now = datetime.now(timezone.utc)
        response = client.post("/shows", headers=admin_headers, json={
            "title": f"Queued {secrets.token_hex(3)}", "venue": "Arena", "price": 1000, "capacity": capacity,
            "starts_at": (now + timedelta(days=10)).isoformat(), "on_sale_at": (now + on_sale_in).isoformat(),
            "waiting_room": {"admit_per_minute": admit_per_minute, "session_minutes": session_minutes}, **extra})
        assert response.status_code == 201, response.json
        return response.json
    return make


def admit(app, show, at: datetime | None = None) -> int:
    """One tick of the admission job for this show only (other tests' rooms are left alone)."""
    from services import waiting_room
    with app.app_context():
        return waiting_room.admit_due(at, only=[show["id"]])


def join(client, customer, show_id):
    response = client.post(f"/shows/{show_id}/queue", headers=customer["headers"])
    assert response.status_code != 429, response.json
    return response


def poll(client, customer, entry_id):
    response = client.get(f"/queue/{entry_id}", headers=customer["headers"])
    assert response.status_code == 200, response.json
    return response.json


def book(client, customer, show_id, token=None, qty=1):
    headers = dict(customer["headers"])
    if token is not None:
        headers["Admission-Token"] = token
    return client.post("/bookings", headers=headers, json={"show_id": show_id, "qty": qty, "payment_method": "tok_ok"})


def bookings_of(app, show_id) -> int:
    from models import db
    with app.app_context():
        return db.session.execute(text("SELECT count(*) FROM bookings WHERE show_id = :s"), {"s": show_id}).scalar()


def later(seconds: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=seconds)


def test_a_show_with_a_waiting_room_says_so_and_its_rate_can_change(client, admin_headers, queued_show):
    show = queued_show(admit_per_minute=120, session_minutes=5)
    assert show["waiting_room"] == {"admit_per_minute": 120, "session_minutes": 5}
    response = client.patch(f"/shows/{show['id']}", headers=admin_headers, json={"waiting_room": {"admit_per_minute": 30}})
    assert response.status_code == 200, response.json
    assert response.json["waiting_room"] == {"admit_per_minute": 30, "session_minutes": 5}
    for bad in ({"admit_per_minute": 0}, {"admit_per_minute": True}, {"admit_per_minute": 10, "extra": 1},
                {"session_minutes": 100000}):
        response = client.patch(f"/shows/{show['id']}", headers=admin_headers, json={"waiting_room": bad})
        assert response.status_code == 422, (bad, response.json)
    assert client.get(f"/shows/{show['id']}").json["waiting_room"]["admit_per_minute"] == 30


def test_joining_twice_returns_the_same_entry_and_others_cannot_see_it(client, new_customer, queued_show):
    show, alice, bob = queued_show(), new_customer(), new_customer()
    first = join(client, alice, show["id"])
    assert first.status_code == 201, first.json
    entry = first.json
    assert entry["state"] == "WAITING" and entry["show_id"] == show["id"]
    again = join(client, alice, show["id"])
    assert again.status_code == 200 and again.json["id"] == entry["id"]
    assert client.get(f"/queue/{entry['id']}", headers=bob["headers"]).status_code == 404
    assert client.delete(f"/queue/{entry['id']}", headers=bob["headers"]).status_code == 404
    assert client.get(f"/queue/{secrets.token_hex(8)}", headers=alice["headers"]).status_code == 404


def test_joins_are_refused_where_there_is_no_queue_to_join(client, admin_headers, customer, make_show, queued_show):
    assert join(client, customer, make_show()["id"]).status_code == 409  # no waiting room
    assert join(client, customer, "no-such-show").status_code == 404
    sold_out = queued_show(capacity=0)
    assert join(client, customer, sold_out["id"]).status_code == 409
    assert client.post(f"/shows/{sold_out['id']}/queue").status_code == 401
    assert client.post(f"/shows/{sold_out['id']}/queue", headers=admin_headers).status_code == 403


def test_before_the_sale_early_joiners_have_no_place_until_the_draw(app, client, new_customer, queued_show):
    show = queued_show(on_sale_in=timedelta(hours=1), admit_per_minute=6000)
    customers = [new_customer() for _ in range(6)]
    entries = [join(client, each, show["id"]).json for each in customers]
    assert all(entry["position"] is None and entry["ahead"] is None for entry in entries)
    assert admit(app, show) == 0  # the sale has not opened: no draw, no admission
    assert all(poll(client, c, e["id"])["position"] is None for c, e in zip(customers, entries))

    at = later(3600 + 1)
    admit(app, show, at)  # the draw, and the first admissions
    from services import waiting_room
    from models.waiting_room import draw_order
    with app.app_context():
        seed, drawn = waiting_room.recorded_draw(show["id"])
    assert sorted(drawn) == sorted(entry["id"] for entry in entries)
    assert draw_order(seed, [entry["id"] for entry in entries]) == drawn  # reproducible from the seed


def test_admission_follows_the_queue_order_at_the_rate(app, client, new_customer, queued_show):
    show = queued_show(admit_per_minute=60)  # one a second
    customers = [new_customer() for _ in range(5)]
    entries = [join(client, each, show["id"]).json for each in customers]
    positions = [entry["position"] for entry in entries]
    assert positions == sorted(positions) and entries[0]["ahead"] == 0 and entries[4]["ahead"] == 4
    assert entries[4]["estimated_wait_s"] == 5

    start = later(1)
    admit(app, show, start)  # the draw (no early joiners) starts the schedule: nothing is due yet
    admitted = [admit(app, show, start + timedelta(seconds=s)) for s in (0.5, 1.0, 1.2, 2.0, 3.0)]
    assert admitted == [0, 1, 0, 1, 1]
    states = [poll(client, c, e["id"]) for c, e in zip(customers, entries)]
    assert [s["state"] for s in states] == ["ADMITTED"] * 3 + ["WAITING"] * 2
    assert states[3]["ahead"] == 0 and states[4]["ahead"] == 1
    token = jwt.decode(states[0]["admission_token"], options={"verify_signature": False})
    assert token["sub"] == customers[0]["id"] and token["sid"] == show["id"] and token["qid"] == entries[0]["id"]


def test_an_idle_queue_saves_up_no_burst(app, client, new_customer, queued_show):
    show = queued_show(admit_per_minute=60)
    start = later(1)
    admit(app, show, start)
    admit(app, show, start + timedelta(seconds=30))  # 30 slots came due with nobody waiting: forfeit
    customers = [new_customer() for _ in range(5)]
    for each in customers:
        join(client, each, show["id"])
    assert admit(app, show, start + timedelta(seconds=30.5)) == 0
    assert admit(app, show, start + timedelta(seconds=31)) == 1


def test_a_booking_needs_the_customers_own_valid_admission_token(app, client, new_customer, queued_show):
    show, other_show = queued_show(admit_per_minute=600), queued_show(admit_per_minute=600)
    alice, bob = new_customer(), new_customer()
    entry = join(client, alice, show["id"]).json
    join(client, bob, show["id"])
    start = later(1)
    admit(app, show, start)
    admit(app, show, start + timedelta(seconds=1))
    token = poll(client, alice, entry["id"])["admission_token"]
    assert token

    before = bookings_of(app, show["id"])
    forged = jwt.encode({**jwt.decode(token, options={"verify_signature": False})}, "not-the-key-of-this-api-0123456789abcdef", algorithm="HS256")
    expired = jwt.encode({"sub": alice["id"], "sid": show["id"], "qid": entry["id"], "aud": "boxoffice:admission",
                          "exp": 1}, "an-expired-token-signed-with-some-key-0123456789", algorithm="HS256")
    for headers_token, who, show_id in ((None, alice, show["id"]), (forged, alice, show["id"]), (expired, alice, show["id"]),
                                         (token, bob, show["id"]), (token, alice, other_show["id"]), ("garbage", alice, show["id"])):
        response = book(client, who, show_id, headers_token)
        assert response.status_code == 403, (headers_token, response.json)
    assert bookings_of(app, show["id"]) == before

    response = book(client, alice, show["id"], token)
    assert response.status_code == 202, response.json
    again = book(client, alice, show["id"], token)
    assert again.status_code == 409  # one booking per turn


def test_a_token_whose_booking_was_rejected_may_be_used_again(app, client, new_customer, queued_show, wait_for):
    show = queued_show(admit_per_minute=600, capacity=2)
    alice = new_customer()
    entry = join(client, alice, show["id"]).json
    start = later(1)
    admit(app, show, start)
    admit(app, show, start + timedelta(seconds=1))
    token = poll(client, alice, entry["id"])["admission_token"]
    too_many = book(client, alice, show["id"], token, qty=3)
    assert too_many.status_code == 202
    wait_for(too_many.json["id"], status="REJECTED")
    retry = book(client, alice, show["id"], token, qty=2)
    assert retry.status_code == 202, retry.json


def test_leaving_gives_up_the_place(app, client, new_customer, queued_show, admin_headers):
    show = queued_show(admit_per_minute=60)
    alice, bob = new_customer(), new_customer()
    first = join(client, alice, show["id"]).json
    second = join(client, bob, show["id"]).json
    assert second["ahead"] == 1
    left = client.delete(f"/queue/{first['id']}", headers=alice["headers"])
    assert left.status_code == 200 and left.json["state"] == "LEFT"
    assert client.delete(f"/queue/{first['id']}", headers=alice["headers"]).json["state"] == "LEFT"
    assert poll(client, bob, second["id"])["ahead"] == 0
    start = later(1)
    admit(app, show, start)
    admit(app, show, start + timedelta(seconds=1))
    assert poll(client, bob, second["id"])["state"] == "ADMITTED"
    assert poll(client, alice, first["id"])["state"] == "LEFT"
    stats = client.get(f"/shows/{show['id']}/queue", headers=admin_headers).json
    assert (stats["waiting"], stats["admitted"], stats["left"]) == (0, 1, 1)
    assert client.get(f"/shows/{show['id']}/queue", headers=alice["headers"]).status_code == 403


def test_an_admitted_customers_turn_expires(app, client, new_customer, queued_show, admin_headers):
    show = queued_show(admit_per_minute=600, session_minutes=1, on_sale_in=timedelta(minutes=-5))
    alice = new_customer()
    entry = join(client, alice, show["id"]).json
    start = later(-120)  # as if the sale had opened two minutes ago
    admit(app, show, start)
    admit(app, show, start + timedelta(seconds=1))
    polled = poll(client, alice, entry["id"])
    assert polled["state"] == "EXPIRED" and polled["admission_token"] is None
    stats = client.get(f"/shows/{show['id']}/queue", headers=admin_headers).json
    assert stats["expired"] == 1 and stats["admitted"] == 0


def test_a_changed_rate_applies_from_then_on(app, client, new_customer, queued_show, admin_headers):
    show = queued_show(admit_per_minute=60)
    for _ in range(30):
        join(client, new_customer(), show["id"])
    start = later(1)
    admit(app, show, start)
    assert [admit(app, show, start + timedelta(seconds=s)) for s in (1, 2)] == [1, 1]
    from services import waiting_room
    with app.app_context():
        from models import db
        from models.shows import get_show
        show_row = get_show(show["id"], for_update=True)
        waiting_room.configure(show_row, {"admit_per_minute": 600}, start + timedelta(seconds=2))
        db.session.commit()

    # 5 more due each half second; a tick admits at most half a second's worth (a stall's catch-up)
    assert [admit(app, show, start + timedelta(seconds=s)) for s in (2.5, 3)] == [5, 5]
    wait_until(lambda: client.get(f"/shows/{show['id']}/queue", headers=admin_headers).json["admitted"] == 12, 5)


def queue_counts(app, show):
    """The queue report's findings about this show (other tests' rooms run on made-up clocks)."""
    from models.consistency import queue_report
    with app.app_context():
        return {name: sum(1 for line in found if line.startswith(f"show {show['id']}:"))
                for name, found in queue_report().items()}


def test_the_consistency_report_checks_the_queue_and_finds_what_is_wrong(app, client, new_customer, queued_show):
    from models import db
    show = queued_show(admit_per_minute=60)
    customers = [new_customer() for _ in range(3)]
    entries = [join(client, each, show["id"]).json for each in customers]
    start = later(1)
    admit(app, show, start)
    admit(app, show, start + timedelta(seconds=1))
    assert queue_counts(app, show) == {"queue_out_of_order": 0, "queue_admitted_twice": 0, "admission_misused": 0}

    # The third entry let in ahead of the second, with no count: out of order, and miscounted.
    with app.app_context():
        db.session.execute(text("UPDATE queue_entries SET state = 'ADMITTED', admission_seq = 2, admitted_at = now(), "
                                "admitted_until = now() + interval '1 minute' WHERE id = :id"), {"id": entries[2]["id"]})
        db.session.commit()
    found = queue_counts(app, show)
    assert found["queue_out_of_order"] >= 1 and found["queue_admitted_twice"] == 1
    with app.app_context():
        db.session.execute(text("UPDATE queue_entries SET state = 'WAITING', admission_seq = NULL, admitted_at = NULL, "
                                "admitted_until = NULL WHERE id = :id"), {"id": entries[2]["id"]})
        db.session.commit()
    assert queue_counts(app, show) == {"queue_out_of_order": 0, "queue_admitted_twice": 0, "admission_misused": 0}


class Writes:
    """The statements that write, counted as the API's engine sends them."""

    def __init__(self, app):
        from models import db
        with app.app_context():
            self.engine = db.engine
        self.statements = []

    def __enter__(self):
        from sqlalchemy import event
        event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc):
        from sqlalchemy import event
        event.remove(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            self.statements.append(statement)


def test_joins_are_written_in_batches_and_polls_write_nothing(app, new_customer, queued_show):
    from concurrent.futures import ThreadPoolExecutor
    show = queued_show(admit_per_minute=60)
    customers = [new_customer() for _ in range(120)]

    def join_one(customer):
        response = app.test_client().post(f"/shows/{show['id']}/queue", headers=customer["headers"])
        assert response.status_code == 201, response.json
        return response.json["id"]

    with Writes(app) as writes, ThreadPoolExecutor(32) as pool:
        ids = list(pool.map(join_one, customers))
    inserts = [s for s in writes.statements if "INTO queue_entries" in s]
    assert len(set(ids)) == 120
    assert 1 <= len(inserts) < 120 and len(writes.statements) == len(inserts)  # batched, nothing else written

    with Writes(app) as writes:
        for customer, entry_id in zip(customers, ids):
            assert poll(app.test_client(), customer, entry_id)["state"] == "WAITING"
            assert join(app.test_client(), customer, show["id"]).status_code == 200
    assert writes.statements == []


def test_with_the_database_away_joins_and_polls_answer_503_not_500(app, new_customer, queued_show):
    """An API whose PostgreSQL is unreachable (a port nothing listens on) and whose Redis index
    does not know the entry: the customer is told to try again, and the entry stays as it was."""
    from tests.processes import free_port
    from web import create_app
    show, customer = queued_show(admit_per_minute=60), new_customer()
    entry = join(app.test_client(), customer, show["id"]).json
    away = create_app({"SQLALCHEMY_DATABASE_URI": f"postgresql+psycopg://root@127.0.0.1:{free_port()}/none",
                       "JWT_SECRET_KEY": app.config["JWT_SECRET_KEY"], "REDIS_URL": app.config["REDIS_URL"]})
    app.extensions["celery"].set_default()
    other = new_customer()
    response = away.test_client().post(f"/shows/{show['id']}/queue", headers=other["headers"])
    assert response.status_code == 503, response.json
    response = away.test_client().get(f"/queue/{secrets.token_hex(8)}", headers=customer["headers"])
    assert response.status_code == 503, response.json
    # What the index knows is still answered without the database.
    assert away.test_client().get(f"/queue/{entry['id']}", headers=customer["headers"]).json["id"] == entry["id"]
    assert poll(app.test_client(), customer, entry["id"])["state"] == "WAITING"


def test_an_admission_waits_for_joins_in_flight_so_no_smaller_arrival_number_is_passed_over(
        app, client, new_customer, queued_show):
    """Two join batches in flight at once: F draws the smaller arrival number but commits last.
    An admission run in between must wait for F (its batch holds the room SHARE until it commits),
    then admit F before E, not E alone as the only one it could see."""
    import threading
    from models import db
    from services import queue_joins
    show = queued_show(admit_per_minute=600, on_sale_in=timedelta(seconds=-30))
    first, second = new_customer(), new_customer()
    start = later(-5)
    admit(app, show, start)  # draws (nobody early) and starts the schedule
    with app.app_context():
        connection = db.engine.connect()
        batch = connection.begin()
        connection.execute(queue_joins._LOCK_ROOMS, {"shows": [show["id"]]})
        f_id = secrets.token_hex(8)
        connection.execute(queue_joins._INSERT, {"ids": [f_id], "shows": [show["id"]], "customers": [first["id"]],
                                                 "joined": [datetime.now(timezone.utc)]})
    e_entry = join(client, second, show["id"]).json  # its own batch commits at once
    done = threading.Event()
    admitted = []

    def tick():
        admitted.append(admit(app, show, start + timedelta(seconds=1)))
        done.set()
    runner = threading.Thread(target=tick)
    runner.start()

    def waiting_for_the_batch():
        with app.app_context():
            return db.session.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar() > 0
    wait_until(waiting_for_the_batch, 10, 0.05, "the admission to wait for the batch in flight")
    assert not done.is_set()
    batch.commit()
    connection.close()
    runner.join(30)
    assert admitted == [2]
    rows = entries_in_queue_order(app, show["id"])
    assert [row.id for row in rows] == [f_id, e_entry["id"]]
    assert [row.admission_seq for row in rows] == [1, 2]


def entries_in_queue_order(app, show_id):
    from models import db
    with app.app_context():
        rows = db.session.execute(text("SELECT id, admission_seq FROM queue_entries WHERE show_id = :s "
                                       "ORDER BY draw_rank NULLS LAST, arrival_seq"), {"s": show_id}).all()
        db.session.rollback()
        return rows
