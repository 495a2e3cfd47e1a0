"""Webhooks (SPEC §12): endpoints managed by admins, and the delivery of each event to them.

A delivery attempt is three short steps, so that no transaction is open while a receiver is
being waited for: claim the delivery (its next attempt moves a lease ahead, committed), POST the
signed event with short timeouts, record the outcome (committed). A worker that dies in between
leaves the delivery due again after the lease: at least once. The event id is the receiver's key
to drop a repeat. The rules (who is due, backoff per endpoint, the retry window) are in
models/webhooks.py.
"""
from __future__ import annotations

import json
import logging
import time
from urllib.parse import urlsplit

import requests
from flask import current_app

from models import db
from models.webhooks import (
    SIGNATURE_HEADER, WebhookDelivery, WebhookEndpoint, backoff_delay, claim_delivery, create_endpoint,
    delete_endpoint, deliveries_of, due_deliveries, get_endpoint, list_endpoints, private_address_reason,
    record_attempt, replay, signature_header,
)
from services.events import Announced
from services.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

USER_AGENT = "boxoffice-webhooks/1"
# A delivery that was sent to the broker this long ago and never taken was lost: send it again.
REQUEUE_AFTER_S = 120


def register_endpoint(url: str, events: list[str]) -> WebhookEndpoint:
    with UnitOfWork() as uow:
        endpoint = create_endpoint(url, events, refuse_private=current_app.config["WEBHOOK_REFUSE_PRIVATE"])
        uow.commit()
    return endpoint


def endpoints() -> list[WebhookEndpoint]:
    return list_endpoints()


def endpoint(endpoint_id: str) -> WebhookEndpoint:
    return get_endpoint(endpoint_id)


def remove_endpoint(endpoint_id: str) -> None:
    with UnitOfWork() as uow:
        delete_endpoint(endpoint_id)
        uow.commit()


def delivery_log(endpoint_id: str, limit: int, offset: int) -> tuple[int, list[WebhookDelivery]]:
    """An endpoint's deliveries, newest first, each with its attempts (a deleted one's too)."""
    get_endpoint(endpoint_id, deleted_too=True)  # NotFound if there never was one
    return deliveries_of(endpoint_id, limit, offset)


def retry_delivery(delivery_id: int) -> WebhookDelivery:
    """Send a delivery again now (a FAILED one after its window, or any other), with a fresh window."""
    with UnitOfWork() as uow:
        delivery = replay(delivery_id, current_app.config["WEBHOOK_RETRY_FOR_S"])
        uow.commit()
    _hand_over([delivery.id])
    return delivery


def body_of(payload: dict) -> bytes:
    """The delivery's body: the same bytes on every attempt, so its signature covers exactly them."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def deliver(delivery_id: int, http: requests.Session) -> str:
    """Make one attempt of a delivery, if it is due and its endpoint may be tried now."""
    config = current_app.config
    claim = claim_delivery(delivery_id, config["WEBHOOK_LEASE_S"])
    db.session.commit()
    if claim is None:
        return "not due"
    body = body_of(claim.payload)
    started = time.monotonic()
    status_code, error = _post(http, claim.url, claim.secret, body, claim.event_id, claim.attempt, config)
    duration_ms = int((time.monotonic() - started) * 1000)
    delay = backoff_delay(claim.endpoint_failures + 1, config["WEBHOOK_RETRY_BASE_S"], config["WEBHOOK_RETRY_MAX_S"])
    waiting = record_attempt(claim, status_code, error, duration_ms, delay)
    db.session.commit()
    outcome = str(status_code) if status_code is not None else error
    log.info("webhook delivery %s of event %s attempt %d: %s", delivery_id, claim.event_id, claim.attempt, outcome,
             extra={"delivery_id": delivery_id, "event_id": claim.event_id})
    if waiting:
        _hand_over(waiting)  # the endpoint is back: what waited for it goes out now
    return outcome


def _post(http: requests.Session, url: str, secret: str, body: bytes, event_id: str, attempt: int,
          config) -> tuple[int | None, str | None]:
    """POST the signed body: (status code, None), or (None, why no answer came)."""
    if config["WEBHOOK_REFUSE_PRIVATE"]:
        reason = private_address_reason(urlsplit(url).hostname or "")
        if reason:  # checked again at delivery: what a name resolves to can change
            return None, f"refused: internal address ({reason})"
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               SIGNATURE_HEADER: signature_header(secret, body), "Boxoffice-Event-Id": event_id,
               "Boxoffice-Delivery-Attempt": str(attempt)}
    try:
        # No redirects: a receiver's 3xx could point the request anywhere, past the check above.
        response = http.post(url, data=body, headers=headers, allow_redirects=False,
                             timeout=(config["WEBHOOK_CONNECT_TIMEOUT_S"], config["WEBHOOK_TIMEOUT_S"]))
    except requests.Timeout:
        return None, "timeout"
    except requests.RequestException as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    response.close()
    return response.status_code, None if response.ok else f"HTTP {response.status_code}"


def dispatch_due(limit: int = 500) -> int:
    """The sweep (beat): hand over every delivery that is due and on no queue."""
    ids = due_deliveries(REQUEUE_AFTER_S, limit)
    db.session.commit()
    _hand_over(ids)
    return len(ids)


def _hand_over(ids: list[int]) -> None:
    if not ids:
        return
    publisher = current_app.extensions.get("step_publisher")
    if publisher is not None:
        publisher.announce(Announced(ids, []))
