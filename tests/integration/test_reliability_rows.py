"""RELIABILITY.md: each row's fault, created for real against real workers, Redis, PostgreSQL
and the gateway sandbox. Rows 1 and 2 are in tests/unit/test_celery_config.py; the chaos run
(test_chaos_small.py) repeats 4, 5 and 6 under load."""
from datetime import timedelta

import pybreaker
import pytest
import redis
from sqlalchemy import func, select, update

from tests.integration import observed_stack
from tests.integration.observed_stack import (
    assert_each_started_once, ended_deliveries, failures_of, outbox_rows, returned, step_runs,
)
from stack.rabbitmq import broker_env
from tests.processes import ALL_QUEUES, BIN, ROOT, ManagedProcess, free_port, start_worker, wait_until


@pytest.fixture
def private_broker(app, workdir):
    """A worker with its own settings on the suite's private Redis database (and private RabbitMQ
    vhost, when that is the broker), and an app that publishes there, so the package's shared
    worker never takes these steps."""
    from web import create_app
    started = []

    def start(name, env, **worker_options):
        url = observed_stack.private_broker()
        rabbitmq = observed_stack.private_rabbitmq()
        private = create_app({"SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
                              "GATEWAY_URL": app.config["GATEWAY_URL"], "REDIS_URL": url,
                              "JWT_SECRET_KEY": app.config["JWT_SECRET_KEY"]})
        private.extensions["celery"].conf.broker_url = rabbitmq or url
        app.extensions["celery"].set_default()
        procs = [ManagedProcess(each, _worker_argv(each, **worker_options), workdir / f"{each}.log",
                                {**env, "REDIS_URL": url, **broker_env(rabbitmq)}).start()
                 for each in ([name] if isinstance(name, str) else name)]
        started.extend(procs)
        for proc in procs:  # started together, waited for together
            proc.wait_for_log("ready.", timeout=90)
        return (private, *procs)

    yield start
    for proc in started:
        proc.stop()


def _worker_argv(name, queues=ALL_QUEUES, concurrency=4, extra=None):
    return [str(BIN / "celery"), "-A", "wsgi.celery", "worker", "-Q", queues, "-n", f"{name}@%h",
            "--concurrency", str(concurrency), "--loglevel", "INFO", "--without-mingle", "--without-gossip",
            *(extra or [])]


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
    proc.stop()  # accept the bookings first, so one is doomed before any worker sees it
    booking_id, spared = (client.post("/bookings", headers=customer["headers"], json={
        "show_id": show["id"], "qty": 1, "payment_method": "tok_ok"}).json["id"] for _ in range(2))
    doomed.write_text(booking_id + "\n")
    proc.start().wait_for_log("ready.", timeout=90)

    failure = wait_until(lambda: [f for f in _failures(app, "payments.charge", booking_id) if "worker lost" in f.error],
                         180, 0.3, "the charge to be given up")[0]
    # The batch of both died on every start, then each booking went on alone: the spared one was
    # paid, and the doomed one's own step died the same way and was given up.
    starts = [json.loads(line) for line in deaths.read_text().splitlines()]
    assert len(starts) == 2 * (1 + MAX_REDELIVERIES), starts  # each start killed its worker; the next was refused
    by_message = {}
    for start in starts:
        by_message.setdefault(start["task_id"], []).append(start)
    assert len(by_message) == 2 and all(s["task"] == "payments.charge" for s in starts), starts
    for its_starts in by_message.values():
        assert len(its_starts) == 1 + MAX_REDELIVERIES and {s["retries"] for s in its_starts} == {0}, starts
    assert wait_for(booking_id, status="CONFIRMED")["payment_status"] == "NONE"  # no money moved
    wait_for(spared, status="PAID", timeout=120)

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


# -- row 7c: the dispatcher killed between send and mark-sent -----------------------------------

def test_row7c_a_dispatcher_killed_between_send_and_mark_sent_is_deduplicated_by_its_consumer(
        app, private_broker, gateway, customer, make_show, wait_for, workdir):
    """The reservation step commits, publishes the booking's charge and is SIGKILLed before its
    outbox row is deleted (the test-only fault in tasks/publishing.py publish_and_forget). The charge
    runs; beat's relay finds the row left behind and publishes the charge again; the consumer sees
    the booking paid and does nothing: one charge at the gateway."""
    die = workdir / "row7c-die-after-send"
    die.write_text("payments.charge\n")
    env = {"GATEWAY_URL": gateway.base_url, "GATEWAY_TIMEOUT_S": "2", "UNSAFE_TEST_DIE_AFTER_SEND_FILE": str(die)}
    private, worker = private_broker("row7c", env, concurrency=2)
    beat = ManagedProcess("row7c-beat", [str(BIN / "celery"), "-A", "wsgi.celery", "beat", "--loglevel", "INFO",
                                         "--schedule", str(workdir / "row7c-beat-schedule")],
                          workdir / "row7c-beat.log", {"REDIS_URL": private.config["REDIS_URL"],
                                                       **broker_env(private.extensions["celery"].conf.broker_url),
                                                       "HEARTBEAT_FILE": str(workdir / "row7c-beat.heartbeat")}).start()
    try:
        show = make_show(capacity=4, price=720)
        booking_id = private.test_client().post("/bookings", headers=customer["headers"], json={
            "show_id": show["id"], "qty": 2, "payment_method": "tok_ok"}).json["id"]
        wait_until(lambda: not die.exists() and "signal 9 (SIGKILL)" in worker.log(), 90, 0.1,
                   "the dispatcher to be killed after sending the charge")
        wait_for(booking_id, status="PAID", payment_status="PAID", ticket_status="ISSUABLE", timeout=90)
        wait_until(lambda: outbox_rows(app, booking_id) == 0, 90, 0.2, "the relay to publish the row left behind")
        runs = wait_until(lambda: (found := step_runs(worker.log(), booking_id, ("payments.charge",)))
                          and len(found) >= 2 and found, 90, 0.2, "the relay's copy of the charge to run")
    finally:
        beat.stop()
    outcomes = sorted(run["outcome"] for run in runs)
    assert outcomes == ["nothing to charge (PAID)", "paid"], outcomes  # the copy saw the work done
    state = wait_for(booking_id, status="PAID", payment_status="PAID", ticket_status="ISSUABLE")
    assert state["remaining"] == 2  # seats held once
    assert failures_of(app, booking_id) == []
    ledger = gateway.ledger(booking_id)
    assert (ledger["captured"], ledger["charges"], ledger["refunded"]) == (1440, 1, 0)  # charged once


# -- row 8: a payment step delivered twice ---------------------------------------------------

def test_row8_charge_and_refund_delivered_twice_move_money_once(app, worker, gateway, customer, make_show,
                                                                book, wait_for):
    """Duplicates before, during and after the cancel, each waited for until the worker has
    finished it (its end in the worker's log, its start in the database's counter): all end
    normally, none is recorded as given up, and the gateway holds one charge and one refund.
    The gateway is slow during the cancel, so the duplicate refunds reach it with the real one."""
    show = make_show(capacity=5, price=700)
    booking_id = book(customer, show["id"], qty=2).json["id"]
    wait_for(booking_id, status="PAID", ticket_status="ISSUABLE")
    celery = app.extensions["celery"]
    with app.app_context():
        charges = [celery.send_task("payments.charge", args=[booking_id]).id for _ in range(2)]
    gateway.set_faults(latency_ms=700)
    try:
        client = app.test_client()
        assert client.post(f"/bookings/{booking_id}/cancel", headers=customer["headers"]).status_code == 202
        with app.app_context():
            refunds = [celery.send_task("payments.refund", args=[booking_id]).id for _ in range(3)]
        ended = ended_deliveries(worker, charges + refunds)
    finally:
        gateway.clear_faults()
    wait_for(booking_id, status="CANCELLED", payment_status="REFUNDED", ticket_status="VOID")
    with app.app_context():  # and once it is all over
        late_charges = [celery.send_task("payments.charge", args=[booking_id]).id for _ in range(2)]
        late_refunds = [celery.send_task("payments.refund", args=[booking_id]).id for _ in range(2)]
    ended.update(ended_deliveries(worker, late_charges + late_refunds))

    assert all(returned(ended[t]).startswith("nothing to charge") for t in charges + late_charges), ended
    assert all(ended[t]["state"] == "SUCCESS" for t in refunds), ended
    assert {returned(ended[t]) for t in late_refunds} == {"already settled"}  # it asked nobody
    assert_each_started_once(app, ended)  # each delivery ran once, no retry
    assert failures_of(app, booking_id) == []
    state = wait_for(booking_id, status="CANCELLED", payment_status="REFUNDED", ticket_status="VOID")
    assert state["remaining"] == 5 and not state["seats_held"]
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


def test_row10_a_booking_whose_charge_still_retries_reaches_a_final_state_at_its_deadline(app, gateway, customer, make_show,
                                                                          book, wait_for, worker):
    """The gateway is down and the charge keeps retrying (it has not given up): the hold deadline
    passes, cleanup expires the booking, releases the seats and reconciles the money."""
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

def test_row11_two_expiry_sweeps_at_once_release_seats_once(app, private_broker, customer, make_show,
                                                            booking_state, wait_for, workdir):
    """Two beats send the same sweep twice: two worker processes each run one, at the same time.
    The test holds the show's row lock until both have read the same overdue bookings and wait
    for it, then lets them race. Each overdue booking is expired once, its seats released once;
    the booking whose hold is still live keeps its seats; neither sweep fails."""
    import psycopg
    from sqlalchemy.engine import make_url

    from models import db
    from models.bookings import Booking
    one_each = {"CELERY_PREFETCH": "1"}  # concurrency 1, prefetch 1: a busy worker takes nothing more
    private, first, second = private_broker(["row11-a", "row11-b"], one_each, queues="seats,maintenance",
                                            concurrency=1)
    client = private.test_client()
    show = make_show(capacity=8)
    ids = [client.post("/bookings", headers=customer["headers"], json={
        "show_id": show["id"], "qty": 2, "payment_method": "tok_ok"}).json["id"] for _ in range(4)]
    for booking_id in ids:  # no payments worker here: the seats stay held, unpaid
        wait_for(booking_id, status="CONFIRMED", payment_status="NONE")
    overdue, live = ids[:3], ids[3]
    with app.app_context():
        db.session.execute(update(Booking).where(Booking.id.in_(overdue))
                           .values(hold_deadline=func.now() - timedelta(seconds=1)))
        db.session.commit()
        db.session.remove()
    before = {booking_id: booking_state(booking_id) for booking_id in ids}
    assert before[live]["remaining"] == 0
    failed_before = len(_failures(app, "maintenance.expire_holds"))

    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False)) as holder, \
            psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as watcher:
        holder.execute("SELECT 1 FROM shows WHERE id = %s FOR NO KEY UPDATE", (show["id"],))  # as get_show does
        held_by = holder.info.backend_pid
        celery = private.extensions["celery"]
        with private.app_context():
            sweeps = [celery.send_task("maintenance.expire_holds").id for _ in range(2)]

        def waiting_on_the_lock():
            # The second waiter queues behind the first (its tuple lock), not the holder itself.
            return watcher.execute("""
                WITH RECURSIVE blocked(pid) AS (
                    SELECT pid FROM pg_stat_activity WHERE %(held_by)s = ANY(pg_blocking_pids(pid))
                    UNION SELECT a.pid FROM pg_stat_activity a JOIN blocked b ON b.pid = ANY(pg_blocking_pids(a.pid)))
                SELECT count(*) FROM blocked""", {"held_by": held_by}).fetchone()[0] == 2
        # Each waits up to lock_timeout (web/config.py), then retries: poll faster than that.
        wait_until(waiting_on_the_lock, 90, 0.05, "both sweeps to have read the overdue bookings and wait on the show")
        holder.rollback()  # both go at once

    ended = ended_deliveries([first, second], sweeps, timeout=90)
    assert {record["worker"] for record in ended.values()} == {first.name, second.name}  # one sweep each
    expired = sorted(int(returned(ended[t])) for t in sweeps)
    assert sum(expired) == 3, expired
    assert len(_failures(app, "maintenance.expire_holds")) == failed_before  # neither sweep gave up
    for booking_id in overdue:
        state = booking_state(booking_id)
        assert state["status"] == "EXPIRED" and not state["seats_held"], state
        assert state["version"] == before[booking_id]["version"] + 1, (booking_id, "expired more than once")
    assert booking_state(live)["status"] == "CONFIRMED"
    assert booking_state(live)["remaining"] == 8 - 2  # capacity minus the live hold: released exactly once


# -- row 13: the breaker is shared, and deliberate when Redis is down ------------------------

def test_row13_breaker_opened_in_one_process_is_open_in_another(app, workdir):
    import subprocess
    import sys
    from gateway.breaker import make_breaker
    url = app.config["REDIS_URL"]
    namespace = f"test-breaker-{free_port()}"
    script = (
        "import sys, pybreaker\n"
        "from gateway.breaker import make_breaker\n"
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
    from gateway.breaker import make_breaker
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
        # The breaker lives in the worker's Redis database (its REDIS_URL), not the suite's.
        redis.Redis.from_url(private.config["REDIS_URL"]).delete(
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
