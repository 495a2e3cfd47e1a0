"""Webhooks through real processes (SPEC §12, RELIABILITY row 17): the booking steps run in the
package's worker, the deliveries in a worker of their own on the webhooks queue, and every
receiver is an HTTP server process. The test plays beat: it runs the delivery sweep twice a second.
"""
import json
from pathlib import Path

import pytest

from models.webhooks import verify_signature
from tests.integration.conftest import sweeping_with
from tests.processes import BIN, ManagedProcess, free_port, start_worker, wait_healthy, wait_until

EVENTS = ["booking.confirmed", "booking.paid", "ticket.issued"]


@pytest.fixture(scope="module")
def notify_worker(workdir, worker_env):
    """The webhooks and mail queues' worker, with retries short enough for a test."""
    env = {**worker_env, "WEBHOOK_RETRY_BASE_S": "0.5", "WEBHOOK_RETRY_MAX_S": "2", "WEBHOOK_TIMEOUT_S": "1",
           "WEBHOOK_CONNECT_TIMEOUT_S": "1", "WEBHOOK_LEASE_S": "10", "SMTP_URL": f"smtp://127.0.0.1:{free_port()}"}
    process = start_worker(workdir, "it-notify-webhooks", env, queues="webhooks", concurrency=2)
    yield process
    process.stop()


@pytest.fixture
def sweeping(app):
    """Beat's webhooks.dispatch_due, run from the test: retries come due and go out."""
    from services import webhooks
    with sweeping_with(app, webhooks.dispatch_due):
        yield


class Receiver:
    def __init__(self, folder: Path, name: str, port: int | None = None, status: int = 200, delay: float = 0):
        self.folder, self.name, self.port = folder, name, port or free_port()
        self.log = folder / f"{name}.jsonl"
        self.status, self.delay = status, delay
        self.process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> "Receiver":
        self.process = ManagedProcess(self.name, [str(BIN / "python"), "-m", "tests.integration.webhook_receiver",
                                                  "--port", str(self.port), "--log", str(self.log),
                                                  "--status", str(self.status), "--delay", str(self.delay)],
                                      self.folder / f"{self.name}.log").start()
        wait_healthy(self.process, f"http://127.0.0.1:{self.port}", 30)
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def received(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def event_ids(self) -> set[str]:
        return {json.loads(request["body"])["id"] for request in self.received()}


def register(app, admin_headers, url: str, events=EVENTS) -> dict:
    response = app.test_client().post("/admin/webhooks", headers=admin_headers, json={"url": url, "events": events})
    assert response.status_code == 201, response.json
    assert response.json["secret"] and response.json["events"] == sorted(events)
    return response.json


def expected_events(app, booking_ids, types=EVENTS) -> dict[str, tuple[str, str]]:
    """The events on record for these bookings: id -> (type, booking id)."""
    from sqlalchemy import select
    from models import db
    from models.events import Event
    with app.app_context():
        rows = db.session.execute(select(Event.id, Event.type, Event.booking_id)
                                  .where(Event.booking_id.in_(booking_ids), Event.type.in_(types))).all()
        db.session.remove()
    return {row.id: (row.type, row.booking_id) for row in rows}


def paid_and_issued(app, customer, make_show, book, wait_for, count: int) -> list[str]:
    show = make_show(capacity=20)
    ids = [book(customer, show["id"]).json["id"] for _ in range(count)]
    for booking_id in ids:
        wait_for(booking_id, status="PAID", ticket_status="ISSUABLE")
        response = app.test_client().post(f"/bookings/{booking_id}/ticket", headers=customer["headers"])
        assert response.status_code in (200, 201), response.json
    return ids


def test_a_receiver_down_then_up_gets_every_event_signed_while_a_live_one_is_not_held_up(
        app, workdir, worker, notify_worker, sweeping, admin_headers, customer, make_show, book, wait_for):
    live = Receiver(workdir, "hooks-live").start()
    hanging = Receiver(workdir, "hooks-hanging", delay=30).start()  # past the 1 s timeout, every time
    down = Receiver(workdir, "hooks-down")  # nothing listens on its port yet
    try:
        endpoints = {name: register(app, admin_headers, receiver.url)
                     for name, receiver in (("live", live), ("hanging", hanging), ("down", down))}
        booking_ids = paid_and_issued(app, customer, make_show, book, wait_for, 3)
        expected = expected_events(app, booking_ids)
        assert sorted(kind for kind, _ in expected.values()) == sorted(EVENTS * 3)

        # The live receiver hears everything promptly while the others time out or refuse.
        wait_until(lambda: live.event_ids() >= set(expected), 30, 0.2, "the live receiver to get every event")
        log = app.test_client().get(f"/admin/webhooks/{endpoints['down']['id']}/deliveries",
                                    headers=admin_headers).json
        assert log and all(d["status"] == "PENDING" for d in log)
        wait_until(lambda: any(d["attempts"] >= 1 for d in app.test_client().get(
            f"/admin/webhooks/{endpoints['down']['id']}/deliveries", headers=admin_headers).json), 30, 0.2,
            "an attempt on the receiver that is down")

        down.start()  # it comes back: every event arrives, each signed with its endpoint's secret
        wait_until(lambda: down.event_ids() >= set(expected), 60, 0.2, "the returning receiver to get every event")
        for name, receiver in (("live", live), ("down", down)):
            for request in receiver.received():
                body = request["body"].encode()
                assert verify_signature(endpoints[name]["secret"], request["headers"]["Boxoffice-Signature"], body)
                assert not verify_signature(endpoints["hanging"]["secret"],
                                            request["headers"]["Boxoffice-Signature"], body)
                event = json.loads(body)
                assert (event["type"], event["data"]["booking_id"]) == expected[event["id"]]
                assert request["headers"]["Boxoffice-Event-Id"] == event["id"]
        paid = [json.loads(r["body"]) for r in down.received() if json.loads(r["body"])["type"] == "booking.paid"]
        assert {event["data"]["status"] for event in paid} == {"PAID"}

        def settled():
            rows = app.test_client().get(f"/admin/webhooks/{endpoints['down']['id']}/deliveries",
                                         headers=admin_headers).json
            return rows if all(d["status"] == "DELIVERED" for d in rows) else None
        rows = wait_until(settled, 30, 0.2, "the returning receiver's deliveries to be DELIVERED")
        retried = [d for d in rows if d["attempts"] > 1]
        assert retried, "some delivery was attempted while the receiver was down"
        for delivery in retried:
            outcomes = [attempt["status_code"] for attempt in delivery["attempt_log"]]
            assert outcomes[-1] == 200 and None in outcomes[:-1]
    finally:
        for receiver in (live, hanging, down):
            receiver.stop()


def test_a_delivery_past_its_retry_window_is_failed_and_an_admin_replays_it(
        app, workdir, worker, notify_worker, sweeping, admin_headers, customer, make_show, book, wait_for):
    from sqlalchemy import text
    from models import db
    broken = Receiver(workdir, "hooks-500", status=500).start()
    try:
        endpoint = register(app, admin_headers, broken.url, ["booking.paid"])
        show = make_show()
        booking_id = book(customer, show["id"]).json["id"]
        wait_for(booking_id, status="PAID")
        deliveries = f"/admin/webhooks/{endpoint['id']}/deliveries"
        wait_until(lambda: app.test_client().get(deliveries, headers=admin_headers).json[0]["attempts"] >= 2,
                   30, 0.2, "retries of the answers 500")
        with app.app_context():  # its 24 hours have passed: the next failure is its last
            db.session.execute(text("UPDATE webhook_deliveries SET retry_until = now() WHERE endpoint_id = :id"),
                               {"id": endpoint["id"]})
            db.session.commit()

        def failed():
            rows = app.test_client().get(deliveries, headers=admin_headers).json
            return rows[0] if rows and rows[0]["status"] == "FAILED" else None
        delivery = wait_until(failed, 60, 0.2, "the delivery to be given up")
        assert delivery["attempts"] >= 2 and delivery["last_status_code"] == 500
        assert all(attempt["status_code"] == 500 for attempt in delivery["attempt_log"])
        assert delivery["failed_at"]

        broken.stop()
        fixed = Receiver(workdir, "hooks-fixed", port=broken.port).start()
        try:
            replay = app.test_client().post(f"/admin/webhooks/deliveries/{delivery['id']}/retry",
                                            headers=admin_headers)
            assert replay.status_code == 202 and replay.json["status"] == "PENDING"
            wait_until(lambda: fixed.event_ids() == {delivery["event_id"]}, 30, 0.2, "the replayed delivery")
            again = app.test_client().get(deliveries, headers=admin_headers).json[0]
            wait_until(lambda: app.test_client().get(deliveries, headers=admin_headers).json[0]["status"]
                       == "DELIVERED", 30, 0.2, "the replay to be recorded")
            assert again["event_id"] == delivery["event_id"]
        finally:
            fixed.stop()
    finally:
        broken.stop()


def test_endpoints_are_http_urls_and_admins_only(app, admin_headers, customer):
    client = app.test_client()
    for url in ("ftp://example.com/hook", "file:///etc/passwd", "http://", "javascript:alert(1)"):
        response = client.post("/admin/webhooks", headers=admin_headers, json={"url": url, "events": ["booking.paid"]})
        assert response.status_code == 422, url
    response = client.post("/admin/webhooks", headers=admin_headers,
                           json={"url": "http://127.0.0.1:9/hook", "events": ["booking.shipped"]})
    assert response.status_code == 422
    assert client.post("/admin/webhooks", headers=customer["headers"],
                       json={"url": "http://127.0.0.1:9/hook", "events": ["booking.paid"]}).status_code == 403
    app.config["WEBHOOK_REFUSE_PRIVATE"] = True
    try:
        for url in ("http://127.0.0.1:8000/hook", "http://10.0.0.5/hook", "http://[::1]/hook",
                    "http://169.254.169.254/latest/meta-data", "http://localhost/hook"):
            response = client.post("/admin/webhooks", headers=admin_headers,
                                   json={"url": url, "events": ["booking.paid"]})
            assert response.status_code == 422, url
    finally:
        app.config["WEBHOOK_REFUSE_PRIVATE"] = False
    created = register(app, admin_headers, "http://127.0.0.1:9/hook", ["booking.paid"])
    listed = client.get("/admin/webhooks", headers=admin_headers).json
    assert created["id"] in {e["id"] for e in listed} and all("secret" not in e for e in listed)
    assert client.delete(f"/admin/webhooks/{created['id']}", headers=admin_headers).status_code == 204
    assert client.get(f"/admin/webhooks/{created['id']}", headers=admin_headers).status_code == 404
    assert client.get(f"/admin/webhooks/{created['id']}/deliveries", headers=admin_headers).status_code == 200
    assert client.get("/admin/webhooks/no-such-endpoint/deliveries", headers=admin_headers).status_code == 404


def test_metrics_show_pending_and_failed_deliveries_and_the_oldest_age_per_endpoint(
        app, worker, notify_worker, admin_headers, customer, make_show, book, wait_for):
    import redis
    from prometheus_client.parser import text_string_to_metric_families
    from services import gauges

    nobody = register(app, admin_headers, f"http://127.0.0.1:{free_port()}/hook", ["booking.paid"])
    booking_id = book(customer, make_show()["id"]).json["id"]
    wait_for(booking_id, status="PAID")
    with app.app_context():  # beat's measurement, made here
        gauges.store(redis.Redis.from_url(app.config["REDIS_URL"]), gauges.measure())
    text = app.test_client().get("/metrics").get_data(as_text=True)
    samples = {(sample.name, sample.labels.get("endpoint")): sample.value
               for family in text_string_to_metric_families(text) for sample in family.samples}
    assert samples[("boxoffice_webhook_deliveries_pending", nobody["id"])] == 1
    assert samples[("boxoffice_webhook_deliveries_failed", nobody["id"])] == 0
    assert samples[("boxoffice_webhook_oldest_pending_age_seconds", nobody["id"])] > 0
    violations = {sample.labels["invariant"]: sample.value for family in text_string_to_metric_families(text)
                  for sample in family.samples if sample.name == "boxoffice_consistency_violations"}
    assert violations["events_not_delivered"] == 0 and violations["mails_missing"] == 0
    app.test_client().delete(f"/admin/webhooks/{nobody['id']}", headers=admin_headers)


def test_a_delivery_whose_message_was_lost_is_sent_by_the_sweep(
        app, workdir, worker, notify_worker, sweeping, admin_headers, customer, make_show, book, wait_for):
    """The broker lost the message (Redis restarted empty, or down at the hand-over): the row is
    the record, and the sweep sends it once its hand-over is stale."""
    from sqlalchemy import text
    from models import db
    receiver = Receiver(workdir, "hooks-lost").start()
    try:
        booking_id = book(customer, make_show()["id"]).json["id"]
        wait_for(booking_id, status="PAID")
        endpoint = register(app, admin_headers, receiver.url, ["booking.paid"])  # after the event: no delivery
        (event_id,) = expected_events(app, [booking_id], ["booking.paid"])
        with app.app_context():  # a delivery handed to the broker an hour ago, whose message is gone
            db.session.execute(text("""
                INSERT INTO webhook_deliveries (event_id, endpoint_id, status, attempts, next_attempt_at,
                                                retry_until, queued_at, created_at)
                VALUES (:event, :endpoint, 'PENDING', 0, now(), now() + interval '1 day',
                        now() - interval '1 hour', now())"""), {"event": event_id, "endpoint": endpoint["id"]})
            db.session.commit()
            db.session.remove()
        wait_until(lambda: receiver.event_ids() == {event_id}, 30, 0.2, "the sweep to send the lost delivery")
    finally:
        receiver.stop()
