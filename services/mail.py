"""Customer mail (SPEC §12): a booking PAID (with the ticket link), REJECTED, PAYMENT_FAILED or
CANCELLED (with the refund) is mailed to its customer, in their language (`locale`: ko or en),
as plain text and HTML from the templates in services/mail_templates/.

One mail per event (models/mail.py: the event id is the row's key). A send is three short steps:
claim the row (its next attempt moves a lease ahead, committed), hand the message to the SMTP
server, mark it SENT. While the server is down or answers 4xx, the row waits with backoff and
is sent once it is back; a 5xx refusal of the recipient is final (FAILED). A worker that dies
after the server took the message but before SENT was committed sends it again after the lease,
with the same Message-ID (derived from the event id), so the copy is recognisable as the same
mail: that window, not a duplicate per retry, is the only way a customer sees one twice.
"""
from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from pathlib import Path
from urllib.parse import unquote, urlsplit

from flask import current_app
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from models import db
from models.mail import DEFAULT_LOCALE, LOCALES, claim_mail, due_mails, mark_not_sent, mark_sent, message_id_for
from models.webhooks import backoff_delay
from services.events import Announced

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "mail_templates"
REQUEUE_AFTER_S = 300

_templates = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined,
                         autoescape=select_autoescape(["html"]), keep_trailing_newline=True)


def render(kind: str, locale: str, context: dict) -> tuple[str, str, str]:
    """(subject, plain text, HTML) of a mail of this kind in this language."""
    locale = locale if locale in LOCALES else DEFAULT_LOCALE
    subject = _templates.get_template(f"{locale}/{kind}.subject.txt").render(context).strip()
    plain = _templates.get_template(f"{locale}/{kind}.txt").render(context)
    html = _templates.get_template(f"{locale}/{kind}.html").render(context)
    return subject, plain, html


def compose(mail, config) -> EmailMessage:
    """The message of a mail row, from its event's data (the booking as that event committed it)."""
    data = mail.event.data
    public_url = config["PUBLIC_URL"].rstrip("/")
    context = {
        "name": mail.name, "booking_id": mail.booking_id, "qty": data.get("qty"), "amount": data.get("amount", 0),
        "seats": data.get("seats") or [], "reject_reason": data.get("reject_reason"),
        "cancellation_fee": data.get("cancellation_fee", 0), "refunded_amount": data.get("refunded_amount", 0),
        "ticket_link": f"{public_url}/bookings/{mail.booking_id}/ticket",
        "booking_link": f"{public_url}/bookings/{mail.booking_id}",
    }
    subject, plain, html = render(mail.kind, mail.locale, context)
    sender = config["MAIL_FROM"]
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = mail.recipient
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id_for(mail.event_id, _domain(sender))
    message["Boxoffice-Event-Id"] = mail.event_id
    message.set_content(plain)
    message.add_alternative(html, subtype="html")
    return message


def _domain(sender: str) -> str:
    address = parseaddr(sender)[1]
    return address.rpartition("@")[2] or "boxoffice.invalid"


class SmtpServer:
    """The SMTP adapter: smtp://host:port (plain), smtp+starttls://, smtps://; user:password@ logs in."""

    def __init__(self, url: str, timeout: float):
        parts = urlsplit(url)
        self.scheme, self.host, self.timeout = parts.scheme, parts.hostname or "127.0.0.1", timeout
        self.port = parts.port or {"smtps": 465}.get(parts.scheme, 25)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None

    def send(self, message: EmailMessage) -> None:
        if self.scheme == "smtps":
            client = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with client:
            if self.scheme == "smtp+starttls":
                client.starttls(context=ssl.create_default_context())
            if self.username:
                client.login(self.username, self.password or "")
            client.send_message(message)


def send(event_id: str) -> str:
    """Send the mail of one event, if it is due."""
    config = current_app.config
    mail = claim_mail(event_id, config["MAIL_LEASE_S"])
    if mail is None:
        db.session.commit()
        return "not due"
    attempt = mail.attempts
    db.session.commit()  # the claim: a worker that dies from here on leaves the mail due after the lease
    try:
        message = compose(mail, config)
    except Exception as error:  # a template bug: retrying would only repeat it; the row says why
        log.exception("mail for event %s could not be composed", event_id)
        _not_sent(event_id, attempt, f"could not compose: {error!r}", config, permanent=True)
        return "failed"
    try:
        SmtpServer(config["SMTP_URL"], config["SMTP_TIMEOUT_S"]).send(message)
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as error:
        permanent = _permanent(error)
        _not_sent(event_id, attempt, repr(error), config, permanent=permanent)
        return "refused" if permanent else "deferred"
    except (OSError, smtplib.SMTPException) as error:  # down, timeout, 4xx: try again later
        _not_sent(event_id, attempt, repr(error), config)
        return "deferred"
    mark_sent(event_id, message["Message-ID"])
    db.session.commit()
    log.info("mail %s sent for event %s (attempt %d)", mail.kind, event_id, attempt, extra={"event_id": event_id})
    return "sent"


def _permanent(error: smtplib.SMTPException) -> bool:
    """A 5xx answer is final; a 4xx one says "try later"."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in error.recipients.values())
    return getattr(error, "smtp_code", 0) >= 500


def _not_sent(event_id: str, attempt: int, error: str, config, *, permanent: bool = False) -> None:
    delay = backoff_delay(attempt, config["MAIL_RETRY_BASE_S"], config["MAIL_RETRY_MAX_S"])
    mark_not_sent(event_id, attempt, error, delay, permanent=permanent)
    db.session.commit()
    log.warning("mail for event %s not sent (attempt %d): %s", event_id, attempt, error, extra={"event_id": event_id})


def dispatch_due(limit: int = 500) -> int:
    """The sweep (beat): hand over every mail that is due and on no queue."""
    ids = due_mails(REQUEUE_AFTER_S, limit)
    db.session.commit()
    publisher = current_app.extensions.get("step_publisher")
    if ids and publisher is not None:
        publisher.announce(Announced([], ids))
    return len(ids)
