"""RELIABILITY.md rows 4, 5, 6 and 7: the fault created for real, against a private slice of the
stack: a broker of its own (so it can be stopped, restarted, emptied: a Redis server, or with
BROKER_URL a RabbitMQ vhost beside it), gunicorn, workers and beat all pointed at it. PostgreSQL
and the gateway sandbox are the suite's. Every row runs on both brokers but row 1, which is about
Redis's visibility timeout.

Row 9 is here too: two workers given the same step at once, row locks the only coordination.
"""
import os
import signal
import uuid
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

import celeryconfig
from tests.integration.observed_stack import PrivateStack, outbox_rows, step_runs
from tests.processes import wait_until


class Private(PrivateStack):
    """One Redis server, one API; workers and beat started per test (and stopped by `close`)."""

    def __init__(self, folder, gateway):
        super().__init__(folder, {"GATEWAY_URL": gateway.base_url, "GATEWAY_TIMEOUT_S": "3", "RETRY_BACKOFF_MAX_S": "2",
                                  "REDRIVE_STUCK_AFTER_S": "5", "BREAKER_FAIL_MAX": "1000"}, api_name="faults-api")

    def book(self, customer, show_id, qty=1, timeout=10):
        response = requests.post(self.api_url + "/bookings", headers=customer["headers"], timeout=timeout,
                                 json={"show_id": show_id, "qty": qty, "payment_method": "tok_ok"})
        assert response.status_code == 202, response.text
        return response.json()["id"]


@pytest.fixture(scope="module")
def private(workdir, gateway):
    stack = Private(workdir / "faults", gateway)
    yield stack
    stack.close()


@pytest.fixture
def clean(private, gateway):
    """Each test starts its own workers and beat, and leaves none (nor gateway faults) behind."""
    yield private
    gateway.clear_faults()
    private.stop_processes()


def amounts(app, ids):
    from models import db
    from models.bookings import Booking
    with app.app_context():
        rows = dict(db.session.execute(select(Booking.id, Booking.amount).where(Booking.id.in_(ids))).all())
        db.session.remove()
        return rows


def assert_paid_exactly_once(app, gateway, wait_for, ids, timeout=180, private=None):
    for booking_id in ids:
        try:
            wait_for(booking_id, timeout=timeout, status="PAID", payment_status="PAID", ticket_status="ISSUABLE")
        except AssertionError as error:
            logs = "\n".join(f"--- {p.name}\n{p.log()[-4000:]}" for p in (private.processes if private else []))
            raise AssertionError(f"{error}\n{logs}") from None
    for booking_id, amount in amounts(app, ids).items():
        ledger = gateway.ledger(booking_id)
        assert (ledger["captured"], ledger["refunded"], ledger["charges"]) == (amount, 0, 1), (booking_id, ledger)


def any_charge_in_flight(booking_state, ids):
    return any(booking_state(i)["payment_status"] == "PENDING" for i in ids)


# -- row 1: a step still running when the visibility timeout passes is delivered again ----------

@pytest.mark.skipif(celeryconfig.BROKER_IS_RABBITMQ, reason="Redis's visibility timeout: RabbitMQ has none, it "
                    "redelivers only a dead consumer's messages (test_rabbitmq.py)")
def test_row1_steps_redelivered_past_the_visibility_timeout_still_take_effect_once(
        app, clean, gateway, customer, make_show, wait_for):
    """Two workers on a broker whose visibility timeout (2 s) is far shorter than a charge (the
    gateway answers after 6 s; the workers look for overdue messages every second): Redis hands
    running charges out again, and two workers run the same charge at once. The gateway's
    idempotency key and the row locks keep it to one charge."""
    from models import db
    from models.task_failures import TaskStart
    short = {"UNSAFE_TEST_VISIBILITY_TIMEOUT_S": "2", "CELERY_PREFETCH": "1", "GATEWAY_TIMEOUT_S": "30"}
    clean.worker(concurrency=2, extra_env=short)
    clean.worker(concurrency=2, extra_env=short)
    show = make_show(capacity=10, price=400)
    gateway.set_faults(latency_ms=6000)
    ids = [clean.book(customer, show["id"]) for _ in range(3)]
    assert_paid_exactly_once(app, gateway, wait_for, ids, private=clean)

    with app.app_context():
        # A batch step's starts are counted under its first booking.
        starts = db.session.scalars(select(TaskStart.starts).where(
            TaskStart.task.in_(("payments.charge",)), TaskStart.booking_id.in_(ids))).all()
        db.session.remove()
    assert max(starts) >= 2, f"no charge was delivered twice (starts per charge: {starts})"


# -- row 4: a worker SIGKILLed mid-run ---------------------------------------------------------

def test_row4_sigkilled_pool_children_and_main_process_lose_no_booking(app, clean, gateway, customer, make_show,
                                                                       booking_state, wait_for):
    show = make_show(capacity=10, price=800)
    first = clean.worker(concurrency=2)
    clean.beat()  # the re-drive job finds steps a killed worker took with it
    gateway.set_faults(latency_ms=1500)  # every charge is slow: the worker is mid-step when killed
    ids = [clean.book(customer, show["id"]) for _ in range(6)]

    wait_until(lambda: any_charge_in_flight(booking_state, ids), 90, 0.05, "a charge to be under way")
    children = first.children()
    assert children
    for pid in children:  # the pool children (a child killed mid-step: the OOM killer)
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: first.children() and not set(children) & set(first.children()), 60, 0.1,
               "the worker to replace its pool")

    wait_until(lambda: any_charge_in_flight(booking_state, ids), 90, 0.05, "a charge to be under way again")
    first.kill()  # the whole worker, main process included, SIGKILLed: nothing is handed back
    gateway.clear_faults()
    clean.worker(concurrency=2)

    assert_paid_exactly_once(app, gateway, wait_for, ids)
    assert booking_state(ids[0])["remaining"] == 4


# -- row 4, batches: a slow charge batch sends every charge; a cancel meanwhile voids its key ------

def test_a_slow_charge_batch_sends_every_charge_and_a_booking_cancelled_meanwhile_keeps_no_money(
        app, clean, gateway, customer, make_show, booking_state, wait_for):
    """Nothing rests on when a charge request leaves: a batch whose gateway answers slowly (a
    second a charge, within the client timeout) sends every charge itself, however long after its
    claim. A booking of the batch cancelled meanwhile has its charge key voided by the refund
    step, so the batch's later request for it can move no money."""
    show = make_show(capacity=10, price=300)
    ids = [clean.book(customer, show["id"]) for _ in range(6)]  # no worker yet: one reservation, one batch
    gateway.set_faults(latency_ms=1000)
    worker = clean.worker(concurrency=2)
    wait_until(lambda: all(booking_state(i)["payment_status"] == "PENDING" for i in ids), 90, 0.05,
               "the batch to claim its bookings")
    cancelled, kept = ids[-1], ids[:-1]
    response = requests.post(f"{clean.api_url}/bookings/{cancelled}/cancel", headers=customer["headers"], timeout=10)
    assert response.status_code == 202, response.text

    assert_paid_exactly_once(app, gateway, wait_for, kept, private=clean)
    wait_for(cancelled, status="CANCELLED", timeout=90)
    # The batch has answered for the cancelled booking too (voided, or a late capture refunded).
    wait_until(lambda: step_runs(worker.log(), cancelled, ("payments.charge",)), 90, 0.2,
               "the batch to reach the cancelled booking")
    wait_until(lambda: booking_state(cancelled)["payment_status"] in ("NONE", "REFUNDED"), 90, 0.2,
               "the cancelled booking's money to settle")
    ledger = gateway.ledger(cancelled)
    assert ledger["captured"] == ledger["refunded"], ledger
    assert "handed over" not in worker.log()  # slowness alone never splits a batch


# -- row 5: the broker restarted mid-run -------------------------------------------------------

def test_row5_after_a_broker_restart_bookings_are_processed_and_none_charged_twice(app, clean, gateway, customer,
                                                                                   make_show, booking_state,
                                                                                   wait_for):
    """With this kombu, a worker that loses Redis while it holds unacked messages may exit with
    "Unrecoverable error" (restoring them on a dead connection) instead of reconnecting. Exiting
    is safe: its supervisor (stack/supervisor.py, the container runtime) starts it again, as
    this test does; what it held is in Redis's unacked set or re-driven from the database. On
    RabbitMQ what it held goes back to its quorum queue, which the restart keeps on disk."""
    show = make_show(capacity=10, price=650)
    worker = clean.worker(concurrency=2)
    clean.beat()
    gateway.set_faults(latency_ms=1000)
    before = [clean.book(customer, show["id"]) for _ in range(4)]
    wait_until(lambda: any_charge_in_flight(booking_state, before), 90, 0.05, "a charge to be under way")
    clean.broker.restart()  # not emptied: what was queued is still there
    gateway.clear_faults()
    wait_until(lambda: worker.popen.poll() is not None or worker.log().count('"Connected to ') >= 2,
               90, 0.2, "the worker to reconnect or exit")
    if worker.popen.poll() is not None:  # what the supervisor does
        clean.worker(concurrency=2)

    after = [clean.book(customer, show["id"]) for _ in range(3)]
    assert_paid_exactly_once(app, gateway, wait_for, before + after, timeout=120, private=clean)
    assert booking_state(before[0])["remaining"] == 3


# -- row 6: the broker restarted empty while no worker runs -------------------------------------

def test_row6_bookings_queued_in_a_broker_that_comes_back_empty_still_complete(app, clean, gateway, customer,
                                                                              make_show, wait_for):
    show = make_show(capacity=8, price=500)
    ids = [clean.book(customer, show["id"], qty=2) for _ in range(3)]  # no worker: they wait in the broker
    # The API kicks the reservation from a background thread just after the commit.
    wait_until(lambda: clean.broker.queue_length("seats") >= 1, 30, 0.02, "the reservation kick to be queued")
    clean.broker.restart(empty=True)
    assert clean.broker.queue_length("seats") == 0  # the broker lost them; the database did not

    clean.worker(concurrency=2)
    clean.beat()  # the re-drive job (REDRIVE_STUCK_AFTER_S) sends the next step again
    assert_paid_exactly_once(app, gateway, wait_for, ids)


# -- row 7: the outbox ---------------------------------------------------------------------------

def private_app(app, private):
    from web import create_app
    other = create_app({"SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"], "REDIS_URL": private.url,
                        "GATEWAY_URL": app.config["GATEWAY_URL"], "JWT_SECRET_KEY": app.config["JWT_SECRET_KEY"]})
    other.extensions["celery"].conf.broker_url = private.broker.url
    app.extensions["celery"].set_default()
    return other


def test_row7a_a_rolled_back_transaction_publishes_nothing(app, clean):
    from models import db
    from models.outbox import OutboxMessage
    from services.unit_of_work import UnitOfWork
    other, broker = private_app(app, clean), clean.broker
    broker.purge("tickets")
    with other.app_context():
        with UnitOfWork() as uow:  # left without commit: rolled back
            uow.then("tickets.make_issuable", [str(uuid.uuid4())])
        assert broker.queue_length("tickets") == 0
        # The same, committed, is published at once (so the check above can fail).
        booking_id = str(uuid.uuid4())
        with UnitOfWork() as uow:
            uow.then("tickets.make_issuable", [booking_id])
            uow.commit()
        assert broker.queue_length("tickets") == 1
        db.session.execute(OutboxMessage.__table__.delete().where(OutboxMessage.booking_id == booking_id))
        db.session.commit()
        db.session.remove()
    broker.purge("tickets")  # no worker ever sees the made-up booking


def test_row7b_with_the_broker_down_a_booking_is_accepted_and_processed_after_recovery(
        app, clean, gateway, customer, make_show, wait_for, booking_state):
    show = make_show(capacity=4, price=450)
    clean.broker.stop()
    try:
        booking_id = clean.book(customer, show["id"], timeout=20)  # 202, not a hang or a 5xx
        assert booking_state(booking_id)["status"] == "PENDING"  # the booking itself waits in the database
    finally:
        clean.broker.start()
    clean.worker(concurrency=2)
    clean.beat()  # the relay asks for the reservation the API could not
    assert_paid_exactly_once(app, gateway, wait_for, [booking_id], timeout=120)
    wait_until(lambda: outbox_rows(app, booking_id) == 0, 60, 0.2, "every outbox row to be published and cleared")


# -- row 9: no correctness rests on a lock with a timeout ------------------------------------------

def test_row9_the_same_steps_in_two_worker_processes_at_once_take_effect_once(app, clean, gateway, customer,
                                                                              make_show, booking_state, wait_for):
    """No celery-once / singleton lock: the duplicate deliveries run, concurrently, in two worker
    processes, and the row locks and the gateway idempotency key alone make them one effect."""
    requirements = (Path(__file__).resolve().parents[2] / "requirements.txt").read_text().lower()
    assert "celery-once" not in requirements and "celery_once" not in requirements
    assert "celery-singleton" not in requirements
    other = private_app(app, clean)
    celery = other.extensions["celery"]
    one_each = {"CELERY_PREFETCH": "1"}  # concurrency 1, prefetch 1: a busy worker takes nothing more
    first = clean.worker(concurrency=1, extra_env=one_each)
    second = clean.worker(concurrency=1, extra_env=one_each)
    gateway.set_faults(latency_ms=2000)  # the charge is slow: its duplicate runs while it waits
    show = make_show(capacity=6, price=990)
    booking_id = clean.book(customer, show["id"], qty=3)
    with other.app_context():
        celery.send_task("seats.reserve", args=[show["id"]])  # two reserves at once
    wait_until(lambda: booking_state(booking_id)["payment_status"] == "PENDING", 90, 0.05, "the charge to start")
    with other.app_context():
        celery.send_task("payments.charge", args=[booking_id])  # the other worker takes it
    wait_for(booking_id, status="PAID", payment_status="PAID", ticket_status="ISSUABLE", timeout=90)

    def charged_by(worker):
        return step_runs(worker.log(), booking_id, ("payments.charge",))
    wait_until(lambda: charged_by(first) and charged_by(second), 90, 0.2, "both workers to run the charge")
    gateway.clear_faults()
    assert booking_state(booking_id)["remaining"] == 3  # seats held once
    ledger = gateway.ledger(booking_id)
    assert (ledger["captured"], ledger["charges"], ledger["refunded"]) == (2970, 1, 0)  # charged once
