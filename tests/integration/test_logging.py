"""One booking followed through the JSON logs of a real gunicorn API and a real worker process:
the API's request line ties the client's request id to the booking id, and every step logs the
booking id (steps run for batches of bookings, so they carry no single request id)."""
import pytest
import requests

from tests.integration.observed_stack import json_lines, private_broker, request_id, start_api
from tests.processes import start_worker, wait_until

# The my page is projected inside each step's own transaction, so these are all the hops. Each runs
# for a batch of bookings and logs a line per booking.
STEPS = ("seats.reserve", "payments.charge", "tickets.make_issuable")


@pytest.fixture(scope="module")
def traced(workdir, gateway):
    folder = workdir / "logging"
    env = {"REDIS_URL": private_broker(), "GATEWAY_URL": gateway.base_url, "GATEWAY_TIMEOUT_S": "5",
           "LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}
    api, url = start_api(folder, env, name="log-api")
    worker = start_worker(folder, "log-worker", env, concurrency=2)
    yield api, url, worker
    worker.stop()
    api.stop()


def test_one_booking_is_followed_from_the_http_request_through_every_step(traced, customer, make_show, wait_for):
    api, url, worker = traced
    trace = request_id()
    show = make_show(capacity=5)
    response = requests.post(url + "/bookings", json={"show_id": show["id"], "qty": 2, "payment_method": "tok_ok"},
                             headers={**customer["headers"], "X-Request-ID": trace}, timeout=30)
    assert response.status_code == 202, response.text
    assert response.headers["X-Request-ID"] == trace
    booking_id = response.json()["id"]
    wait_for(booking_id, timeout=90, status="PAID", ticket_status="ISSUABLE")

    def every_step_logged():
        lines = [r for r in json_lines(worker.log()) if r.get("booking_id") == booking_id]
        return lines if {r.get("task") for r in lines} >= set(STEPS) else None
    worker_lines = wait_until(every_step_logged, 60, 0.2, "every step's log lines")

    # The worker: every step logged this booking, with the step's name and task id.
    assert {r["task"] for r in worker_lines if "task" in r} >= set(STEPS)
    assert all(r["task_id"] for r in worker_lines if "task" in r)
    outcomes = {r["task"]: r["outcome"] for r in worker_lines if "outcome" in r}
    assert outcomes["seats.reserve"] == "CONFIRMED" and outcomes["payments.charge"] == "paid"

    # The API: the request line ties the client's request id to the booking id.
    api_lines = [r for r in json_lines(api.log()) if r.get("request_id") == trace]
    access = [r for r in api_lines if r.get("logger") == "boxoffice.http"]
    assert access and access[0]["booking_id"] == booking_id
    assert access[0]["endpoint"] == "/bookings" and access[0]["status"] == 202


def test_a_request_without_an_id_gets_one_and_a_forged_one_is_replaced(traced):
    _, url, _ = traced
    generated = requests.get(url + "/healthz", timeout=10).headers["X-Request-ID"]
    assert generated and len(generated) >= 16
    for forged in ('x"}, {"level": "forged', "a" * 300):
        answered = requests.get(url + "/healthz", headers={"X-Request-ID": forged}, timeout=10).headers["X-Request-ID"]
        assert answered != forged and answered.isalnum()
