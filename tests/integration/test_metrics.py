"""Prometheus metrics: the API under gunicorn with several worker processes, and a worker process,
scraped over HTTP and parsed with prometheus-client's own parser."""
import pytest
import requests
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.observed_stack import private_broker, start_api
from tests.processes import free_port, start_worker, wait_until


def scrape(url: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} from a /metrics page."""
    response = requests.get(url, timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def value(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.fixture(scope="module")
def observed(workdir, gateway):
    folder = workdir / "metrics"
    broker = private_broker()
    env = {"REDIS_URL": broker, "GATEWAY_URL": gateway.base_url, "GATEWAY_TIMEOUT_S": "2"}
    api, url = start_api(folder, {**env, "PROMETHEUS_MULTIPROC_DIR": str(folder / "prom-api")}, name="metrics-api")
    metrics_port = free_port()
    # Every queue but maintenance: what is sent there stays queued, for the queue-depth gauge.
    worker = start_worker(folder, "metrics-worker", {
        **env, "PROMETHEUS_MULTIPROC_DIR": str(folder / "prom-worker"), "WORKER_METRICS_PORT": str(metrics_port),
        "WORKER_METRICS_ADDR": "127.0.0.1"}, queues="seats,payments,tickets,mypage", concurrency=2)
    yield {"api": url, "worker": f"http://127.0.0.1:{metrics_port}/metrics", "broker": broker}
    worker.stop()
    api.stop()


def test_api_counts_requests_per_url_rule_and_status_across_gunicorn_workers(observed, make_show):
    show = make_show(capacity=4)
    for _ in range(12):  # spread over both gunicorn workers
        assert requests.get(f"{observed['api']}/shows/{show['id']}", timeout=10).status_code == 200
    for _ in range(3):
        assert requests.get(f"{observed['api']}/shows/no-such-show", timeout=10).status_code == 404
    samples = scrape(observed["api"] + "/metrics")
    labels = {"endpoint": "/shows/<show_id>", "method": "GET"}
    # Counted once per request whichever process answered (multiprocess mode), never per raw path.
    assert value(samples, "boxoffice_http_requests_total", **labels, status="200") >= 12
    assert value(samples, "boxoffice_http_requests_total", **labels, status="404") >= 3
    assert value(samples, "boxoffice_http_request_duration_seconds_count", **labels, status="200") >= 12
    assert not any(dict(key[1]).get("endpoint", "").endswith(show["id"]) for key in samples)

    again = scrape(observed["api"] + "/metrics")
    assert value(again, "boxoffice_http_requests_total", **labels, status="404") == \
        value(samples, "boxoffice_http_requests_total", **labels, status="404")


def test_api_reports_bookings_by_status_remaining_seats_and_consistency(observed, make_show, customer, wait_for):
    show = make_show(capacity=6)
    response = requests.post(observed["api"] + "/bookings", headers=customer["headers"],
                             json={"show_id": show["id"], "qty": 2, "payment_method": "tok_ok"}, timeout=30)
    assert response.status_code == 202, response.text
    wait_for(response.json()["id"], timeout=90, status="PAID")

    samples = scrape(observed["api"] + "/metrics")
    assert value(samples, "boxoffice_domain_metrics_up") == 1
    assert value(samples, "boxoffice_show_remaining_seats", show_id=show["id"]) == 4
    assert value(samples, "boxoffice_show_capacity_seats", show_id=show["id"]) == 6
    assert value(samples, "boxoffice_bookings", status="PAID") >= 1
    assert value(samples, "boxoffice_bookings", status="CANCELLING") is not None  # every status, even at 0
    assert value(samples, "boxoffice_consistency_violations", invariant="seats") == 0
    assert value(samples, "boxoffice_consistency_violations", invariant="issued_on_refunded") == 0


def test_worker_counts_steps_started_succeeded_retried_and_failed(observed, make_show, customer, wait_for, gateway):
    before = scrape(observed["worker"])
    gateway.set_faults(error_rate=1.0)  # every charge attempt fails until cleared: retries
    try:
        show = make_show(capacity=3)
        response = requests.post(observed["api"] + "/bookings", headers=customer["headers"],
                                 json={"show_id": show["id"], "qty": 1, "payment_method": "tok_ok"}, timeout=30)
        assert response.status_code == 202
        wait_until(lambda: (value(scrape(observed["worker"]), "boxoffice_tasks_retried_total",
                                  task="payments.charge") or 0) >= 1, 60, 0.5, "a counted retry")
    finally:
        gateway.clear_faults()
    wait_for(response.json()["id"], timeout=120, status="PAID", ticket_status="ISSUABLE")

    client = Celery(broker=observed["broker"])
    client.send_task("payments.charge", args=["no-such-booking"], queue="payments")  # a permanent error

    def counted():
        samples = scrape(observed["worker"])
        return samples if (value(samples, "boxoffice_tasks_failed_total", task="payments.charge") or 0) >= 1 else None
    after = wait_until(counted, 60, 0.5, "the failed step to be counted")

    def grew(name, task):
        return (value(after, name, task=task) or 0) - (value(before, name, task=task) or 0)
    for step in ("seats.reserve_show", "payments.charge_many", "tickets.make_issuable_many"):
        assert grew("boxoffice_tasks_started_total", step) >= 1, step
        assert grew("boxoffice_tasks_succeeded_total", step) >= 1, step
    assert grew("boxoffice_tasks_retried_total", "payments.charge") >= 1
    assert grew("boxoffice_tasks_started_total", "payments.charge") >= 3  # first try, retries, the failed one
    assert grew("boxoffice_tasks_failed_total", "seats.reserve_show") == 0


def test_worker_reports_queue_depth_per_queue(observed):
    client = Celery(broker=observed["broker"])
    for _ in range(3):  # nobody consumes maintenance in this module
        client.send_task("maintenance.expire_holds", queue="maintenance")
    samples = wait_until(lambda: (s := scrape(observed["worker"])) and
                         value(s, "boxoffice_queue_length", queue="maintenance") == 3 and s,
                         30, 0.2, "the queue depth gauge")
    assert value(samples, "boxoffice_queue_length", queue="seats") == 0
    assert value(samples, "boxoffice_queue_unacked_messages") is not None


def test_a_restarted_api_starts_its_counters_from_zero(workdir, gateway):
    """Counters left in the multiprocess folder by a previous run are not added to the new one."""
    folder = workdir / "metrics-restart"
    env = {"REDIS_URL": private_broker(), "GATEWAY_URL": gateway.base_url,
           "PROMETHEUS_MULTIPROC_DIR": str(folder / "prom-api")}
    labels = {"endpoint": "/healthz", "method": "GET", "status": "200"}
    api, url = start_api(folder, env, name="restart-api")
    try:
        for _ in range(20):
            requests.get(url + "/healthz", timeout=10)
        assert value(scrape(url + "/metrics"), "boxoffice_http_requests_total", **labels) >= 20
    finally:
        api.stop()
    assert list((folder / "prom-api").glob("*.db"))  # the first run left its files behind

    api, url = start_api(folder, env, name="restart-api-2")
    try:
        counted = value(scrape(url + "/metrics"), "boxoffice_http_requests_total", **labels) or 0
        assert counted < 20  # only the new run's own health checks
    finally:
        api.stop()
