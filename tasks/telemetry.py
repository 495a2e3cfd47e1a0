"""What a worker tells the operator: JSON logs with correlation ids, and Prometheus metrics.

Logs: Celery's own logging setup is replaced (setup_logging signal) by the JSON lines of
the observability package. Each step's lines carry the booking id (its first argument), the
request id that caused it (a message header set by tasks/publishing.py's publish), the step name
and task id.

Metrics, prometheus-client in multiprocess mode (the documented way for forking servers): the
pool processes that run steps write their counters to PROMETHEUS_MULTIPROC_DIR, and the worker's
main process serves them all on WORKER_METRICS_PORT, together with the queue depth of every
queue read from Redis at scrape time. Each worker needs its own directory, emptied at start.

    boxoffice_tasks_started_total{task}     boxoffice_tasks_succeeded_total{task}
    boxoffice_tasks_retried_total{task}     boxoffice_tasks_failed_total{task}
    boxoffice_task_duration_seconds{task}   boxoffice_queue_length{queue}
    boxoffice_queue_unacked_messages
    boxoffice_reconciled_refunds_total{booking_status}   (payments.reconcile: money given back
                                                          that no step had refunded)
"""
from __future__ import annotations

import glob
import logging
import os
import time

from celery import Celery
from celery.signals import (
    setup_logging, task_failure, task_postrun, task_prerun, task_retry, worker_init,
)
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client import REGISTRY as PROCESS_REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from observability import booking_id_var, configure_logging, request_id_var, task_var
from observability.metrics import RECONCILED_REFUNDS  # noqa: F401 (counted by a use case, served here)

log = logging.getLogger("boxoffice.steps")

TASKS_STARTED = Counter("boxoffice_tasks_started_total", "Steps started (each attempt), by task.", ["task"])
TASKS_SUCCEEDED = Counter("boxoffice_tasks_succeeded_total", "Steps that returned normally, by task.", ["task"])
TASKS_RETRIED = Counter("boxoffice_tasks_retried_total", "Step attempts that ended in a retry, by task.", ["task"])
TASKS_FAILED = Counter("boxoffice_tasks_failed_total", "Steps that failed for good (retries exhausted "
                       "or a permanent error), by task.", ["task"])
TASK_DURATION = Histogram("boxoffice_task_duration_seconds", "Time one attempt of a step ran, by task.", ["task"],
                          buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))

_started: dict[str, float] = {}
_tokens: dict[str, tuple] = {}


def init_celery(celery_app: Celery) -> None:
    """Connect the signals (once per process) and add the liveness heartbeat to workers."""
    from tasks.probe import WorkerHeartbeat
    if WorkerHeartbeat not in celery_app.steps["worker"]:
        celery_app.steps["worker"].add(WorkerHeartbeat)
    if getattr(init_celery, "connected", False):
        return
    init_celery.connected = True
    setup_logging.connect(_json_logs, weak=False)
    task_prerun.connect(_step_started, weak=False)
    task_postrun.connect(_step_finished, weak=False)
    task_retry.connect(_step_retried, weak=False)
    task_failure.connect(_step_failed, weak=False)
    worker_init.connect(_serve_metrics, weak=False)


# --- logs -------------------------------------------------------------------------------------
def _json_logs(loglevel=None, **_):
    # LOG_LEVEL rules, as in the API: celery's own default (--loglevel WARNING) would hide the steps.
    configure_logging(os.environ.get("LOG_LEVEL") or min(loglevel or logging.INFO, logging.INFO))


def _booking_of(task, args) -> str | None:
    """Booking steps take a list of bookings: a step of one booking carries its id on every line
    (the correlation key); a batch notes each booking as it comes to it. Maintenance jobs and
    steps about a show carry none."""
    kind = getattr(task, "booking_arg", True)
    if task.name.startswith("maintenance.") or not kind or not args:
        return None
    first = args[0]
    if isinstance(first, list) and len(first) == 1:
        first = first[0]
    return first if isinstance(first, str) else None


def _step_started(task_id=None, task=None, args=None, **_):
    request_id = getattr(task.request, "request_id", None) or (task.request.headers or {}).get("request_id")
    _tokens[task_id] = (request_id_var.set(request_id), booking_id_var.set(_booking_of(task, args)),
                        task_var.set((task.name, task_id)))
    _started[task_id] = time.perf_counter()
    TASKS_STARTED.labels(task.name).inc()
    log.info("step %s started", task.name, extra={"attempt": (task.request.retries or 0) + 1})


def _step_finished(task_id=None, task=None, state=None, retval=None, **_):
    started = _started.pop(task_id, None)
    if started is not None:
        TASK_DURATION.labels(task.name).observe(time.perf_counter() - started)
    if state == "SUCCESS":
        TASKS_SUCCEEDED.labels(task.name).inc()
        log.info("step %s succeeded: %s", task.name, retval, extra={"state": state})
    tokens = _tokens.pop(task_id, None)
    if tokens:
        for var, token in zip((request_id_var, booking_id_var, task_var), tokens):
            var.reset(token)


def _step_retried(sender=None, reason=None, **_):
    TASKS_RETRIED.labels(sender.name).inc()
    log.warning("step %s will retry: %r", sender.name, reason, extra={"state": "RETRY"})


def _step_failed(sender=None, exception=None, **_):
    TASKS_FAILED.labels(sender.name).inc()
    log.error("step %s failed: %r", sender.name, exception, extra={"state": "FAILURE"})


# --- metrics server -----------------------------------------------------------------------------
class QueueDepthCollector:
    """Messages waiting in each queue, and (on Redis) those delivered but not yet acked."""

    def __init__(self, celery, queues: tuple[str, ...]):
        self.celery, self.queues = celery, queues

    def describe(self):
        return []

    def collect(self):
        from shared_state.broker_queues import queue_depths
        try:
            depths = queue_depths(self.celery, self.queues)
        except Exception as error:  # the broker's own errors, of either transport: no sample
            log.warning("queue depth unavailable: %r", error)
            return
        depth = GaugeMetricFamily("boxoffice_queue_length", "Messages waiting in each queue.", labels=["queue"])
        for queue in self.queues:
            depth.add_metric([queue], depths.ready[queue])
        yield depth
        if depths.unacked is not None:
            yield GaugeMetricFamily("boxoffice_queue_unacked_messages",
                                    "Messages delivered to a worker and not yet acknowledged.", value=depths.unacked)


class _ProcessLocal:
    def collect(self):
        return PROCESS_REGISTRY.collect()


def metrics_registry(celery, queues: tuple[str, ...]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(_ProcessLocal())
    registry.register(QueueDepthCollector(celery, queues))
    return registry


def _serve_metrics(sender=None, **_):
    """In the worker's main process, before the pool forks: clean the directory, start the server."""
    port = int(os.environ.get("WORKER_METRICS_PORT") or 0)
    if not port:
        return
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        os.makedirs(folder, exist_ok=True)
        for stale in glob.glob(os.path.join(folder, "*.db")):  # counters of a previous run of this worker
            os.remove(stale)
    else:
        log.warning("WORKER_METRICS_PORT without PROMETHEUS_MULTIPROC_DIR: pool processes' step counters "
                    "are not visible to the metrics server")
    import celeryconfig
    from celery import current_app as current_celery
    app = sender.app if sender is not None else current_celery
    start_http_server(port, addr=os.environ.get("WORKER_METRICS_ADDR", "0.0.0.0"),
                      registry=metrics_registry(app, celeryconfig.CONTEXTS))
    log.info("worker metrics on port %s", port)
