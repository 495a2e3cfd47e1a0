"""The chaos run's partner and customer's inbox (SPEC §12): a webhook receiver of its own, registered
for every event type, that a fault takes down (it answers 503 while down), and the stack's mail
sink, which a fault freezes (SIGSTOP: the SMTP server hangs) while worker-notify is SIGKILLed on
another. After the run:

- webhook_events_missed: events recorded after the endpoint that never reached it with a valid
  signature (at least once is the promise; repeats are allowed and counted, not judged);
- webhook_bad_signatures: deliveries whose Boxoffice-Signature does not verify with the secret;
- mails_lost: mail rows (one per event a customer is told of) with no message in the sink;
- mails_doubled: events whose messages in the sink carry more than one Message-ID (two mails);
  the same Message-ID twice is a resend after a crash between the server's accept and our
  record of it, recognisable as one mail (mail_resends, reported, not a failure).
"""
from __future__ import annotations

import json
import logging
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

log = logging.getLogger("chaos")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Receiver:
    """A partner's webhook endpoint, in the harness's process."""

    def __init__(self):
        self.port = free_port()
        self.down = threading.Event()
        self.secret: str | None = None
        self.received: Counter = Counter()  # event id -> deliveries with a valid signature
        self.bad_signatures = 0
        self.refused = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.down.is_set():
                    with receiver._lock:
                        receiver.refused += 1
                    self._answer(503)
                    return
                receiver.record(self.headers.get("Boxoffice-Signature", ""), body)
                self._answer(200)

            def _answer(self, status):
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/boxoffice"

    def start(self):
        self.thread.start()

    def stop(self):
        self.server.shutdown()

    def record(self, header: str, body: bytes) -> None:
        from models.webhooks import verify_signature
        valid = self.secret is not None and verify_signature(self.secret, header, body)
        with self._lock:
            if not valid:
                self.bad_signatures += 1
                return
            self.received[json.loads(body)["id"]] += 1


def register(api, admin: dict, receiver: Receiver) -> str:
    from models.events import EventType
    answer = api.call("POST", "/admin/webhooks", headers=admin, ok=(201,),
                      json_body={"url": receiver.url, "events": [str(kind) for kind in EventType]})
    receiver.secret = answer.json()["secret"]
    return answer.json()["id"]


def unfinished(app) -> int:
    """Deliveries and mails still to go (the run is quiet only when both are 0)."""
    from sqlalchemy import text

    from models import db
    with app.app_context():
        try:
            return db.session.execute(text(
                "SELECT (SELECT count(*) FROM webhook_deliveries WHERE status = 'PENDING')"
                " + (SELECT count(*) FROM mails WHERE status = 'PENDING')")).scalar_one()
        finally:
            db.session.remove()


def problems(app, endpoint_id: str, receiver: Receiver, mail_dir: Path) -> dict:
    from sqlalchemy import text

    from models import db
    with app.app_context():
        try:
            wanted = list(db.session.scalars(text(
                "SELECT e.id FROM events e JOIN webhook_endpoints w ON w.id = :endpoint"
                " WHERE e.created_at >= w.created_at ORDER BY e.created_at"), {"endpoint": endpoint_id}))
            mails = dict(db.session.execute(text("SELECT event_id, status FROM mails")).all())
        finally:
            db.session.remove()
    missed = [event_id for event_id in wanted if receiver.received[event_id] == 0]
    message_ids: dict[str, set[str]] = {}
    files = Counter()
    for path in mail_dir.glob("*.eml"):
        # <time received>-<Message-ID>.eml (stack/mail_sink.py); the time has no "-", the id is <event id>@<domain>
        message_id = path.name.split("-", 1)[1].removesuffix(".eml")
        event_id = message_id.split("@", 1)[0]
        message_ids.setdefault(event_id, set()).add(message_id)
        files[message_id] += 1
    lost = [event_id for event_id, status in mails.items() if status != "SENT" or event_id not in message_ids]
    doubled = [event_id for event_id, ids in message_ids.items() if len(ids) > 1]
    return {
        "webhook_events": len(wanted),
        "webhook_deliveries_received": sum(receiver.received.values()),
        "webhook_refused_while_down": receiver.refused,
        "webhook_events_missed": len(missed),
        "webhook_bad_signatures": receiver.bad_signatures,
        "mails": len(mails),
        "mails_lost": len(lost),
        "mails_doubled": len(doubled),
        "mail_resends": sum(count - 1 for count in files.values()),
        "missed_examples": missed[:5] + lost[:5],
    }
