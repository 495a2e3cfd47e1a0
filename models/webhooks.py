"""Webhook endpoints and their deliveries (SPEC §12): who hears of which events, and every
attempt to tell them.

An endpoint is a URL and the event types it wants, with a secret of its own. Every event an
endpoint wants gets one delivery row, written in the transaction that wrote the event
(`fan_out`); the row is the delivery's durable schedule (`next_attempt_at`), its attempt count
and its outcome: PENDING until a 2xx answer (DELIVERED), or until its retry window
(`retry_until`, at least 24 hours) has passed without one (FAILED: the dead-letter record an admin
replays).

Deliveries are isolated per endpoint: a failing endpoint is backed off as a whole (`retry_at`),
and while it is, only one of its deliveries at a time probes it; the others wait in the
database, not in a worker. So a receiver that times out or answers 500 for an hour costs the
workers one short attempt per backoff step, and the other endpoints' deliveries never wait
behind it.

Signatures follow the payment providers' scheme: `Boxoffice-Signature: t=<unix>,v1=<hex>`, the
HMAC-SHA256 of "<t>.<body>" with the endpoint's secret (`signature_header`, `verify_signature`).
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import random
import secrets
import socket
import time
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from sqlalchemy import (
    BigInteger, CheckConstraint, DateTime, ForeignKey, Identity, Index, Integer, String, Text,
    UniqueConstraint, func, select, text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.database import db, new_id, utc_now
from models.errors import Conflict, InvalidInput, NotFound
from models.events import Event, EventType


SIGNATURE_HEADER = "Boxoffice-Signature"


class DeliveryStatus(StrEnum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


class WebhookEndpoint(db.Model):
    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(ARRAY(String(32)))
    secret: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now, server_default=func.now())
    # Deleted endpoints keep their deliveries as the log; they get no new ones.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # While the endpoint fails: since when, how many attempts in a row, and when it may be tried
    # again (by one delivery at a time).
    failing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    retry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookDelivery(db.Model):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_deliveries_event_endpoint"),
        CheckConstraint("status IN (" + ", ".join(f"'{s}'" for s in DeliveryStatus) + ")", name="status_known"),
        Index("ix_webhook_deliveries_due", "next_attempt_at", postgresql_where=text("status = 'PENDING'")),
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
        Index("ix_webhook_deliveries_failed", "endpoint_id", postgresql_where=text("status = 'FAILED'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"))
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The durable timer: when the next attempt is due. A claimed attempt moves it a lease ahead,
    # so a worker that dies mid-request leaves the delivery due again, not lost.
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    retry_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # When a message for it was last sent to the broker; cleared when a worker takes it. A due
    # delivery with none (or a stale one: a lost message) is sent again by the sweep.
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now, server_default=func.now())

    event: Mapped[Event] = relationship(lazy="joined", innerjoin=True)
    endpoint: Mapped[WebhookEndpoint] = relationship(lazy="joined", innerjoin=True)
    attempt_log: Mapped[list["DeliveryAttempt"]] = relationship(
        order_by="DeliveryAttempt.id", lazy="selectin", back_populates="delivery")

    @property
    def event_type(self) -> str:
        return self.event.type


class DeliveryAttempt(db.Model):
    """One POST to an endpoint and what came of it."""
    __tablename__ = "webhook_delivery_attempts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    attempted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)

    delivery: Mapped[WebhookDelivery] = relationship(back_populates="attempt_log")

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


# -- signing ------------------------------------------------------------------------------------

def new_secret() -> str:
    return "whsec_" + secrets.token_hex(24)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of "<t>.<body>" with the endpoint's secret."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def verify_signature(secret: str, header: str, body: bytes, *, tolerance_s: float = 300,
                     now: float | None = None) -> bool:
    """What a receiver checks: a v1 signature of this body with the secret, made within
    tolerance_s of now (an old delivery replayed by someone else is refused)."""
    try:
        fields = [part.split("=", 1) for part in header.split(",")]
        timestamp = int(next(value for key, value in fields if key == "t"))
    except (ValueError, StopIteration):
        return False
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body)
    return any(key == "v1" and hmac.compare_digest(value, expected) for key, value in fields)


# -- retries ------------------------------------------------------------------------------------

def backoff_delay(failures: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Seconds before the next try after `failures` failures in a row: exponential (base, 2 base,
    4 base …) capped at max_s, with "equal jitter" (half of it random) so that receivers coming
    back are not hit by every sender at the same second, while the wait still grows."""
    ceiling = min(max_s, base_s * 2 ** max(0, failures - 1))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


# -- endpoints ----------------------------------------------------------------------------------

def check_url(url: str, *, refuse_private: bool) -> str:
    """An endpoint URL must be http(s) with a host; with refuse_private (production), its host
    must resolve to public addresses only (no loopback, private, link-local or reserved ranges),
    so a webhook cannot be aimed at the internal network."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("a webhook URL must be http(s) with a host", {"url": ["must be an http(s) URL"]})
    if parts.username or parts.password:
        raise InvalidInput("a webhook URL carries no credentials", {"url": ["must not contain user:password@"]})
    try:
        parts.port
    except ValueError:
        raise InvalidInput("the URL's port is not a number", {"url": ["invalid port"]}) from None
    if refuse_private:
        reason = private_address_reason(parts.hostname)
        if reason:
            raise InvalidInput(f"webhooks may not reach internal addresses ({reason})",
                               {"url": ["resolves to an internal address"]})
    return url


def private_address_reason(host: str) -> str | None:
    """Why this host is internal (one of its addresses is not global), or None if it is public.
    A host that does not resolve is refused too: nothing can be said of it."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return f"{host} does not resolve"
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if not address.is_global or address.is_multicast:
            return f"{host} is {address}"
    return None


def create_endpoint(url: str, events: list[str], *, refuse_private: bool) -> WebhookEndpoint:
    """Add an endpoint (the caller commits); it hears of events recorded from now on."""
    check_url(url, refuse_private=refuse_private)
    types = sorted({str(EventType(event)) for event in events})
    if not types:
        raise InvalidInput("an endpoint wants at least one event type", {"events": ["must not be empty"]})
    endpoint = WebhookEndpoint(id=new_id(), url=url, events=types, secret=new_secret(), consecutive_failures=0)
    db.session.add(endpoint)
    return endpoint


def get_endpoint(endpoint_id: str, *, deleted_too: bool = False) -> WebhookEndpoint:
    endpoint = db.session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or (endpoint.deleted_at is not None and not deleted_too):
        raise NotFound("webhook endpoint not found")
    return endpoint


def list_endpoints() -> list[WebhookEndpoint]:
    return list(db.session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.deleted_at.is_(None))
                                   .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)))


def delete_endpoint(endpoint_id: str) -> None:
    """No new deliveries; pending ones are dropped as FAILED; the log stays."""
    endpoint = get_endpoint(endpoint_id)
    endpoint.deleted_at = utc_now()
    db.session.execute(text("""
        UPDATE webhook_deliveries SET status = 'FAILED', failed_at = now(), last_error = 'endpoint deleted'
        WHERE endpoint_id = :id AND status = 'PENDING'"""), {"id": endpoint_id})


# -- deliveries ---------------------------------------------------------------------------------

# Every event to every live endpoint that wants its type, in the transaction that wrote the event.
_FAN_OUT = text("""
    INSERT INTO webhook_deliveries (event_id, endpoint_id, status, attempts, next_attempt_at, retry_until,
                                    queued_at, created_at)
    SELECT e.id, w.id, 'PENDING', 0, now(), now() + make_interval(secs => :retry_for_s), now(), now()
    FROM events e JOIN webhook_endpoints w ON e.type = ANY(w.events) AND w.deleted_at IS NULL
    WHERE e.id = ANY(CAST(:ids AS varchar[]))
    ON CONFLICT DO NOTHING
    RETURNING id
""")


def fan_out(event_ids: list[str], retry_for_s: float) -> list[int]:
    """Write the deliveries of these events; returns their ids (to publish after commit)."""
    if not event_ids:
        return []
    return list(db.session.scalars(_FAN_OUT, {"ids": event_ids, "retry_for_s": retry_for_s}))


class Claim:
    """A delivery attempt a worker may make now: the endpoint, the body, the attempt number."""

    def __init__(self, delivery: WebhookDelivery):
        self.delivery_id = delivery.id
        self.attempt = delivery.attempts
        self.url = delivery.endpoint.url
        self.secret = delivery.endpoint.secret
        self.event_id = delivery.event_id
        self.payload = delivery.event.payload()
        self.endpoint_failures = delivery.endpoint.consecutive_failures  # in a row, before this one


def claim_delivery(delivery_id: int, lease_s: float) -> Claim | None:
    """Take one due delivery for an attempt now, or None: not due, settled, held by another
    worker, or its endpoint backed off (then it waits in the database for the endpoint's next
    try). A failing endpoint is probed by one delivery at a time. The caller commits at once."""
    delivery = db.session.scalar(select(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
                                 .with_for_update(skip_locked=True, of=WebhookDelivery))
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return None
    now = utc_now()
    delivery.queued_at = None  # taken off the queue: the sweep may send it again once due
    if delivery.next_attempt_at > now:
        return None
    endpoint = delivery.endpoint
    if endpoint.failing_since is not None:
        # Only the first to come after retry_at probes; the lease keeps the others waiting.
        probe = db.session.execute(text("""
            UPDATE webhook_endpoints SET retry_at = :lease WHERE id = :id AND (retry_at IS NULL OR retry_at <= :now)
        """), {"id": endpoint.id, "now": now, "lease": now + timedelta(seconds=lease_s)}).rowcount
        if not probe:
            return None
    delivery.attempts += 1
    delivery.next_attempt_at = now + timedelta(seconds=lease_s)
    return Claim(delivery)


def record_attempt(claim: Claim, status_code: int | None, error: str | None, duration_ms: int,
                   delay_s: float) -> list[int]:
    """Record the outcome of a claimed attempt (the caller commits). A 2xx delivers it and
    clears its endpoint's backoff: returns the endpoint's deliveries that waited on it, due now.
    Anything else backs the endpoint off by delay_s; past its retry window the delivery FAILED."""
    now = utc_now()
    db.session.add(DeliveryAttempt(delivery_id=claim.delivery_id, attempted_at=now, status_code=status_code,
                                   error=error, duration_ms=duration_ms))
    delivery = db.session.get(WebhookDelivery, claim.delivery_id, with_for_update=True, populate_existing=True)
    if delivery.status != DeliveryStatus.PENDING or delivery.attempts != claim.attempt:
        return []  # settled or taken again meanwhile (an attempt that outlived its lease)
    endpoint = db.session.get(WebhookEndpoint, delivery.endpoint_id, with_for_update=True, populate_existing=True)
    delivery.last_status_code, delivery.last_error = status_code, error
    if status_code is not None and 200 <= status_code < 300:
        delivery.status, delivery.delivered_at = DeliveryStatus.DELIVERED, now
        if endpoint.failing_since is None:
            return []
        endpoint.failing_since, endpoint.retry_at, endpoint.consecutive_failures = None, None, 0
        return list(db.session.scalars(text("""
            UPDATE webhook_deliveries SET next_attempt_at = :now, queued_at = :now
            WHERE endpoint_id = :id AND status = 'PENDING' AND id <> :this AND queued_at IS NULL
            RETURNING id"""), {"now": now, "id": endpoint.id, "this": delivery.id}))
    endpoint.failing_since = endpoint.failing_since or now
    endpoint.consecutive_failures += 1
    endpoint.retry_at = now + timedelta(seconds=delay_s)
    delivery.next_attempt_at = endpoint.retry_at
    if now >= delivery.retry_until:
        delivery.status, delivery.failed_at = DeliveryStatus.FAILED, now
    # Deliveries that waited behind the failing endpoint for their whole window have had it.
    db.session.execute(text("""
        UPDATE webhook_deliveries SET status = 'FAILED', failed_at = :now,
               last_error = coalesce(last_error, 'endpoint failing for the whole retry window')
        WHERE endpoint_id = :id AND status = 'PENDING' AND retry_until <= :now"""), {"now": now, "id": endpoint.id})
    return []


def due_deliveries(requeue_after_s: float, limit: int = 500) -> list[int]:
    """Deliveries to send to the broker now, marked as sent (SKIP LOCKED: several sweeps at once
    take different rows): due, on no queue (or on one for longer than requeue_after_s: the
    message was lost), of a healthy endpoint; and of each failing endpoint whose retry time has
    come, its oldest one, to probe it."""
    return list(db.session.scalars(text("""
        WITH healthy AS (
            SELECT d.id FROM webhook_deliveries d JOIN webhook_endpoints w ON w.id = d.endpoint_id
            WHERE d.status = 'PENDING' AND d.next_attempt_at <= now() AND w.failing_since IS NULL
              AND (d.queued_at IS NULL OR d.queued_at < now() - make_interval(secs => :requeue))
            ORDER BY d.next_attempt_at LIMIT :limit FOR UPDATE OF d SKIP LOCKED
        ), probes AS (
            SELECT DISTINCT ON (d.endpoint_id) d.id
            FROM webhook_deliveries d JOIN webhook_endpoints w ON w.id = d.endpoint_id
            WHERE d.status = 'PENDING' AND w.failing_since IS NOT NULL AND w.retry_at <= now()
              AND (d.queued_at IS NULL OR d.queued_at < now() - make_interval(secs => :requeue))
            ORDER BY d.endpoint_id, d.id
        )
        UPDATE webhook_deliveries SET queued_at = now(), next_attempt_at = least(next_attempt_at, now())
        WHERE id IN (SELECT id FROM healthy UNION SELECT id FROM probes)
        RETURNING id"""), {"requeue": requeue_after_s, "limit": limit}))


def deliveries_of(endpoint_id: str, limit: int, offset: int) -> tuple[int, list[WebhookDelivery]]:
    total = db.session.scalar(select(func.count()).select_from(WebhookDelivery)
                              .where(WebhookDelivery.endpoint_id == endpoint_id))
    rows = list(db.session.scalars(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
                                   .order_by(WebhookDelivery.id.desc()).limit(limit).offset(offset)).unique())
    return total, rows


def replay(delivery_id: int, retry_for_s: float) -> WebhookDelivery:
    """Send a delivery again, whatever came of it: due now, with a fresh retry window (the
    caller commits and publishes it). Its endpoint must still exist."""
    # Ids are bigint: a larger number names nothing (and must not reach the database).
    delivery = db.session.get(WebhookDelivery, delivery_id, with_for_update=True, populate_existing=True) \
        if delivery_id < 2**63 else None
    if delivery is None:
        raise NotFound("delivery not found")
    if delivery.endpoint.deleted_at is not None:
        raise Conflict("the delivery's endpoint was deleted")
    now = utc_now()
    delivery.status, delivery.failed_at = DeliveryStatus.PENDING, None
    delivery.next_attempt_at, delivery.retry_until = now, now + timedelta(seconds=retry_for_s)
    delivery.queued_at = now
    return delivery


def endpoint_gauges() -> dict[str, dict[str, float]]:
    """Per live endpoint: pending deliveries, failed ones, and the age in seconds of the oldest
    pending one's event (0 with none)."""
    # Only the PENDING and FAILED rows are read (partial indexes), never the delivered history.
    rows = db.session.execute(text("""
        SELECT w.id, coalesce(p.pending, 0) AS pending, coalesce(f.failed, 0) AS failed,
               coalesce(extract(epoch FROM now() - p.oldest), 0) AS age
        FROM webhook_endpoints w
        LEFT JOIN (SELECT endpoint_id, count(*) AS pending, min(created_at) AS oldest FROM webhook_deliveries
                   WHERE status = 'PENDING' GROUP BY endpoint_id) p ON p.endpoint_id = w.id
        LEFT JOIN (SELECT endpoint_id, count(*) AS failed FROM webhook_deliveries
                   WHERE status = 'FAILED' GROUP BY endpoint_id) f ON f.endpoint_id = w.id
        WHERE w.deleted_at IS NULL"""))
    return {row.id: {"pending": row.pending, "failed": row.failed, "oldest_pending_age_s": float(row.age)}
            for row in rows}
