"""Prometheus metrics of the API: HTTP traffic, and the domain read from the database at scrape time.

HTTP metrics are prometheus-client counters and histograms labelled by the endpoint's URL rule
(`/bookings/<booking_id>`, never the raw path, so ids do not explode the label space), method and
status. Under gunicorn every worker process writes them to PROMETHEUS_MULTIPROC_DIR and /metrics
sums them (prometheus-client multiprocess mode); without that variable they live in the process.

Domain gauges (bookings by status, remaining seats per upcoming show, consistency violations)
are not kept in memory anywhere: a collector computes them from PostgreSQL with a few aggregate
queries on each scrape, so every API replica reports the same truth.
"""
from __future__ import annotations

import logging
import os
import time

from flask import Flask, current_app, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import REGISTRY as PROCESS_REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func, select

log = logging.getLogger(__name__)

HTTP_REQUESTS = Counter(
    "boxoffice_http_requests_total", "HTTP requests answered, by endpoint (URL rule), method and status.",
    ["endpoint", "method", "status"])
HTTP_LATENCY = Histogram(
    "boxoffice_http_request_duration_seconds", "Time to answer an HTTP request, by endpoint, method and status.",
    ["endpoint", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


def multiprocess_mode() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def init_app(app: Flask) -> None:
    if multiprocess_mode():
        os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

    @app.before_request
    def _start_timer():
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _observe(response):
        started = g.pop("metrics_started", None)
        if started is not None:
            # Unmatched paths (404 before routing) share one label value.
            endpoint = request.url_rule.rule if request.url_rule else "<unmatched>"
            labels = (endpoint, request.method, str(response.status_code))
            HTTP_REQUESTS.labels(*labels).inc()
            HTTP_LATENCY.labels(*labels).observe(time.perf_counter() - started)
        return response


class DomainCollector:
    """Bookings by status, remaining seats per upcoming show, and consistency violations."""

    def __init__(self, app: Flask):
        self.app = app

    def describe(self):
        return []  # computed at scrape time; nothing to check at registration

    def collect(self):
        from models import db
        from models.bookings import Booking
        from models.shows import Show
        from models.database import utc_now

        with self.app.app_context():
            try:
                by_status = db.session.execute(
                    select(Booking.status, func.count()).group_by(Booking.status)).all()
                upcoming = db.session.execute(
                    select(Show.id, Show.remaining, Show.capacity).where(Show.starts_at > utc_now())).all()
                violations = consistency_violations()
            except Exception as error:  # a scrape must not fail because the database is away
                log.warning("domain metrics unavailable: %r", error)
                yield GaugeMetricFamily("boxoffice_domain_metrics_up", "1 when the domain gauges could be read.",
                                        value=0)
                return
            finally:
                db.session.remove()

        yield GaugeMetricFamily("boxoffice_domain_metrics_up", "1 when the domain gauges could be read.", value=1)
        bookings = GaugeMetricFamily("boxoffice_bookings", "Bookings by status.", labels=["status"])
        from models.bookings import BookingStatus
        counts = dict(by_status)
        for status in BookingStatus:
            bookings.add_metric([status.value], counts.get(status.value, 0))
        yield bookings

        remaining = GaugeMetricFamily("boxoffice_show_remaining_seats",
                                      "Remaining seats of each show that has not started yet.", labels=["show_id"])
        capacity = GaugeMetricFamily("boxoffice_show_capacity_seats",
                                     "Capacity of each show that has not started yet.", labels=["show_id"])
        for show_id, left, total in upcoming:
            remaining.add_metric([show_id], left)
            capacity.add_metric([show_id], total)
        yield remaining
        yield capacity

        report = GaugeMetricFamily("boxoffice_consistency_violations",
                                   "Violations found by the consistency check, by invariant.", labels=["invariant"])
        for invariant, count in violations.items():
            report.add_metric([invariant], count)
        yield report


def consistency_violations() -> dict[str, int]:
    """Violations per invariant, for the gauge: the database-only checks of models/consistency.py.

    The money check needs the gateway's whole ledger, too costly for every scrape: it stays in the
    admin consistency report. Without models/consistency.py, the seats check is done here.
    """
    try:
        from models import consistency
    except ImportError:
        return {"seats": _seat_mismatches()}
    return {
        "seats": sum(1 for show in consistency.show_report() if not show["agrees"] or show["oversold"]),
        "issued_on_refunded": len(consistency.issued_on_refunded()),
        "mypage": len(consistency.mypage_mismatches()),
        # Not final yet: normal while steps run; a value that stays up means stuck bookings.
        "unsettled": _unsettled(),
    }


def _unsettled() -> int:
    from models import db
    from models.bookings import FINAL_STATUSES, Booking
    return db.session.scalar(select(func.count()).select_from(Booking)
                             .where(Booking.status.not_in(list(FINAL_STATUSES))))


def _seat_mismatches() -> int:
    """Shows whose remaining seats differ from capacity minus the seats held (SPEC invariant 1)."""
    from models import db
    from models.bookings import Booking
    from models.shows import Show

    held = (select(Booking.show_id, func.coalesce(func.sum(Booking.qty), 0).label("held"))
            .where(Booking.seats_held.is_(True)).group_by(Booking.show_id).subquery())
    return db.session.execute(
        select(func.count()).select_from(Show).outerjoin(held, held.c.show_id == Show.id)
        .where((Show.remaining != Show.capacity - func.coalesce(held.c.held, 0)) | (Show.remaining < 0))
    ).scalar_one()


class _ProcessLocal:
    """This process's own metrics (used when there is no multiprocess directory)."""

    def collect(self):
        return PROCESS_REGISTRY.collect()


def render_metrics() -> tuple[bytes, str]:
    """The Prometheus text for /metrics and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST

    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_mode():
        MultiProcessCollector(registry)
    else:
        registry.register(_ProcessLocal())
    registry.register(DomainCollector(current_app._get_current_object()))
    return generate_latest(registry), CONTENT_TYPE_LATEST
