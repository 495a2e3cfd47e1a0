"""Prometheus metrics: the API under gunicorn with several worker processes, and a worker process,
scraped over HTTP and parsed with prometheus-client's own parser."""

import pytest
import redis
import requests
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from tests.integration.observed_stack import private_broker, start_api, statements
from tests.processes import free_port, start_worker, wait_until

TOKEN = "metrics-token-for-the-tests"


def parse(body: str) -> dict[tuple, float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body) for sample in family.samples}


def scrape(url: str, token: str | None = None) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} from a /metrics page."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = requests.get(url, headers=headers, timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return parse(response.text)


def value(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.fixture(scope="module")
def observed(workdir, gateway):
    folder = workdir / "metrics"
    broker = private_broker()
    env = {"REDIS_URL": broker, "GATEWAY_URL": gateway.base_url, "GATEWAY_TIMEOUT_S": "2"}
    api, url = start_api(folder, {**env, "PROMETHEUS_MULTIPROC_DIR": str(folder / "prom-api"),
                                  "METRICS_TOKEN": TOKEN}, name="metrics-api")
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
    samples = scrape(observed["api"] + "/metrics", TOKEN)
    labels = {"endpoint": "/shows/<show_id>", "method": "GET"}
    # Counted once per request whichever process answered (multiprocess mode), never per raw path.
    assert value(samples, "boxoffice_http_requests_total", **labels, status="200") >= 12
    assert value(samples, "boxoffice_http_requests_total", **labels, status="404") >= 3
    assert value(samples, "boxoffice_http_request_duration_seconds_count", **labels, status="200") >= 12
    assert not any(dict(key[1]).get("endpoint", "").endswith(show["id"]) for key in samples)

    again = scrape(observed["api"] + "/metrics", TOKEN)
    assert value(again, "boxoffice_http_requests_total", **labels, status="404") == \
        value(samples, "boxoffice_http_requests_total", **labels, status="404")


def test_api_reports_bookings_by_status_remaining_seats_and_consistency(app, observed, make_show, customer, wait_for):
    show = make_show(capacity=6)
    response = requests.post(observed["api"] + "/bookings", headers=customer["headers"],
                             json={"show_id": show["id"], "qty": 2, "payment_method": "tok_ok"}, timeout=30)
    assert response.status_code == 202, response.text
    wait_for(response.json()["id"], timeout=90, status="PAID")

    # Bookings and consistency come from the periodic job (services/gauges.py), stored in this
    # API's Redis; it runs here in the test process, against the same database.
    from services import gauges
    with app.app_context():
        gauges.store(redis.Redis.from_url(observed["broker"]), gauges.measure())
    samples = scrape(observed["api"] + "/metrics", TOKEN)
    assert value(samples, "boxoffice_domain_metrics_up") == 1
    assert value(samples, "boxoffice_domain_gauges_available") == 1
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
    client.send_task("payments.charge", args=[[42]], queue="payments")  # not a booking id: a permanent error

    def counted():
        samples = scrape(observed["worker"])
        return samples if (value(samples, "boxoffice_tasks_failed_total", task="payments.charge") or 0) >= 1 else None
    after = wait_until(counted, 60, 0.5, "the failed step to be counted")

    def grew(name, task):
        return (value(after, name, task=task) or 0) - (value(before, name, task=task) or 0)
    for step in ("seats.reserve", "payments.charge", "tickets.make_issuable"):
        assert grew("boxoffice_tasks_started_total", step) >= 1, step
        assert grew("boxoffice_tasks_succeeded_total", step) >= 1, step
    assert grew("boxoffice_tasks_retried_total", "payments.charge") >= 1
    assert grew("boxoffice_tasks_started_total", "payments.charge") >= 3  # first try, retries, the failed one
    assert grew("boxoffice_tasks_failed_total", "seats.reserve") == 0


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


def test_metrics_refuse_a_scrape_without_the_token(observed):
    url = observed["api"] + "/metrics"
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"}):
        response = requests.get(url, headers=headers, timeout=10)
        assert response.status_code == 401, headers
        assert response.json()["code"] == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "boxoffice_" not in response.text
    assert requests.get(observed["api"] + "/healthz", timeout=10).status_code == 200  # the rest is untouched
    assert value(scrape(url, TOKEN), "boxoffice_domain_metrics_up") == 1


BOOKING_TABLES = ("bookings", "payments", "tickets", "mypage_entries")


def test_a_scrape_runs_no_query_on_the_booking_tables_and_serves_the_jobs_values(
        app, worker, make_show, customer, book, wait_for):
    """The consistency queries run in maintenance.measure_consistency (a real worker), never on a
    scrape; the scrape serves what the job stored, with its time."""
    from models import db
    from services import gauges
    redis.Redis.from_url(app.config["REDIS_URL"]).delete(gauges.GAUGES_KEY)

    client = app.test_client()
    with statements(app) as seen:
        samples = parse(client.get("/metrics").get_data(as_text=True))
    assert seen, "the scrape reads the shows"  # the counter does see this process's statements
    assert not [s for s in seen if any(table in s for table in BOOKING_TABLES)], seen
    # No measurement yet: said so, and no made-up zeros.
    assert value(samples, "boxoffice_domain_gauges_available") == 0
    assert not any(name == "boxoffice_consistency_violations" for name, _ in samples)

    show = make_show(capacity=3)
    booking_id = book(customer, show["id"], qty=1).json["id"]
    wait_for(booking_id, status="PAID", ticket_status="ISSUABLE")
    with app.app_context():  # a seat vanishes: the job's next measurement must see it
        db.session.execute(text("UPDATE shows SET remaining = remaining - 1 WHERE id = :id"), {"id": show["id"]})
        db.session.commit()
    try:
        app.extensions["celery"].send_task("maintenance.measure_consistency", queue="maintenance")

        def measured():
            body = parse(client.get("/metrics").get_data(as_text=True))
            return body if value(body, "boxoffice_domain_gauges_available") == 1 else None
        samples = wait_until(measured, 60, 0.2, "the job's measurement on /metrics")
    finally:
        with app.app_context():
            db.session.execute(text("UPDATE shows SET remaining = remaining + 1 WHERE id = :id"), {"id": show["id"]})
            db.session.commit()
            db.session.remove()
    assert value(samples, "boxoffice_consistency_violations", invariant="seats") >= 1
    assert value(samples, "boxoffice_bookings", status="PAID") >= 1
    assert value(samples, "boxoffice_domain_gauges_measured_at_seconds") > 0
    assert value(samples, "boxoffice_domain_gauges_age_seconds") >= 0

    with statements(app) as seen:  # and serving them still runs none of those queries
        client.get("/metrics")
    assert not [s for s in seen if any(table in s for table in BOOKING_TABLES)], seen


def test_a_scrape_answers_when_redis_is_unreachable(app):
    from services import gauges
    previous = app.extensions.get("gauges_redis")
    app.extensions["gauges_redis"] = gauges.redis_client(f"redis://127.0.0.1:{free_port()}/0")
    try:
        response = app.test_client().get("/metrics")
    finally:
        app.extensions["gauges_redis"] = previous
    assert response.status_code == 200
    samples = parse(response.get_data(as_text=True))
    assert value(samples, "boxoffice_domain_gauges_available") == 0
    assert value(samples, "boxoffice_domain_metrics_up") == 1
    assert not any(name == "boxoffice_consistency_violations" for name, _ in samples)
