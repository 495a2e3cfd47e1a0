"""Prometheus metrics of the API: HTTP traffic, and the domain read from the database at scrape time.

HTTP metrics are prometheus-client counters and histograms labelled by the endpoint's URL rule
(`/bookings/<booking_id>`, never the raw path, so ids do not explode the label space), method and
status. Under gunicorn every worker process writes them to PROMETHEUS_MULTIPROC_DIR and /metrics
sums them (prometheus-client multiprocess mode); without that variable they live in the process.

Domain gauges are not kept in memory anywhere, so every API replica reports the same truth:
remaining seats per upcoming show are read from the shows table on each scrape (one row per show);
bookings by status and consistency violations scan the booking tables, so beat measures them
(services/gauges.py, measured by maintenance.measure_consistency) and a scrape only reads the last measurement
from Redis, with its time.

With METRICS_TOKEN set, /metrics answers only `Authorization: Bearer <METRICS_TOKEN>` (401
otherwise, before any work); unset (bin/run, on loopback) it is open.
"""
from __future__ import annotations

import hmac
import logging
import os
import time

from flask import Flask, current_app, g, jsonify, request
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


METRICS_PATH = "/metrics"


def init_app(app: Flask) -> None:
    if multiprocess_mode():
        os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
    app.config.setdefault("METRICS_TOKEN", os.environ.get("METRICS_TOKEN") or None)

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

    @app.before_request  # after the timer: refused scrapes are counted too
    def _metrics_token():
        token = app.config.get("METRICS_TOKEN")
        if not token or request.path != METRICS_PATH:
            return None
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return None
        from web.errors import error_body
        response = jsonify(error_body(401, "the metrics need their bearer token"))
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response


class DomainCollector:
    """Remaining seats per upcoming show (read live: one row per show, a small table), and the
    gauges beat measures (services/gauges.py): bookings by status and consistency violations, read
    from their Redis hash. A scrape never scans the booking tables."""

    def __init__(self, app: Flask):
        self.app = app

    def describe(self):
        return []  # computed at scrape time; nothing to check at registration

    def collect(self):
        yield from self._seats()
        yield from self._measured()

    def _seats(self):
        from models import db
        from models.database import utc_now
        from models.shows import Show

        with self.app.app_context():
            try:
                upcoming = db.session.execute(
                    select(Show.id, Show.remaining, Show.capacity).where(Show.starts_at > utc_now())).all()
            except Exception as error:  # a scrape must not fail because the database is away
                log.warning("domain metrics unavailable: %r", error)
                yield GaugeMetricFamily("boxoffice_domain_metrics_up", "1 when the domain gauges could be read.",
                                        value=0)
                return
            finally:
                db.session.remove()

        yield GaugeMetricFamily("boxoffice_domain_metrics_up", "1 when the domain gauges could be read.", value=1)
        remaining = GaugeMetricFamily("boxoffice_show_remaining_seats",
                                      "Remaining seats of each show that has not started yet.", labels=["show_id"])
        capacity = GaugeMetricFamily("boxoffice_show_capacity_seats",
                                     "Capacity of each show that has not started yet.", labels=["show_id"])
        for show_id, left, total in upcoming:
            remaining.add_metric([show_id], left)
            capacity.add_metric([show_id], total)
        yield remaining
        yield capacity

    def _measured(self):
        """The last measurement of maintenance.measure_consistency. With none yet, or Redis away,
        only boxoffice_domain_gauges_available 0: no made-up zeros that would read as "consistent"."""
        from models.bookings import BookingStatus
        from services import gauges

        try:
            values = gauges.load(_gauges_redis(self.app))
        except Exception as error:  # Redis away: the scrape still answers, without these gauges
            log.warning("measured domain gauges unavailable: %r", error)
            values = None
        yield GaugeMetricFamily(
            "boxoffice_domain_gauges_available",
            "1 when the last measurement of bookings and consistency (beat, every "
            f"{gauges.MEASURE_EVERY_S} s) could be read; 0 when none exists yet or Redis is unreachable.",
            value=1 if values else 0)
        if not values:
            return
        yield GaugeMetricFamily("boxoffice_domain_gauges_measured_at_seconds",
                                "Unix time of the measurement behind boxoffice_bookings and "
                                "boxoffice_consistency_violations.", value=values["measured_at"])
        yield GaugeMetricFamily("boxoffice_domain_gauges_age_seconds",
                                "Seconds since that measurement (alert when it stays above a few periods).",
                                value=max(0.0, time.time() - values["measured_at"]))
        yield GaugeMetricFamily("boxoffice_domain_gauges_measure_duration_seconds",
                                "How long that measurement's queries took.", value=values.get("duration_s", 0))
        bookings = GaugeMetricFamily("boxoffice_bookings", "Bookings by status (measured by beat).",
                                     labels=["status"])
        for status in BookingStatus:
            bookings.add_metric([status.value], values.get(f"bookings:{status.value}", 0))
        yield bookings
        report = GaugeMetricFamily("boxoffice_consistency_violations",
                                   "Violations found by the consistency check, by invariant (measured by beat).",
                                   labels=["invariant"])
        for key, count in sorted(values.items()):
            if key.startswith("violations:"):
                report.add_metric([key.split(":", 1)[1]], count)
        yield report
        yield from _webhook_gauges(values)


# The webhook endpoints' gauges (services/gauges.py webhook_gauges), by endpoint id.
WEBHOOK_GAUGES = {
    "pending": ("boxoffice_webhook_deliveries_pending", "Webhook deliveries not delivered yet, by endpoint."),
    "failed": ("boxoffice_webhook_deliveries_failed", "Webhook deliveries given up after their retry window "
                                                      "(replay them: POST /admin/webhooks/deliveries/{id}/retry)."),
    "oldest_pending_age_s": ("boxoffice_webhook_oldest_pending_age_seconds",
                             "Age of the endpoint's oldest pending delivery (0 with none)."),
}


def _webhook_gauges(values: dict[str, float]):
    families = {gauge: GaugeMetricFamily(name, text, labels=["endpoint"])
                for gauge, (name, text) in WEBHOOK_GAUGES.items()}
    for key, value in sorted(values.items()):
        if key.startswith("webhooks:"):
            _, gauge, endpoint_id = key.split(":", 2)
            if gauge in families:
                families[gauge].add_metric([endpoint_id], value)
    yield from families.values()


def _gauges_redis(app: Flask):
    """One client (and connection pool) per app, with short timeouts (services/gauges.py)."""
    from services import gauges
    client = app.extensions.get("gauges_redis")
    if client is None:
        client = app.extensions["gauges_redis"] = gauges.redis_client(app.config["REDIS_URL"])
    return client


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
