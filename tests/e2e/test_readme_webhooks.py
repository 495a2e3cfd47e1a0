"""The README's webhooks part, against the stack as the run command starts it (the notify worker,
beat's sweeps, the mail sink): an admin registers a webhook whose receiver is not up yet, a new
customer (in English) books, pays and issues the ticket; the receiver comes up later and still
gets the signed booking.paid and ticket.issued; the customer's mail is in the sink's folder."""
import json
import subprocess
import sys
from email import message_from_bytes
from email.policy import default as default_policy

from models.webhooks import verify_signature
from tests.e2e.test_readme_flow import bearer, create_admin_with_the_cli, token, wait_for_booking
from tests.processes import ROOT, free_port, wait_until

RECEIVER = ["-m", "tests.integration.webhook_receiver"]


def test_a_webhook_registered_before_its_receiver_is_up_gets_the_signed_events_and_the_mail_is_in_the_sink(
        stack, api, tmp_path):
    create_admin_with_the_cli(stack, "hooks-admin@example.com", "hooks-password")
    admin = bearer(token(api, "hooks-admin@example.com", "hooks-password"))
    port = free_port()
    hook = api.post("/admin/webhooks", headers=admin, json={"url": f"http://127.0.0.1:{port}/events",
                                                           "events": ["booking.paid", "ticket.issued"]})
    assert hook.status_code == 201, hook.text
    hook = hook.json()

    registered = api.post("/auth/register", json={"email": "jones@example.com", "password": "jones-password",
                                                  "name": "Jones", "locale": "en"})
    assert registered.status_code == 201 and registered.json()["locale"] == "en"
    jones = bearer(token(api, "jones@example.com", "jones-password"))
    show = api.post("/shows", headers=admin, json={"title": "Macbeth", "venue": "Hall", "price": 30000,
                                                   "starts_at": "2030-01-01T19:00:00+09:00", "capacity": 10}).json()
    booking_id = api.post("/bookings", headers=jones, json={"show_id": show["id"], "qty": 1,
                                                            "payment_method": "tok_ok"}).json()["id"]
    wait_for_booking(api, jones, booking_id, status="PAID", ticket_status="ISSUABLE")
    assert api.post(f"/bookings/{booking_id}/ticket", headers=jones).status_code == 200

    def tried():
        rows = api.get(f"/admin/webhooks/{hook['id']}/deliveries", headers=admin).json()
        # One delivery at a time tries an endpoint that is failing: the other waits untried.
        return rows if len(rows) == 2 and any(row["attempts"] >= 1 for row in rows) else None
    assert {row["status"] for row in wait_until(tried, 60, 0.5, "an attempt on the receiver that is down")} \
        == {"PENDING"}

    log = tmp_path / "received.jsonl"
    receiver = subprocess.Popen([sys.executable, *RECEIVER, "--port", str(port), "--log", str(log)], cwd=ROOT)
    try:
        def received():
            # This booking's events: another walk-through's booking paid only now would come too.
            lines = [json.loads(line) for line in (log.read_text().splitlines() if log.exists() else [])]
            ours = [r for r in lines if json.loads(r["body"])["data"].get("booking_id") == booking_id]
            return ours if len(ours) >= 2 else None
        requests_ = wait_until(received, 120, 0.5, "the receiver that came up later to get both events")
    finally:
        receiver.terminate()
        receiver.wait(10)
    events = {json.loads(r["body"])["type"]: r for r in requests_}
    assert set(events) == {"booking.paid", "ticket.issued"}
    for request in requests_:
        assert verify_signature(hook["secret"], request["headers"]["Boxoffice-Signature"], request["body"].encode())
        assert json.loads(request["body"])["data"]["booking_id"] == booking_id

    folder = stack.data_dir / "mail"

    def mailed():
        for path in folder.glob("*.eml"):
            message = message_from_bytes(path.read_bytes(), policy=default_policy)
            if booking_id in message.get_body(("plain",)).get_content():
                return message
    message = wait_until(mailed, 60, 0.5, "the customer's mail in the sink's folder")
    assert message["To"] == "jones@example.com" and message["Subject"].startswith("Your booking is confirmed")
