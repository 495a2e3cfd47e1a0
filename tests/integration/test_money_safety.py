"""No money lost to a slow payment provider (RELIABILITY row 15), and the reconciliation job.

A private slice of the stack: a Redis server of its own, gunicorn and, per test, worker
processes with the settings that test needs (a short client timeout, a short hold). PostgreSQL
and the gateway sandbox are the suite's. Every check of money reads the gateway's own ledger.

The slow-gateway tests reproduce the reported defect: the gateway takes longer than the worker's
client timeout plus the old 5 s margin, so a charge request is still on its way when the
booking is settled. Whether such a request can still capture is only known once it has landed;
the tests wait for that causally: a request with the same key and the same latency, sent after
the booking was settled, lands after every earlier one (they all sleep the same time first), and
so does its answer.
"""
import json
import secrets

import pytest
import requests
from sqlalchemy import delete, func, select

from gateway import GatewayClient
from stack.embedded import EmbeddedRedis
from tests.integration.observed_stack import json_lines, start_api
from tests.processes import free_port, start_worker, wait_until

CLIENT_TIMEOUT_S = 0.5
# Longer than the client timeout + the old 5 s margin + the refund step's backoff (2 s) + the
# short hold below: under the old code the refund concluded "nothing was captured" before a
# request this slow landed.
SLOW_MS = 10_000
SHORT_HOLD_MINUTES = 0.01  # 0.6 s
FAST_RETRIES = {"RETRY_BACKOFF_MAX_S": "2", "BREAKER_FAIL_MAX": "1000"}


class MoneyStack:
    def __init__(self, folder, app, gateway):
        from web import create_app
        self.folder, self.gateway = folder, gateway
        self.redis_server = EmbeddedRedis(folder / "redis", free_port())
        self.redis_server.start()
        self.url = self.redis_server.url(0)
        self.env = {"REDIS_URL": self.url, "GATEWAY_URL": gateway.base_url,
                    "GATEWAY_TIMEOUT_S": str(CLIENT_TIMEOUT_S), **FAST_RETRIES}
        self.api, self.api_url = start_api(folder, self.env, name="money-api", workers=1)
        # An app that publishes to this Redis, for sending steps and jobs to the workers below.
        self.publisher = create_app({"SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
                                     "REDIS_URL": self.url, "GATEWAY_URL": gateway.base_url,
                                     "JWT_SECRET_KEY": app.config["JWT_SECRET_KEY"]})
        self.publisher.extensions["celery"].conf.broker_url = self.url
        app.extensions["celery"].set_default()
        self.app = app
        self.workers = []

    def worker(self, queues="seats,payments,tickets,mypage,maintenance", concurrency=3, extra=None, **env):
        name = f"money-worker-{len(self.workers)}-{secrets.token_hex(2)}"
        process = start_worker(self.folder, name, {**self.env, **{k: str(v) for k, v in env.items()}},
                               queues=queues, concurrency=concurrency, extra=extra)
        self.workers.append(process)
        return process

    def send(self, task, *args):
        celery = self.publisher.extensions["celery"]
        with self.publisher.app_context():
            celery.send_task(task, args=list(args))
        self.app.extensions["celery"].set_default()

    def book(self, customer, show_id, qty=1, payment_method="tok_ok"):
        response = requests.post(self.api_url + "/bookings", headers=customer["headers"], timeout=10,
                                 json={"show_id": show_id, "qty": qty, "payment_method": payment_method})
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def cancel(self, customer, booking_id):
        response = requests.post(f"{self.api_url}/bookings/{booking_id}/cancel", headers=customer["headers"],
                                 timeout=10)
        assert response.status_code == 202, response.text
        return response.json()

    def logs(self):
        return "\n".join(f"--- {p.name}\n{p.log()[-5000:]}" for p in self.workers)

    def stop_workers(self):
        while self.workers:
            self.workers.pop().stop()

    def close(self):
        self.stop_workers()
        self.api.stop()
        self.redis_server.stop()


@pytest.fixture(scope="module")
def stack(workdir, app, gateway):
    running = MoneyStack(workdir / "money", app, gateway)
    yield running
    running.close()


@pytest.fixture
def money(stack, gateway):
    """Each test starts its own workers and leaves none (nor gateway faults) behind."""
    yield stack
    gateway.clear_faults()
    stack.stop_workers()


# -- reading the outcome -------------------------------------------------------------------------

def read(app, booking_id):
    from models import db
    from models.bookings import Booking
    with app.app_context():
        booking = db.session.get(Booking, booking_id)
        state = {"status": booking.status, "payment_status": booking.payment.status,
                 "ticket_status": booking.ticket.status, "seats_held": booking.seats_held,
                 "remaining": booking.show.remaining, "amount": booking.amount,
                 "money_settled": booking.payment.status not in ("PENDING", "REFUNDING"),
                 "deadline_passed": booking.hold_deadline is not None
                 and db.session.scalar(select(func.now())) > booking.hold_deadline}
        db.session.remove()
        return state


def wait_state(money, booking_id, timeout=90, **expected):
    def matches():
        state = read(money.app, booking_id)
        return state if all(state[k] == v for k, v in expected.items()) else None
    try:
        return wait_until(matches, timeout, 0.1, f"booking {booking_id} to reach {expected}")
    except AssertionError as error:
        raise AssertionError(f"{error}: it is {read(money.app, booking_id)}\n{money.logs()}") from None


def balance(gateway, booking_id):
    ledger = gateway.ledger(booking_id)
    return ledger["captured"] - ledger["refunded"]


def money_problems_of(app, gateway, ids):
    """The consistency check's money rows (and missing refunds) for these bookings."""
    from models import consistency, db
    with app.app_context():
        report = consistency.check(gateway)
        rows = [row for row in report.money_problems if row["booking_id"] in ids]
        db.session.remove()
    missing = sum(1 for row in rows if row["status"] != "PAID" and row["captured"] - row["refunded"] > row["expected"])
    return rows, missing


def retried(worker, task, booking_id):
    return [r for r in json_lines(worker.log())
            if r.get("task") == task and r.get("booking_id") == booking_id and r.get("state") == "RETRY"]


def succeeded(worker, task):
    return [r for r in json_lines(worker.log()) if r.get("task") == task and r.get("state") == "SUCCESS"]


def land_a_late_charge(gateway, booking_id, amount):
    """Send the booking's own charge request again, as slow as the ones in flight and after them,
    and wait for its answer: by then every earlier request under the key has landed too."""
    from gateway.client import ChargeVoided
    gateway.set_faults(latency_ms=SLOW_MS)
    patient = GatewayClient(gateway.base_url, timeout=SLOW_MS / 1000 + 30)
    try:
        patient.charge(reference=booking_id, amount=amount, payment_method="tok_ok",
                       idempotency_key=f"charge:{booking_id}")
    except ChargeVoided:
        return "voided"
    finally:
        gateway.clear_faults()
    return "charged"


def assert_nothing_kept(money, gateway, booking_id):
    assert balance(gateway, booking_id) == 0, (booking_id, gateway.ledger(booking_id))
    rows, missing = money_problems_of(money.app, gateway, {booking_id})
    assert (rows, missing) == ([], 0)


def reconciled(app, ids=None):
    from models import db
    from models.payments import ReconciledRefund
    with app.app_context():
        query = select(ReconciledRefund)
        if ids is not None:
            query = query.where(ReconciledRefund.booking_id.in_(list(ids)))
        rows = [(r.booking_id, r.booking_status, r.amount) for r in db.session.scalars(query)]
        db.session.remove()
        return rows


# -- the reported defect: a cancel while a slow charge is in flight ----------------------------

def test_a_cancel_while_a_slow_charge_is_in_flight_never_leaves_money_taken(money, gateway, customer, make_show):
    worker = money.worker()
    show = make_show(capacity=5, price=1500)
    gateway.set_faults(latency_ms=SLOW_MS)
    booking_id = money.book(customer, show["id"])
    wait_state(money, booking_id, payment_status="PENDING")  # the charge request is on its way
    money.cancel(customer, booking_id)

    # The refund step cannot know yet: it must keep asking, not conclude from the clock.
    wait_until(lambda: retried(worker, "payments.refund", booking_id), 60, 0.2, "the refund step to wait")
    assert read(money.app, booking_id)["status"] == "CANCELLING"
    gateway.clear_faults()
    state = wait_state(money, booking_id, status="CANCELLED")
    assert state["remaining"] == 5 and state["ticket_status"] == "VOID"

    assert land_a_late_charge(gateway, booking_id, 1500) == "voided"
    assert_nothing_kept(money, gateway, booking_id)
    assert reconciled(money.app, {booking_id}) == []  # the refund step alone did it


def test_a_hold_that_expires_during_a_slow_charge_never_leaves_money_taken(money, gateway, customer, make_show):
    worker = money.worker(HOLD_MINUTES=SHORT_HOLD_MINUTES)
    show = make_show(capacity=5, price=1700)
    gateway.set_faults(latency_ms=SLOW_MS)
    booking_id = money.book(customer, show["id"], qty=2)
    wait_state(money, booking_id, payment_status="PENDING")
    wait_state(money, booking_id, deadline_passed=True, status="CONFIRMED")
    money.send("maintenance.expire_holds")  # what beat sends every 15 s
    wait_state(money, booking_id, status="EXPIRED", seats_held=False)

    wait_until(lambda: retried(worker, "payments.refund", booking_id), 60, 0.2, "the refund step to wait")
    gateway.clear_faults()
    wait_state(money, booking_id, status="EXPIRED", money_settled=True)

    assert land_a_late_charge(gateway, booking_id, 3400) == "voided"
    assert_nothing_kept(money, gateway, booking_id)
    state = read(money.app, booking_id)
    assert (state["payment_status"], state["remaining"]) == ("NONE", 5)


def test_a_slow_charge_batch_half_cancelled_keeps_no_money_for_the_cancelled_and_pays_the_rest_once(
        money, gateway, customer, make_show):
    show = make_show(capacity=10, price=900)
    ids = [money.book(customer, show["id"]) for _ in range(4)]  # no worker yet: one batch
    gateway.set_faults(latency_ms=SLOW_MS)
    worker = money.worker()
    for booking_id in ids:
        wait_state(money, booking_id, payment_status="PENDING")  # claimed by the charge batch
    cancelled, kept = ids[:2], ids[2:]
    for booking_id in cancelled:
        money.cancel(customer, booking_id)
    wait_until(lambda: all(retried(worker, "payments.refund", b) for b in cancelled), 60, 0.2,
               "the refund steps to wait")
    gateway.clear_faults()

    for booking_id in cancelled:
        wait_state(money, booking_id, status="CANCELLED")
    for booking_id in kept:
        wait_state(money, booking_id, status="PAID", payment_status="PAID", ticket_status="ISSUABLE")
    for booking_id in cancelled:
        assert land_a_late_charge(gateway, booking_id, 900) == "voided"
        assert_nothing_kept(money, gateway, booking_id)
    for booking_id in kept:
        ledger = gateway.ledger(booking_id)
        assert (ledger["captured"], ledger["refunded"], ledger["charges"]) == (900, 0, 1)
    assert read(money.app, ids[0])["remaining"] == 8


# -- an unknown outcome is never a decline --------------------------------------------------------

@pytest.mark.parametrize("faults", [
    {"error_statuses": [408]}, {"error_statuses": [409]}, {"error_statuses": [404]},
    {"error_statuses": [502], "error_body": False},
], ids=["408", "409", "404", "502-bodiless"])
def test_an_unknown_answer_to_a_charge_never_releases_seats_and_the_booking_is_paid_later(
        money, gateway, customer, make_show, faults):
    worker = money.worker()
    show = make_show(capacity=3, price=1100)
    gateway.set_faults(error_rate=1.0, **faults)
    booking_id = money.book(customer, show["id"], qty=2)
    wait_until(lambda: len(retried(worker, "payments.charge", booking_id)) >= 2
               or read(money.app, booking_id)["status"] not in ("PENDING", "CONFIRMED"), 60, 0.2,
               "the charge to be answered twice (or the booking to move on)")
    state = read(money.app, booking_id)
    assert (state["status"], state["payment_status"], state["seats_held"], state["remaining"]) == (
        "CONFIRMED", "PENDING", True, 1)

    gateway.clear_faults()
    wait_state(money, booking_id, status="PAID", payment_status="PAID", ticket_status="ISSUABLE")
    ledger = gateway.ledger(booking_id)
    assert (ledger["captured"], ledger["charges"]) == (2200, 1)


def test_a_charge_request_the_gateway_refuses_is_a_task_failure_and_the_hold_deadline_undoes_it(
        money, gateway, customer, make_show):
    """Our request itself refused (here: its key already used with another body) is a bug on our
    side: not a decline (no seats released as PAYMENT_FAILED) and not a retry loop. The step is
    recorded as failed; the hold deadline expires the booking, and the refund step's void names
    the charge that key holds, which is refunded."""
    from models import db
    from models.task_failures import TaskFailure
    money.worker(queues="seats,tickets,mypage,maintenance", HOLD_MINUTES=SHORT_HOLD_MINUTES)
    show = make_show(capacity=4, price=1300)
    booking_id = money.book(customer, show["id"])
    wait_state(money, booking_id, status="CONFIRMED")
    gateway.charge(reference=booking_id, amount=999, payment_method="tok_ok", idempotency_key=f"charge:{booking_id}")
    money.worker(queues="payments", HOLD_MINUTES=SHORT_HOLD_MINUTES)

    def failure():
        with money.app.app_context():
            found = db.session.scalar(select(TaskFailure).where(TaskFailure.booking_id == booking_id,
                                                                TaskFailure.task == "payments.charge"))
            db.session.remove()
            return found
    recorded = wait_until(failure, 60, 0.2, "the refused charge to be recorded as a task failure")
    assert "idempotency_key_reused" in recorded.error
    state = read(money.app, booking_id)
    assert (state["status"], state["seats_held"]) == ("CONFIRMED", True)  # not a decline

    wait_state(money, booking_id, deadline_passed=True)
    money.send("maintenance.expire_holds")
    wait_state(money, booking_id, status="EXPIRED", payment_status="REFUNDED", seats_held=False)
    assert_nothing_kept(money, gateway, booking_id)
    assert gateway.ledger(booking_id)["refunded"] == 999


# -- free shows ----------------------------------------------------------------------------------

def test_a_free_booking_is_paid_and_cancelled_without_any_gateway_call(money, gateway, customer, make_show):
    money.worker()
    show = make_show(capacity=4, price=0)
    gateway.set_faults(outage=True)  # any gateway call would fail: none is needed
    booking_id = money.book(customer, show["id"], qty=2)
    wait_state(money, booking_id, status="PAID", payment_status="PAID", ticket_status="ISSUABLE")
    ticket = requests.post(f"{money.api_url}/bookings/{booking_id}/ticket", headers=customer["headers"], timeout=10)
    assert ticket.status_code == 200, ticket.text
    assert gateway.ledger(booking_id)["charges"] == 0
    rows, missing = money_problems_of(money.app, gateway, {booking_id})
    assert (rows, missing) == ([], 0)

    money.cancel(customer, booking_id)
    state = wait_state(money, booking_id, status="CANCELLED")
    assert (state["payment_status"], state["ticket_status"], state["remaining"]) == ("REFUNDED", "VOID", 4)
    gateway.clear_faults()
    assert gateway.ledger(booking_id) == {"reference": booking_id, "captured": 0, "refunded": 0,
                                          "charges": 0, "refunds": 0}
    rows, missing = money_problems_of(money.app, gateway, {booking_id})
    assert (rows, missing) == ([], 0)


# -- cancellation fees (SPEC §11) ---------------------------------------------------------------

FEE_30 = [{"hours_before": 0, "fee_percent": 30}]


def fee_state(app, booking_id):
    from models import db
    from models.bookings import Booking
    with app.app_context():
        booking = db.session.get(Booking, booking_id)
        state = (booking.cancellation_fee, booking.refunded_amount)
        db.session.remove()
        return state


def test_a_refund_step_killed_after_its_refund_is_retried_and_never_gives_back_more_than_amount_less_fee(
        money, gateway, customer, make_show, workdir):
    """The refund step's pool process is SIGKILLed right after the gateway made the refund, before
    the step recorded anything (tests/integration/refund_killer_tasks.py): the step runs again and
    finds the money given back already; the gateway keeps exactly the fee."""
    doomed = workdir / "fee-refund-doomed"
    doomed.write_text("")
    deaths = workdir / "fee-refund-doomed.deaths"
    worker = money.worker(REFUND_KILLER_FILE=str(doomed), extra=["--include", "tests.integration.refund_killer_tasks"])
    show = make_show(capacity=5, price=3333, cancellation_policy=FEE_30)
    booking_id = money.book(customer, show["id"], qty=3)  # 9,999: a fee of 2,999 (2,999.7 rounded down)
    wait_state(money, booking_id, status="PAID", payment_status="PAID")
    doomed.write_text(booking_id + "\n")

    answer = money.cancel(customer, booking_id)
    assert (answer["status"], answer["cancellation_fee"], answer["refunded_amount"]) == ("CANCELLING", 2999, 0)
    state = wait_state(money, booking_id, status="CANCELLED", timeout=120)
    assert (state["payment_status"], state["ticket_status"], state["remaining"]) == ("REFUNDED", "VOID", 5)

    died = [json.loads(line) for line in deaths.read_text().splitlines()]
    assert [(d["booking_id"], d["amount"]) for d in died] == [(booking_id, 9999 - 2999)], died
    assert "signal 9 (SIGKILL)" in worker.log() or "WorkerLostError" in worker.log(), worker.log()[-3000:]
    ledger = gateway.ledger(booking_id)
    assert (ledger["captured"], ledger["refunded"], ledger["refunds"]) == (9999, 7000, 1), ledger
    assert fee_state(money.app, booking_id) == (2999, 7000)
    rows, missing = money_problems_of(money.app, gateway, {booking_id})
    assert (rows, missing) == ([], 0)

    # The reconciliation job leaves the fee where it is.
    money.send("payments.reconcile")
    wait_until(lambda: succeeded(worker, "payments.reconcile"), 60, 0.2, "a reconciliation run")
    assert balance(gateway, booking_id) == 2999 and reconciled(money.app, {booking_id}) == []


def test_a_fee_of_everything_gives_nothing_back_and_asks_the_gateway_for_no_refund(money, gateway, customer, make_show):
    money.worker()
    show = make_show(capacity=5, price=2000, cancellation_policy=[{"hours_before": 0, "fee_percent": 100}])
    booking_id = money.book(customer, show["id"], qty=2)
    wait_state(money, booking_id, status="PAID", payment_status="PAID")
    assert money.cancel(customer, booking_id)["cancellation_fee"] == 4000
    state = wait_state(money, booking_id, status="CANCELLED")
    assert (state["payment_status"], state["ticket_status"], state["remaining"]) == ("REFUNDED", "VOID", 5)
    ledger = gateway.ledger(booking_id)
    assert (ledger["captured"], ledger["refunded"], ledger["refunds"]) == (4000, 0, 0), ledger
    assert fee_state(money.app, booking_id) == (4000, 0)
    assert money_problems_of(money.app, gateway, {booking_id}) == ([], 0)


def test_a_cancel_before_the_capture_costs_no_fee_whatever_the_policy(money, gateway, customer, make_show):
    show = make_show(capacity=5, price=2000, cancellation_policy=FEE_30)
    booking_id = money.book(customer, show["id"])  # no worker yet: the booking is PENDING
    answer = money.cancel(customer, booking_id)
    assert (answer["status"], answer["cancellation_fee"], answer["refunded_amount"]) == ("CANCELLED", 0, 0)
    gateway.set_faults(latency_ms=SLOW_MS)  # the next one's charge is on its way when the cancel comes
    money.worker()
    slow = money.book(customer, show["id"])
    wait_state(money, slow, payment_status="PENDING")
    assert money.cancel(customer, slow)["cancellation_fee"] == 0
    land_a_late_charge(gateway, slow, 2000)
    wait_state(money, slow, status="CANCELLED", money_settled=True, timeout=120)
    assert fee_state(money.app, slow)[0] == 0
    assert_nothing_kept(money, gateway, slow)


# -- reconciliation ------------------------------------------------------------------------------

def scrape_counter(port, name):
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    from prometheus_client.parser import text_string_to_metric_families
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                values[sample.labels.get("booking_status")] = sample.value
    return values


def run_reconcile(money, worker, runs_before):
    money.send("payments.reconcile")
    wait_until(lambda: len(succeeded(worker, "payments.reconcile")) > runs_before, 60, 0.2,
               "the reconciliation job to run")
    return succeeded(worker, "payments.reconcile")[-1]


def test_reconciliation_refunds_captures_no_step_gave_back_records_and_counts_each_once(
        money, gateway, customer, make_show):
    from models import db
    from models.payments import ReconciliationCursor
    with money.app.app_context():  # a first run: no cursor, it reads the last two minutes
        db.session.execute(delete(ReconciliationCursor))
        db.session.commit()
        db.session.remove()
    metrics_port = free_port()
    worker = money.worker(RECONCILE_LOOKBACK_S=120, WORKER_METRICS_PORT=metrics_port,
                          WORKER_METRICS_ADDR="127.0.0.1",
                          PROMETHEUS_MULTIPROC_DIR=money.folder / f"prom-{secrets.token_hex(2)}")
    show = make_show(capacity=6, price=800)
    cancelled, paid = money.book(customer, show["id"]), money.book(customer, show["id"])
    for booking_id in (cancelled, paid):
        wait_state(money, booking_id, status="PAID", ticket_status="ISSUABLE")
    money.cancel(customer, cancelled)
    wait_state(money, cancelled, status="CANCELLED", payment_status="REFUNDED")
    before = reconciled(money.app)

    # Money nobody's step knows of: a capture for the cancelled booking, and one beyond the amount
    # of the paid booking (made straight at the gateway, under keys no step uses).
    stray = gateway.charge(reference=cancelled, amount=800, payment_method="tok_ok", idempotency_key=f"stray:{cancelled}")
    extra = gateway.charge(reference=paid, amount=800, payment_method="tok_ok", idempotency_key=f"extra:{paid}")
    rows, missing = money_problems_of(money.app, gateway, {cancelled, paid})
    assert missing == 1 and len(rows) == 2  # what the check sees before the job runs

    run_reconcile(money, worker, 0)
    assert (balance(gateway, cancelled), balance(gateway, paid)) == (0, 800)
    assert gateway.get_charge(stray.id).refunded_amount == 800
    assert gateway.get_charge(extra.id).refunded_amount == 800
    legit = [c for c in gateway.find_charges(paid) if c.id != extra.id]
    assert [c.refunded_amount for c in legit] == [0]  # the paid booking's own charge is kept
    assert sorted(reconciled(money.app, {cancelled, paid})) == sorted([(cancelled, "CANCELLED", 800),
                                                                       (paid, "PAID", 800)])
    assert money_problems_of(money.app, gateway, {cancelled, paid}) == ([], 0)
    made = len(reconciled(money.app)) - len(before)
    assert scrape_counter(metrics_port, "boxoffice_reconciled_refunds_total").get("CANCELLED", 0) >= 1
    counted = sum(scrape_counter(metrics_port, "boxoffice_reconciled_refunds_total").values())
    assert counted == made

    run_reconcile(money, worker, 1)  # twice: refunded once
    for booking_id in (cancelled, paid):
        assert gateway.ledger(booking_id)["refunds"] == (2 if booking_id == cancelled else 1)
    assert balance(gateway, paid) == 800
    assert len(reconciled(money.app)) - len(before) == made
    assert sum(scrape_counter(metrics_port, "boxoffice_reconciled_refunds_total").values()) == made


def test_reconciliation_leaves_a_capture_about_to_settle_alone_and_the_booking_keeps_its_charge(
        money, gateway, customer, make_show):
    """The gateway recorded the charge and hangs before answering: the booking is CONFIRMED with
    money captured, its charge step about to settle it. The job must not refund it."""
    from models import db
    from models.payments import WatchedCharge
    worker = money.worker(GATEWAY_TIMEOUT_S=30, RECONCILE_LOOKBACK_S=120)
    show = make_show(capacity=3, price=600)
    gateway.set_faults(timeout_rate=1.0, timeout_s=12)  # half the requests record, then hang
    booking_id = money.book(customer, show["id"])
    wait_until(lambda: gateway.ledger(booking_id)["captured"] == 600, 120, 0.1, "the charge to be recorded")
    assert read(money.app, booking_id)["status"] == "CONFIRMED"  # its answer is still hanging

    run_reconcile(money, worker, 0)

    def watched():
        with money.app.app_context():
            rows = db.session.scalars(select(WatchedCharge.booking_id).where(WatchedCharge.booking_id == booking_id)).all()
            db.session.remove()
            return rows
    assert gateway.ledger(booking_id)["refunded"] == 0
    assert watched() == [booking_id]
    gateway.clear_faults()
    wait_state(money, booking_id, timeout=120, status="PAID", payment_status="PAID")
    run_reconcile(money, worker, 1)
    ledger = gateway.ledger(booking_id)
    assert (ledger["captured"], ledger["refunded"], ledger["charges"]) == (600, 0, 1)
    assert watched() == []
    assert reconciled(money.app, {booking_id}) == []
