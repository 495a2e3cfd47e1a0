"""The waiting room under faults, created for real (SPEC §9, issue items 3 and 5): a private Redis
server (stopped, restarted empty), gunicorn as the stack runs it (SIGKILLed), beat and the
admission worker (SIGKILLed). PostgreSQL is the suite's.

What must hold: a customer whose join was answered keeps their entry and their place; no one is
admitted twice or out of queue order; admission goes on when a worker dies; and no admission
comes before its slot in the room's schedule (no bursts).
"""
import os
import secrets
import signal
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
from sqlalchemy import text

from tests.integration.observed_stack import PrivateStack
from tests.processes import wait_until


class Room(PrivateStack):
    """A Redis server, an API, beat and admission workers of their own."""

    def __init__(self, folder, gateway):
        super().__init__(folder, {"GATEWAY_URL": gateway.base_url, "ADMISSION_TICK_S": "0.2"}, api_name="queue-api")

    def admission_worker(self):
        return self.worker(concurrency=1, queues="waiting_room")

    def join(self, customer, show_id, timeout=10):
        return requests.post(f"{self.api_url}/shows/{show_id}/queue", headers=customer["headers"], timeout=timeout)

    def poll(self, customer, entry_id):
        response = requests.get(f"{self.api_url}/queue/{entry_id}", headers=customer["headers"], timeout=10)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def room(workdir, gateway):
    stack = Room(workdir / "queue-faults", gateway)
    yield stack
    stack.close()


@pytest.fixture
def clean_room(room):
    yield room
    room.stop_processes()


def queued_show(client, admin_headers, admit_per_minute, capacity=1000, on_sale_in=timedelta(seconds=-1)):
    now = datetime.now(timezone.utc)
    response = client.post("/shows", headers=admin_headers, json={
        "title": f"Queued {secrets.token_hex(3)}", "venue": "Arena", "price": 1000, "capacity": capacity,
        "starts_at": (now + timedelta(days=10)).isoformat(), "on_sale_at": (now + on_sale_in).isoformat(),
        "waiting_room": {"admit_per_minute": admit_per_minute, "session_minutes": 10}})
    assert response.status_code == 201, response.json
    return response.json


def entries(app, show_id) -> list:
    from models import db
    with app.app_context():
        rows = db.session.execute(text("""
            SELECT id, customer_id, state, draw_rank, arrival_seq, admission_seq, admitted_at
            FROM queue_entries WHERE show_id = :s ORDER BY draw_rank NULLS LAST, arrival_seq"""), {"s": show_id}).all()
        db.session.rollback()
        return rows


def room_row(app, show_id):
    from models import db
    with app.app_context():
        row = db.session.execute(text("SELECT * FROM waiting_rooms WHERE show_id = :s"), {"s": show_id}).one()
        db.session.rollback()
        return row


def assert_admitted_once_in_order(app, show_id):
    """Each admission has its own number, their order is the queue order, nobody still waiting
    was skipped, and the room counts exactly the admissions made."""
    rows = entries(app, show_id)
    admitted = [row for row in rows if row.admission_seq is not None]
    seqs = [row.admission_seq for row in admitted]
    assert len(seqs) == len(set(seqs)) and sorted(seqs) == list(range(1, len(seqs) + 1))
    assert seqs == sorted(seqs), "admitted out of queue order"
    last_admitted = max((index for index, row in enumerate(rows) if row.admission_seq is not None), default=-1)
    skipped = [row.id for row in rows[:last_admitted] if row.state == "WAITING"]
    assert skipped == [], "waiting entries were passed over"
    assert room_row(app, show_id).admitted == len(admitted)
    return admitted


def assert_never_ahead_of_schedule(app, show_id, admitted):
    """The k-th admission comes no earlier than the k-th slot of the room's rate (no bursts)."""
    room = room_row(app, show_id)
    interval = 60 / room.admit_per_minute
    for row in admitted:
        slot = room.schedule_from + timedelta(seconds=interval * row.admission_seq)
        assert row.admitted_at >= slot - timedelta(milliseconds=5), (row.admission_seq, row.admitted_at, slot)


def join_all(room, customers, show_id):
    answers = {}
    for customer in customers:
        response = room.join(customer, show_id)
        assert response.status_code == 201, response.text
        answers[customer["id"]] = response.json()
    return answers


def test_a_redis_that_comes_back_empty_loses_no_place(app, client, admin_headers, new_customer, clean_room):
    show = queued_show(client, admin_headers, admit_per_minute=120)
    customers = [new_customer() for _ in range(30)]
    before = join_all(clean_room, customers, show["id"])
    assert [before[c["id"]]["position"] for c in customers] == sorted(before[c["id"]]["position"] for c in customers)

    clean_room.redis_server.restart(empty=True)
    assert clean_room.redis_server.running
    assert clean_room.redis().dbsize() == 0

    # Before any rebuild, a poll is answered from PostgreSQL; joining again finds the same entry.
    for customer in customers[:5]:
        polled = clean_room.poll(customer, before[customer["id"]]["id"])
        assert (polled["state"], polled["position"]) == ("WAITING", before[customer["id"]]["position"])
        again = clean_room.join(customer, show["id"])
        assert again.status_code == 200 and again.json()["id"] == before[customer["id"]]["id"]

    # The admission job rebuilds the index from PostgreSQL and admits in the same order.
    clean_room.admission_worker()
    clean_room.beat()
    wait_until(lambda: clean_room.redis().exists(f"wq:{show['id']}:built"), 30, 0.1, "the rebuild")
    wait_until(lambda: room_row(app, show["id"]).admitted >= 6, 60, 0.2, "admissions after the restart")
    clean_room.stop_processes()
    admitted = assert_admitted_once_in_order(app, show["id"])
    first = {row.id for row in admitted}
    for customer in customers:
        entry = before[customer["id"]]
        polled = clean_room.poll(customer, entry["id"])
        assert polled["state"] == ("ADMITTED" if entry["id"] in first else "WAITING")
        if polled["state"] == "WAITING":
            assert polled["position"] == entry["position"]
            assert polled["ahead"] == entry["position"] - 1 - len(first)
    assert_never_ahead_of_schedule(app, show["id"], admitted)


def test_a_sigkilled_api_loses_no_answered_join(app, client, admin_headers, new_customer, clean_room):
    show = queued_show(client, admin_headers, admit_per_minute=60, on_sale_in=timedelta(hours=1))
    customers = [new_customer() for _ in range(160)]
    answered, lock = {}, threading.Lock()
    api_url = clean_room.api_url

    def joiner(batch):
        for customer in batch:
            try:
                response = requests.post(f"{api_url}/shows/{show['id']}/queue", headers=customer["headers"], timeout=5)
            except requests.RequestException:
                continue  # the API died under this request: it was never answered
            if response.status_code == 201:
                with lock:
                    answered[customer["id"]] = response.json()["id"]

    threads = [threading.Thread(target=joiner, args=(customers[n::8],)) for n in range(8)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(answered) >= 40, 60, 0.01, "some joins answered")
    for pid in [clean_room.api.pid, *clean_room.api.children()]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for thread in threads:
        thread.join(60)
    assert 40 <= len(answered) < len(customers), len(answered)

    recorded = {row.customer_id: row.id for row in entries(app, show["id"])}
    assert {customer: recorded.get(customer) for customer in answered} == answered

    clean_room.restart_api()
    for customer in customers:
        if customer["id"] in answered:
            polled = clean_room.poll(customer, answered[customer["id"]])
            assert polled["state"] == "WAITING"
            again = clean_room.join(customer, show["id"])
            assert again.status_code == 200 and again.json()["id"] == answered[customer["id"]]


def test_admission_goes_on_through_killed_workers_and_admits_no_one_twice(app, client, admin_headers, new_customer,
                                                                         clean_room):
    show = queued_show(client, admin_headers, admit_per_minute=300)  # five a second
    customers = [new_customer() for _ in range(90)]
    join_all(clean_room, customers, show["id"])
    workers = [clean_room.admission_worker(), clean_room.admission_worker()]
    clean_room.beat()
    wait_until(lambda: room_row(app, show["id"]).admitted >= 10, 60, 0.1, "admissions to start")

    # SIGKILL the pool processes running the ticks, again and again, then a whole worker.
    for _ in range(6):
        for worker in workers:
            for pid in worker.children():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(0.7)
    os.kill(workers[0].pid, signal.SIGKILL)
    after_kills = room_row(app, show["id"]).admitted
    wait_until(lambda: room_row(app, show["id"]).admitted >= min(after_kills + 15, 90), 60, 0.1,
               "admissions to go on after the kills")
    wait_until(lambda: room_row(app, show["id"]).admitted == 90, 120, 0.2, "everyone admitted")
    clean_room.stop_processes()

    admitted = assert_admitted_once_in_order(app, show["id"])
    assert len(admitted) == 90
    assert_never_ahead_of_schedule(app, show["id"], admitted)
