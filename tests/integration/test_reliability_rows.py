"""RELIABILITY.md: each row's fault, created for real against real workers, Redis, PostgreSQL
and the gateway sandbox. Rows 1 and 2 are in tests/unit/test_celery_config.py; the chaos run
(test_chaos_small.py) repeats 4, 5 and 6 under load."""
import threading
import time
from datetime import timedelta

import pybreaker
import pytest
import redis
from sqlalchemy import func, select, update

from tests.processes import ROOT, free_port, start_worker, wait_until


_next_db = iter(range(5, 15))


@pytest.fixture
def private_broker(app, workdir):
    """A worker with its own settings on its own Redis database, and an app that publishes there,
    so the package's shared worker never takes these steps."""
    from web import create_app
    started = []

    def start(name, env, **worker_options):
        url = app.config["REDIS_URL"].rsplit("/", 1)[0] + f"/{next(_next_db)}"
        redis.Redis.from_url(url).flushdb()
        private = create_app({"SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
                              "GATEWAY_URL": app.config["GATEWAY_URL"], "REDIS_URL": url,
                              "JWT_SECRET_KEY": app.config["JWT_SECRET_KEY"]})
        private.extensions["celery"].conf.broker_url = url
        app.extensions["celery"].set_default()
        proc = start_worker(workdir, name, {**env, "REDIS_URL": url}, **worker_options)
        started.append(proc)
        return private, proc

    yield start
    for proc in started:
        proc.stop()


def _failures(app, task, booking_id=None):
    from models import db
    from models.task_failures import TaskFailure
    with app.app_context():
        query = select(TaskFailure).where(TaskFailure.task == task)
        if booking_id:
            query = query.where(TaskFailure.booking_id == booking_id)
        rows = db.session.scalars(query).all()
        db.session.remove()
        return rows


# -- row 3: a worker SIGKILLed by its own task ------------------------------------------------

def test_row3_task_that_kills_its_worker_once_runs_again_and_completes(app, workdir, worker_env):
    # A queue of its own: the package's shared worker (all context queues, without this test-only
    # step) must not take the message and drop it as unknown.
    proc = start_worker(workdir, "row3-once", worker_env, queues="reliability-row3", concurrency=1,
                        extra=["--include", "tests.integration.reliability_tasks"])
    try:
        marker = str(workdir / "row3-once")
        with app.app_context():
            app.extensions["celery"].send_task("payments.reliability_dies_once", args=[marker],
                                               queue="reliability-row3")
        wait_until(lambda: (workdir / "row3-once.done").exists(), 120, 0.2, "the step to run again and complete")
    finally:
        proc.stop()


def test_row3_a_step_that_kills_its_worker_on_every_delivery_is_stopped_by_the_database(
        app, private_broker, gateway, customer, make_show, wait_for, admin_headers, workdir):
    """The real charge step SIGKILLs its pool process each time it starts (tests/integration/
    killer_tasks.py). The start counter in the database stops it after 1 + TASK_MAX_REDELIVERIES
    starts; an admin retries it once the fault is gone and the booking is paid, once."""
    import json
    from tasks.failures import MAX_REDELIVERIES
    doomed = workdir / "row3-doomed"
    doomed.write_text("")
    deaths = workdir / "row3-doomed.deaths"
    env = {"GATEWAY_URL": gateway.base_url, "GATEWAY_TIMEOUT_S": "2", "KILLER_BOOKINGS_FILE": str(doomed)}
    private, proc = private_broker("row3-always", env, concurrency=1,
                                   extra=["--include", "tests.integration.killer_tasks"])
    client = private.test_client()
    show = make_show(capacity=5, price=900)
    proc.stop()  # accept the booking first, so its id is doomed before any worker sees it
    booking_id = client.post("/bookings", headers=customer["headers"], json={
        "show_id": show["id"], "qty": 1, "payment_method": "tok_ok"}).json["id"]
    doomed.write_text(booking_id + "\n")
    proc.start().wait_for_log("ready.", timeout=90)

    failure = wait_until(lambda: [f for f in _failures(app, "payments.charge", booking_id) if "worker lost" in f.error],
                         180, 0.3, "the charge to be given up")[0]
    # The batch charge died on every start, then went on as the single step, which died the same.
    starts = [json.loads(line) for line in deaths.read_text().splitlines()]
    by_step = {step: [s for s in starts if s["task"] == step] for step in ("payments.charge_many", "payments.charge")}
    assert len(starts) == 2 * (1 + MAX_REDELIVERIES), starts  # each start killed its worker; the next was refused
    for step, its_starts in by_step.items():
        assert len(its_starts) == 1 + MAX_REDELIVERIES, (step, starts)
        assert len({s["task_id"] for s in its_starts}) == 1 and {s["retries"] for s in its_starts} == {0}
    assert wait_for(booking_id, status="CONFIRMED")["payment_status"] == "NONE"  # no money moved

    # The worker lives on: a later booking is paid, and the doomed step did not come back.
    other = client.post("/bookings", headers=customer["headers"], json={
        "show_id": show["id"], "qty": 1, "payment_method": "tok_ok"}).json["id"]
    wait_for(other, status="PAID", timeout=120)
    assert len(deaths.read_text().splitlines()) == 2 * (1 + MAX_REDELIVERIES)
    assert len(_failures(app, "payments.charge", booking_id)) == 1

    doomed.write_text("")  # the fault is fixed; an admin sends the step again
    retried = client.post(f"/admin/task-failures/{failure.id}/retry", headers=admin_headers)
    assert retried.status_code == 202
    wait_for(booking_id, status="PAID", payment_status="PAID", timeout=120)
    assert gateway.ledger(booking_id)["captured"] == failure_amount(app, booking_id) == 900


# -- row 8: a payment step delivered twice ---------------------------------------------------

def test_row8_charge_and_refund_delivered_twice_move_money_once(app, worker, gateway, customer, make_show,
                                                                book, wait_for, admin_headers):
    show = make_show(capacity=5, price=700)
    booking_id = book(customer, show["id"], qty=2).json["id"]
    wait_for(booking_id, status="PAID", ticket_status="ISSUABLE")
    celery = app.extensions["celery"]
    with app.app_context():
        for _ in range(2):
            celery.send_task("payments.charge", args=[booking_id])
    client = app.test_client()
    assert client.post(f"/bookings/{booking_id}/cancel", headers=customer["headers"]).status_code == 202
    with app.app_context():
        for _ in range(3):
            celery.send_task("payments.refund", args=[booking_id])
    wait_for(booking_id, status="CANCELLED", payment_status="REFUNDED")
    with app.app_context():
        for _ in range(2):
            celery.send_task("payments.charge", args=[booking_id])
            celery.send_task("payments.refund", args=[booking_id])
    # Quiet: the duplicates have run when a later step for the same queue has.
    other = book(customer, show["id"], qty=1).json["id"]
    wait_for(other, status="PAID")
    ledger = gateway.ledger(booking_id)
    assert (ledger["captured"], ledger["refunded"], ledger["charges"], ledger["refunds"]) == (1400, 1400, 1, 1)


# -- row 10: retries exhausted ---------------------------------------------------------------

def test_row10_exhausted_charge_is_recorded_and_retryable_by_an_admin(app, private_broker, gateway, customer,
                                                                      make_show, wait_for, admin_headers):
    env = {"GATEWAY_URL": gateway.base_url, "GATEWAY_TIMEOUT_S": "2", "TASK_MAX_RETRIES__PAYMENTS_CHARGE": "2",
           "RETRY_BACKOFF_MAX_S": "1", "BREAKER_FAIL_MAX": "1000"}
    private, proc = private_broker("row10", env)
    gateway.set_faults(outage=True)
    try:
        booking_id = private.test_client().post("/bookings", headers=customer["headers"], json={
            "show_id": make_show(capacity=3)["id"], "qty": 1, "payment_method": "tok_ok"}).json["id"]
        failure = wait_until(lambda: _failures(app, "payments.charge", booking_id), 120, 0.3,
                             "the charge to give up")[0]
        assert failure.attempts == 3  # max_retries + 1
        assert "GatewayUnavailable" in failure.error or "outage" in failure.error
        assert wait_for(booking_id, status="CONFIRMED")["payment_status"] == "PENDING"
        gateway.clear_faults()
        client = private.test_client()
        listed = client.get("/admin/task-failures?open=true&page_size=100", headers=admin_headers)
        assert listed.status_code == 200
        assert failure.id in [row["id"] for row in listed.json]
        retried = client.post(f"/admin/task-failures/{failure.id}/retry", headers=admin_headers)
        assert retried.status_code == 202 and retried.json["retried_at"]
        wait_for(booking_id, status="PAID", payment_status="PAID")
        assert gateway.ledger(booking_id)["captured"] == failure_amount(app, booking_id)
    finally:
        gateway.clear_faults()


def failure_amount(app, booking_id):
    from models import db
    from models.bookings import Booking
    with app.app_context():
        amount = db.session.get(Booking, booking_id).amount
        db.session.remove()
        return amount


def test_row10_a_booking_whose_charge_gave_up_still_reaches_a_final_state(app, gateway, customer, make_show,
                                                                          book, wait_for, worker):
    """The hold deadline passes: cleanup expires it, releases the seats and reconciles the money."""
    from models import db
    from models.bookings import Booking
    from tasks.maintenance import expire_holds
    gateway.set_faults(outage=True)
    try:
        show = make_show(capacity=2)
        booking_id = book(customer, show["id"], qty=2).json["id"]
        wait_for(booking_id, status="CONFIRMED", payment_status="PENDING")
        with app.app_context():
            db.session.execute(update(Booking).where(Booking.id == booking_id)
                               .values(hold_deadline=func.now() - timedelta(seconds=1)))
            db.session.commit()
            assert expire_holds.run() >= 1
            db.session.remove()
    finally:
        gateway.clear_faults()
    state = wait_for(booking_id, status="EXPIRED", payment_status="NONE", timeout=120)
    assert state["remaining"] == 2 and not state["seats_held"]
    assert gateway.ledger(booking_id)["captured"] - gateway.ledger(booking_id)["refunded"] == 0


# -- row 11: two beats at once ---------------------------------------------------------------

def test_row11_two_expiry_sweeps_at_once_release_seats_once(app, customer, make_show, book, wait_for, worker):
    from models import db
    from models.bookings import Booking
    from tasks.maintenance import expire_holds
    show = make_show(capacity=6)
    ids = [book(customer, show["id"], qty=2, payment_method="tok_ok").json["id"] for _ in range(3)]
    for booking_id in ids:
        wait_for(booking_id, status="PAID")
    # Make them look unpaid and overdue, as if their charges never completed.
    with app.app_context():
        db.session.execute(update(Booking).where(Booking.id.in_(ids))
                           .values(status="CONFIRMED", hold_deadline=func.now() - timedelta(seconds=1)))
        db.session.commit()
        db.session.remove()
    results = []

    def sweep():
        with app.app_context():
            results.append(expire_holds.run())
            db.session.remove()
    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [0, 3] or sum(results) == 3
    with app.app_context():
        from models.shows import Show
        assert db.session.get(Show, show["id"]).remaining == 6  # released exactly once
        db.session.remove()


# -- row 13: the breaker is shared, and deliberate when Redis is down ------------------------

def test_row13_breaker_opened_in_one_process_is_open_in_another(app, workdir):
    import subprocess
    import sys
    from tasks.breaker import make_breaker
    url = app.config["REDIS_URL"]
    namespace = f"test-breaker-{free_port()}"
    script = (
        "import sys, pybreaker\n"
        "from tasks.breaker import make_breaker\n"
        f"b = make_breaker({url!r}, fail_max=2, reset_timeout=600, namespace={namespace!r})\n"
        "def boom():\n    raise ConnectionError('gateway down')\n"
        "for _ in range(2):\n"
        "    try:\n        b.call(boom)\n    except (ConnectionError, pybreaker.CircuitBreakerError):\n        pass\n"
        "print(b.current_state)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         cwd=str(ROOT))
    assert out.stdout.strip().endswith("open"), out.stderr
    here = make_breaker(url, fail_max=2, reset_timeout=600, namespace=namespace)
    assert here.current_state == "open"
    with pytest.raises(pybreaker.CircuitBreakerError):
        here.call(lambda: "never called")
    redis.Redis.from_url(url).delete(*[f"pybreaker:{namespace}:{k}" for k in ("state", "fail_counter",
                                                                                "success_counter", "opened_at")])


def test_row13_with_redis_down_the_breaker_fails_open_and_calls_go_through():
    from tasks.breaker import make_breaker
    dead = f"redis://127.0.0.1:{free_port()}/0"
    breaker = make_breaker(dead, fail_max=1, reset_timeout=600, namespace="test-dead")
    assert breaker.current_state == "closed"
    assert breaker.call(lambda: "charged") == "charged"
    with pytest.raises(ConnectionError):
        breaker.call(lambda: (_ for _ in ()).throw(ConnectionError("x")))
    # It cannot record the failure anywhere shared: still closed, the next call still goes through.
    assert breaker.call(lambda: "charged again") == "charged again"


def test_row13_open_breaker_makes_charges_wait_not_fail(app, private_broker, gateway, customer, make_show, wait_for):
    env = {"GATEWAY_URL": gateway.base_url, "GATEWAY_TIMEOUT_S": "2", "BREAKER_FAIL_MAX": "2",
           "BREAKER_RESET_S": "3", "RETRY_BACKOFF_MAX_S": "2"}
    private, proc = private_broker("row13", env)
    gateway.set_faults(outage=True)
    try:
        booking_id = private.test_client().post("/bookings", headers=customer["headers"], json={
            "show_id": make_show(capacity=3)["id"], "qty": 1, "payment_method": "tok_ok"}).json["id"]
        wait_until(lambda: "payment gateway breaker: closed -> open" in proc.log()
                   or "-> open" in proc.log(), 120, 0.3, "the breaker to open")
        assert wait_for(booking_id, status="CONFIRMED")["payment_status"] in ("PENDING", "NONE")
        assert not _failures(app, "payments.charge", booking_id)
        gateway.clear_faults()
        wait_for(booking_id, status="PAID", timeout=120)
    finally:
        gateway.clear_faults()
        redis.Redis.from_url(app.config["REDIS_URL"]).delete(
            *[f"pybreaker:boxoffice:gateway:{k}" for k in ("state", "fail_counter", "success_counter", "opened_at")])


# -- row 14: real worker processes, not eager mode ---------------------------------------------

def test_row14_integration_tests_run_real_worker_processes_that_can_be_killed(app, worker, customer, make_show,
                                                                              book, wait_for):
    import os
    import signal
    assert app.extensions["celery"].conf.task_always_eager is False
    assert worker.pid != os.getpid() and worker.popen.poll() is None
    children = worker.children()
    assert children and os.getpid() not in children  # a prefork pool of separate processes
    os.kill(children[0], signal.SIGKILL)
    wait_until(lambda: children[0] not in worker.children() and len(worker.children()) == len(children), 60, 0.1,
               "the worker to replace its killed pool process")
    booking_id = book(customer, make_show(capacity=2)["id"]).json["id"]
    wait_for(booking_id, status="PAID", timeout=90)  # steps run in that other process, after the kill
