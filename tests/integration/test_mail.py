"""Customer mail through real processes (SPEC §12): the booking steps in the package's worker, the
mail in a worker of its own on the mail queue, and the SMTP server the local sink
(stack/mail_sink.py) as its own process: down at first, then refusing (451), then accepting. The
test plays beat: it runs the mail sweep twice a second."""
import secrets
from collections import Counter
from email import message_from_bytes
from email.policy import default as default_policy

import pytest
from sqlalchemy import select

from tests.integration.conftest import bearer, sweeping_with
from tests.processes import BIN, ManagedProcess, free_port, start_worker, wait_until


@pytest.fixture(scope="module")
def smtp_port():
    return free_port()


@pytest.fixture(scope="module")
def mail_worker(workdir, worker_env, smtp_port):
    env = {**worker_env, "SMTP_URL": f"smtp://127.0.0.1:{smtp_port}", "SMTP_TIMEOUT_S": "2",
           "MAIL_RETRY_BASE_S": "0.5", "MAIL_RETRY_MAX_S": "2", "MAIL_LEASE_S": "10"}
    process = start_worker(workdir, "it-notify-mail", env, queues="mail", concurrency=2)
    yield process
    process.stop()


@pytest.fixture
def sweeping(app):
    from services import mail
    with sweeping_with(app, mail.dispatch_due):
        yield


def registered(app, locale: str | None) -> dict:
    client = app.test_client()
    email = f"m-{secrets.token_hex(6)}@example.com"
    body = {"email": email, "password": "password-1", "name": "Lee", **({"locale": locale} if locale else {})}
    user = client.post("/auth/register", json=body)
    assert user.status_code == 201 and user.json["locale"] == (locale or "ko")
    token = client.post("/auth/token", json={"email": email, "password": "password-1"}).json["access_token"]
    return {"headers": bearer(token), "id": user.json["id"], "email": email}


def mails_of(app, booking_ids):
    from models import db
    from models.mail import Mail
    with app.app_context():
        rows = db.session.scalars(select(Mail).where(Mail.booking_id.in_(booking_ids))).all()
        found = {row.event_id: (row.kind, row.status, row.attempts, row.recipient) for row in rows}
        db.session.remove()
    return found


def stored(folder) -> list:
    return [message_from_bytes(path.read_bytes(), policy=default_policy) for path in sorted(folder.glob("*.eml"))]


def test_an_smtp_server_down_then_refusing_then_accepting_gets_each_mail_exactly_once(
        app, workdir, worker, mail_worker, sweeping, smtp_port, make_show, book, wait_for):
    english, korean = registered(app, "en"), registered(app, None)
    show = make_show(capacity=3)
    paid = [book(english, show["id"], qty=1).json["id"], book(korean, show["id"], qty=2).json["id"]]
    for booking_id in paid:
        wait_for(booking_id, status="PAID")
    rejected = book(english, show["id"], qty=1).json["id"]  # sold out
    wait_for(rejected, status="REJECTED")
    ids = [*paid, rejected]

    # Nothing listens: every mail waits, none is lost, none is marked sent.
    wait_until(lambda: len(mails_of(app, ids)) == 3 and all(a >= 1 for _, _, a, _ in mails_of(app, ids).values()),
               30, 0.2, "an attempt of every mail while the SMTP server is down")
    assert {status for _, status, _, _ in mails_of(app, ids).values()} == {"PENDING"}

    folder = workdir / "mail-sink"
    sink = ManagedProcess("mail-sink", [str(BIN / "python"), "-m", "stack.mail_sink", "--port", str(smtp_port),
                                        "--dir", str(folder), "--refuse", "2"], workdir / "mail-sink.log").start()
    try:
        sink.wait_for_log("mail sink listening", 30)
        wait_until(lambda: {s for _, s, _, _ in mails_of(app, ids).values()} == {"SENT"}, 60, 0.2,
                   "every mail to be sent once the SMTP server accepts")
        mails = mails_of(app, ids)
        # (Mail of other tests' bookings may reach this sink too: only this test's are counted.)
        messages = [message for message in stored(folder) if message["Boxoffice-Event-Id"] in mails]
        by_event = Counter(message["Boxoffice-Event-Id"] for message in messages)
        assert by_event == Counter(set(mails)), "each event's mail arrived exactly once"
        assert len({message["Message-ID"] for message in messages}) == len(messages) == 3
        assert sum(attempts for _, _, attempts, _ in mails.values()) >= 4, "tried while down, and again"

        for message in messages:
            kind, _, _, recipient = mails[message["Boxoffice-Event-Id"]]
            assert message["To"] == recipient
            plain = message.get_body(("plain",)).get_content()
            html = message.get_body(("html",)).get_content()
            if recipient == english["email"]:
                expected = {"paid": "Your booking is confirmed", "rejected": "We could not book"}[kind]
                assert message["Subject"].startswith(expected)
            else:
                assert kind == "paid" and message["Subject"].startswith("예매가 완료")
            if kind == "paid":
                booking_id = next(b for b in paid if b in plain)
                assert f"/bookings/{booking_id}/ticket" in plain and f"/bookings/{booking_id}/ticket" in html
        assert sorted(kind for kind, *_ in mails.values()) == ["paid", "paid", "rejected"]
    finally:
        sink.stop()


def test_a_mail_is_recorded_once_per_event_even_when_its_step_runs_twice(app, worker, make_show, book, wait_for,
                                                                          customer):
    """The mail row is keyed by the event: a second sweep or a duplicate message cannot add one."""
    from models import db
    from models.events import Event
    from models.mail import record_mails
    show = make_show()
    booking_id = book(customer, show["id"]).json["id"]
    wait_for(booking_id, status="PAID")
    with app.app_context():
        event_id = db.session.scalar(select(Event.id).where(Event.booking_id == booking_id,
                                                             Event.type == "booking.paid"))
        assert record_mails([event_id], 60) == []  # already there
        db.session.rollback()
    assert list(mails_of(app, [booking_id])) == [event_id]
