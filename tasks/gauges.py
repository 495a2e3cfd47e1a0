"""maintenance.measure_consistency: the domain gauges measured by beat (services/gauges.py)."""
from __future__ import annotations

import logging

import redis
from celery import shared_task
from flask import current_app
from sqlalchemy.exc import SQLAlchemyError

from services.gauges import measure, store
from shared_state.redis_clients import redis_client as shared_redis_client

log = logging.getLogger(__name__)


@shared_task(name="maintenance.measure_consistency", autoretry_for=(), max_retries=0)
def measure_consistency() -> dict | None:
    """Measure the gauges and store them. No retries: the next run is MEASURE_EVERY_S away, and a
    measurement that could not be made shows as a growing age on /metrics, not as an error row."""
    from models import db

    try:
        values = measure()
    except SQLAlchemyError as error:
        log.warning("domain gauges not measured: %r", error)
        return None
    finally:
        db.session.rollback()
    try:
        store(shared_redis_client(current_app.config["REDIS_URL"], 5), values)
    except redis.RedisError as error:
        log.warning("domain gauges not stored: %r", error)
        return None
    return values
