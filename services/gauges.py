"""The domain gauges that scan the booking tables, measured by beat, served by /metrics.

Counting bookings per status and running the consistency checks (one of them joins the booking,
payment, ticket and my page tables) costs a scan of every booking: too much for every scrape of
every API replica, and /metrics must stay cheap. So `maintenance.measure_consistency`
(tasks/gauges.py) measures them every MEASURE_EVERY_S seconds (celeryconfig beat_schedule) and
keeps the last values in one Redis hash, with the time they were measured; web/metrics.py reads
that hash on a scrape and never runs these queries.
"""
from __future__ import annotations

import logging
import time

import redis
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from shared_state.redis_clients import redis_client as shared_redis_client

log = logging.getLogger(__name__)

GAUGES_KEY = "boxoffice:gauges:domain"
MEASURE_EVERY_S = 20
# Redis calls of a scrape: a Redis that does not answer must not hold /metrics up.
READ_TIMEOUT_S = 0.5


def consistency_violations() -> dict[str, int]:
    """Violations per invariant: the database-only checks of models/consistency.py.

    The money check needs the gateway's whole ledger: it stays in the admin consistency report.
    """
    from models import consistency
    from models import db
    from models.bookings import FINAL_STATUSES, Booking

    return {
        "seats": sum(1 for show in consistency.show_report() if not show["agrees"] or show["oversold"]),
        **{name: len(found) for name, found in consistency.seat_report().items()},
        **{name: len(found) for name, found in consistency.queue_report().items()},
        **{name: len(found) for name, found in consistency.door_report().items()},
        **{name: len(found) for name, found in consistency.cancelled_show_report().items()},
        **{name: len(found) for name, found in consistency.notify_report().items()},
        "issued_on_refunded": len(consistency.issued_on_refunded()),
        "mypage": len(consistency.mypage_mismatches()),
        # Not final yet: normal while steps run; a value that stays up means stuck bookings.
        "unsettled": db.session.scalar(select(func.count()).select_from(Booking)
                                       .where(Booking.status.not_in(list(FINAL_STATUSES)))),
    }


def webhook_gauges() -> dict[str, float]:
    """Per webhook endpoint (SPEC §12): deliveries pending, failed, and the age of the oldest
    pending one, as `webhooks:<gauge>:<endpoint id>` fields of the hash."""
    from models.webhooks import endpoint_gauges

    return {f"webhooks:{gauge}:{endpoint_id}": value
            for endpoint_id, gauges in endpoint_gauges().items() for gauge, value in gauges.items()}


def measure() -> dict[str, float]:
    """Every gauge of the hash, from the database (needs an app context): field -> value."""
    from models import db
    from models.bookings import Booking, BookingStatus

    started = time.monotonic()
    counts = dict(db.session.execute(select(Booking.status, func.count()).group_by(Booking.status)).all())
    values: dict[str, float] = {f"bookings:{status.value}": counts.get(status.value, 0) for status in BookingStatus}
    values.update({f"violations:{name}": count for name, count in consistency_violations().items()})
    values.update(webhook_gauges())
    values["duration_s"] = round(time.monotonic() - started, 6)
    values["measured_at"] = time.time()
    return values


def store(client: redis.Redis, values: dict[str, float]) -> None:
    """Replace the hash in one transaction: a reader sees one whole measurement, never a mix."""
    pipe = client.pipeline(transaction=True)
    pipe.delete(GAUGES_KEY)
    pipe.hset(GAUGES_KEY, mapping=values)
    pipe.execute()


def load(client: redis.Redis) -> dict[str, float] | None:
    """The last measurement, or None when there is none yet. Raises redis errors."""
    raw = client.hgetall(GAUGES_KEY)
    if not raw or b"measured_at" not in raw:
        return None
    return {key.decode(): float(value) for key, value in raw.items()}


def redis_client(url: str) -> redis.Redis:
    """The client /metrics reads the gauges with: short timeouts, a scrape must not hang."""
    return shared_redis_client(url, READ_TIMEOUT_S)
