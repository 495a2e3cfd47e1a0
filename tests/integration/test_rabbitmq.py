"""What RabbitMQ as the broker adds (docs/operations.md, "Choosing a broker"), created for real on
the private vhost: a dead worker's messages are handed out again at once, and a broker restart
keeps what its quorum queues hold. Neither leans on the database's re-drive: no beat runs here,
so what recovers is the broker alone. Runs when BROKER_URL names a RabbitMQ (.ci/run's third
pass); the rows that apply to both brokers are in test_reliability_faults.py."""
import os
import signal

import pytest
from sqlalchemy import select

import celeryconfig
from tests.integration.observed_stack import PrivateStack
from tests.integration.test_reliability_faults import any_charge_in_flight, assert_paid_exactly_once
from tests.processes import wait_until

pytestmark = pytest.mark.skipif(not celeryconfig.BROKER_IS_RABBITMQ,
                                reason="RabbitMQ's own behaviour: needs BROKER_URL naming one (.ci/run, pass 3)")


@pytest.fixture(scope="module")
def private(workdir, gateway):
    # No re-drive could help within these tests even if beat ran: it waits far longer.
    stack = PrivateStack(workdir / "rabbitmq", {"GATEWAY_URL": gateway.base_url, "GATEWAY_TIMEOUT_S": "5",
                                                "RETRY_BACKOFF_MAX_S": "2", "REDRIVE_STUCK_AFTER_S": "3600"},
                         api_name="rabbitmq-api")
    yield stack
    stack.close()


@pytest.fixture
def clean(private, gateway):
    yield private
    gateway.clear_faults()
    private.stop_processes()


def book(stack, customer, show_id):
    import requests
    response = requests.post(stack.api_url + "/bookings", headers=customer["headers"], timeout=10,
                             json={"show_id": show_id, "qty": 1, "payment_method": "tok_ok"})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def charge_starts(app, ids) -> list[int]:
    """The start counter's rows for these bookings' charges: only redeliveries make one here."""
    from models import db
    from models.task_failures import TaskStart
    with app.app_context():
        starts = db.session.scalars(select(TaskStart.starts).where(
            TaskStart.task == "payments.charge", TaskStart.booking_id.in_(ids))).all()
        db.session.remove()
    return starts


def test_a_sigkilled_workers_charges_are_handed_out_again_at_once(app, clean, gateway, customer, make_show,
                                                                  booking_state, wait_for):
    show = make_show(capacity=10, price=700)
    first = clean.worker(concurrency=2)
    gateway.set_faults(latency_ms=2000)  # every charge is slow: the worker is in the middle of one
    ids = [book(clean, customer, show["id"]) for _ in range(4)]
    wait_until(lambda: any_charge_in_flight(booking_state, ids), 90, 0.05, "a charge to be under way")
    os.killpg(first.pid, signal.SIGKILL)  # main process and pool children: its connection dies with it
    first.popen.wait(10)
    gateway.clear_faults()
    clean.worker(concurrency=2)
    # With no beat, only RabbitMQ's redelivery can bring the charge back (on Redis it would wait
    # for the visibility timeout, an hour).
    assert_paid_exactly_once(app, gateway, wait_for, ids, timeout=90, private=clean)
    # The charge came back as a redelivery, which the start counter then counted.
    assert charge_starts(app, ids) and max(charge_starts(app, ids)) >= 1


def test_a_broker_restart_keeps_the_queued_steps(app, clean, gateway, customer, make_show, wait_for):
    show = make_show(capacity=10, price=600)
    clean.worker(concurrency=1).stop()  # a worker has declared the queues, then gone: steps wait
    ids = [book(clean, customer, show["id"]) for _ in range(3)]
    wait_until(lambda: clean.broker.queue_length("seats") >= 1, 30, 0.05, "the reservation kick to be queued")
    queued = clean.broker.queue_length("seats")
    clean.broker.restart()
    assert clean.broker.queue_length("seats") == queued  # on disk, in the quorum queue
    clean.worker(concurrency=2)
    assert_paid_exactly_once(app, gateway, wait_for, ids, timeout=90, private=clean)


def test_flower_follows_the_workers_and_their_steps_through_rabbitmq(app, clean, workdir, customer, make_show,
                                                                     wait_for):
    """Flower as the stack runs it, on the private vhost: the workers' events reach it through
    RabbitMQ (its task list), and so do its remote-control questions (its worker list)."""
    import requests

    from stack.processes import stack_processes
    from tests.processes import ManagedProcess, free_port
    folder, port = workdir / "rabbitmq-flower", free_port()
    folder.mkdir(parents=True, exist_ok=True)
    spec = next(s for s in stack_processes(folder, flower_auth="ops:secret-pass", flower_port=port)
                if s.name == "flower")
    flower = ManagedProcess("rabbitmq-flower", spec.executable_argv(), folder / "flower.log", clean.env).start()
    clean.processes.append(flower)
    url, auth = f"http://127.0.0.1:{port}", ("ops", "secret-pass")

    def answers():
        try:
            return requests.get(url + "/healthcheck", timeout=2).ok
        except requests.RequestException:
            return False
    wait_until(answers, 90, 0.3, "Flower to answer")
    worker = clean.worker(concurrency=1)
    booking_id = book(clean, customer, make_show(capacity=2, price=500)["id"])
    wait_for(booking_id, status="PAID", ticket_status="ISSUABLE", timeout=90)

    def seen_steps():
        tasks = requests.get(url + "/api/tasks", auth=auth, params={"limit": 200}, timeout=10).json()
        return {task["name"] for task in tasks.values()} >= {"seats.reserve", "payments.charge"}
    wait_until(seen_steps, 60, 0.5, "Flower to list the booking's steps")
    workers = requests.get(url + "/api/workers", auth=auth, params={"refresh": "1"}, timeout=30).json()
    assert any(name.startswith(f"{worker.name}@") for name in workers), workers
