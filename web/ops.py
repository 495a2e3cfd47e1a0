"""Operations endpoints: liveness, readiness and Prometheus metrics."""
from flask import Response, current_app
from flask.views import MethodView
from web.parsing import Blueprint
from marshmallow import Schema, fields
from sqlalchemy import text

import celeryconfig
from models import db

blp = Blueprint("ops", __name__, description="Health checks")


class HealthSchema(Schema):
    status = fields.String()
    checks = fields.Dict(keys=fields.String(), values=fields.String())


@blp.route("/healthz")
class Liveness(MethodView):
    @blp.response(200, HealthSchema)
    def get(self):
        """The process is alive"""
        return {"status": "ok", "checks": {}}


@blp.route("/readyz")
class Readiness(MethodView):
    @blp.response(200, HealthSchema)
    @blp.alt_response(503, schema=HealthSchema,
                      description="The database, the broker or (with RabbitMQ as the broker) Redis does not answer")
    def get(self):
        """Ready to serve: the database and the broker answer"""
        checks = {"database": _check(lambda: db.session.execute(text("SELECT 1"))),
                  "broker": _check(_ping_broker)}
        if celeryconfig.BROKER_IS_RABBITMQ:  # Redis still keeps the shared state
            checks["redis"] = _check(_ping_redis)
        ok = all(v == "ok" for v in checks.values())
        return {"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503


@blp.route("/metrics")
class Metrics(MethodView):
    @blp.doc(responses={200: {"description": "Prometheus text exposition format",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}})
    def get(self):
        """Prometheus metrics: HTTP traffic per endpoint and status, bookings, seats, consistency"""
        from web.metrics import render_metrics
        body, content_type = render_metrics()
        return Response(body, status=200, content_type=content_type)


def _ping_broker():
    if not celeryconfig.BROKER_IS_RABBITMQ:
        return _ping_redis()
    # A channel opened and closed: two round trips on a pooled connection, which the pool
    # reconnects if RabbitMQ restarted since its last use.
    with current_app.extensions["celery"].pool.acquire(block=True, timeout=2) as connection:
        connection.ensure_connection(max_retries=1, timeout=2)
        connection.channel().close()


def _ping_redis():
    from shared_state.redis_clients import redis_client
    redis_client(current_app.config["REDIS_URL"], 2).ping()


def _check(probe) -> str:
    try:
        probe()
        return "ok"
    except Exception as error:  # any failure means not ready; the reason is reported
        return f"error: {type(error).__name__}"
