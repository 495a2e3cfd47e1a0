"""Celery settings for boxoffice. Each value says why it is what it is.

See RELIABILITY notes in the README: how Celery on Redis loses or doubles work, and which of
these settings prevents each.
"""
import os
from datetime import timedelta

from kombu import Exchange, Queue
from kombu.transport import TRANSPORT_ALIASES

from stack.rabbitmq import is_rabbitmq  # imports nothing of the app

# --- Retry backoff bound ----------------------------------------------------------------------
# Steps back off exponentially (1, 2, 4 … s, full jitter) up to RETRY_BACKOFF_MAX seconds. The
# bound lives here, not in tasks/policy.py (which imports it), so this module imports nothing of
# the tasks package, and the check below sees the very value the tasks use. Tests and the chaos
# harness may lower it by environment, never raise it above the bound.
RETRY_BACKOFF_MAX_BOUND = 120
RETRY_BACKOFF_MAX = min(int(os.environ.get("RETRY_BACKOFF_MAX_S", RETRY_BACKOFF_MAX_BOUND)), RETRY_BACKOFF_MAX_BOUND)

# --- Broker ---------------------------------------------------------------------------------
# Redis is the broker unless BROKER_URL names RabbitMQ (`amqp://`, docs/operations.md "Choosing a
# broker"). Either way REDIS_URL serves the shared state (rate limits, the breaker, kick
# debouncing, the waiting room), and the database, not the broker, is the source of truth
# (tasks/publishing.py).
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6380/0")
broker_url = os.environ.get("BROKER_URL") or REDIS_URL
BROKER_IS_RABBITMQ = is_rabbitmq(broker_url)
# kombu's Redis transport with bounded reads of its fanout channel, so a worker never hangs for
# ever after Redis restarts (tasks/redis_transport.py). Named by path: it is imported when used.
TRANSPORT_ALIASES["redis"] = "tasks.redis_transport:Transport"

# Redis: an unacked message is redelivered after the visibility timeout. It must exceed every
# task's time limit and every retry countdown, or a slow or delayed task would run twice at once.
# (RabbitMQ has no such timeout: it redelivers a message the moment its consumer's channel dies.)
VISIBILITY_TIMEOUT = 3600
# Only the test of RELIABILITY row 1 lowers it, to make Redis redeliver running steps on purpose.
UNSAFE_TEST_VISIBILITY_TIMEOUT = os.environ.get("UNSAFE_TEST_VISIBILITY_TIMEOUT_S")
if UNSAFE_TEST_VISIBILITY_TIMEOUT:
    VISIBILITY_TIMEOUT = int(UNSAFE_TEST_VISIBILITY_TIMEOUT)
if BROKER_IS_RABBITMQ:
    # A publish returns once RabbitMQ has the message (on a quorum queue: on a majority of its
    # nodes); a publish it refuses raises, and the outbox row stays for the relay.
    broker_transport_options = {"confirm_publish": True}
    # A dead peer (a worker host gone, a broker node partitioned) is noticed within a minute.
    broker_heartbeat = 30
else:
    # Celery reads the timeout from three places and silently ignores it unless all agree (celery#9339).
    broker_transport_options = {
        "visibility_timeout": VISIBILITY_TIMEOUT,
        # Fail fast when Redis is down, so the API can answer 202 and leave the step to the outbox.
        "socket_connect_timeout": 2,
        "socket_timeout": 10,
        "retry_on_timeout": True,
        "health_check_interval": 25,
    }
    if UNSAFE_TEST_VISIBILITY_TIMEOUT:
        # ...and looks for overdue messages every second instead of every few minutes.
        broker_transport_options.update(unacked_restore_interval=1, unacked_restore_throttle=1)
    result_backend_transport_options = {"visibility_timeout": VISIBILITY_TIMEOUT}
    visibility_timeout = VISIBILITY_TIMEOUT

# A failed publish returns quickly: the outbox row stays and the relay publishes it later.
task_publish_retry = True
task_publish_retry_policy = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
broker_connection_retry_on_startup = True
broker_connection_max_retries = None  # workers keep trying to reach the broker after it restarts

# --- Results ----------------------------------------------------------------------------------
# Steps record their outcome in PostgreSQL; nobody waits on a Celery result.
task_ignore_result = True
result_backend = None

# --- Delivery guarantees ----------------------------------------------------------------------
# Ack after the step ran, so a worker dying mid-step does not lose it...
task_acks_late = True
# ...including when the pool child is SIGKILLed (otherwise acks_late still acks: the task is lost).
task_reject_on_worker_lost = True
# Steps are short and idempotent; a small prefetch keeps work spread over the workers and limits
# what a dying worker holds. Measured by the benchmark harness.
worker_prefetch_multiplier = int(os.environ.get("CELERY_PREFETCH", "4"))
# A step stuck this long (a hung gateway call) is killed and retried; far below the visibility timeout.
task_time_limit = 120
task_soft_time_limit = 100
# When Redis drops, cancel running late-ack tasks so they are redelivered, not run twice later.
worker_cancel_long_running_tasks_on_connection_loss = True
# SIGTERM (deploys): finish running steps for up to this long, then hand the rest back to the queue.
worker_soft_shutdown_timeout = 25
worker_enable_soft_shutdown_on_idle = True

assert UNSAFE_TEST_VISIBILITY_TIMEOUT or max(task_time_limit, RETRY_BACKOFF_MAX) < VISIBILITY_TIMEOUT

# --- Queues: one per context, each worker group scalable on its own -----------------------------
# webhooks and mail (SPEC §12) have queues and workers of their own: a receiver or SMTP server
# that is slow or down never delays a booking step.
CONTEXTS = ("seats", "payments", "tickets", "mypage", "maintenance", "waiting_room", "webhooks", "mail")
# RabbitMQ: a message redelivered more often than this (its consumers died with it, or returned
# it) is dropped by the broker. A backstop only: the start counter (tasks/failures.py) gives a
# step up, recorded for admins, long before, and the re-drive covers its booking either way. It
# is high because a worker that dies returns every message it had prefetched, started or not.
BROKER_DELIVERY_LIMIT = int(os.environ.get("BROKER_DELIVERY_LIMIT", "20"))


def context_queue(name: str) -> Queue:
    """A context's queue. On RabbitMQ: a quorum queue (durable, replicated over the cluster's
    nodes, redelivery counted by the broker) on a topic exchange of its own, which Celery's native
    delayed delivery needs to route a retry's countdown through the broker, not a worker's memory."""
    if not BROKER_IS_RABBITMQ:
        return Queue(name)
    return Queue(name, Exchange(name, type="topic"), routing_key=name,
                 queue_arguments={"x-queue-type": "quorum", "x-delivery-limit": BROKER_DELIVERY_LIMIT})


task_queues = tuple(context_queue(name) for name in CONTEXTS)
task_default_queue = "maintenance"
task_routes = {f"{context}.*": {"queue": context} for context in CONTEXTS}
# Its scans of the booking tables run beside the other periodic jobs, never on a booking worker.
task_routes["maintenance.measure_consistency"] = {"queue": "maintenance"}
# A cancelled show's fan-out touches only the database (its refunds are payments.refund steps):
# short runs on the maintenance workers, never on the booking path.
task_routes["shows.cancel"] = {"queue": "maintenance"}
# payments.reconcile (a beat job) stays on the payments queue with the other gateway calls: the
# maintenance jobs touch only the database, so a slow or hung gateway never holds up the outbox
# relay and the hold expiry, which every recovery rests on.
imports = tuple(f"tasks.{module}" for module in ("seats", "payments", "tickets", "mypage", "maintenance", "gauges",
                                                 "waiting_room", "shows", "webhooks", "mail"))

# --- Beat: durable timers live in the database and are swept here -----------------------------
ADMISSION_TICK_S = float(os.environ.get("ADMISSION_TICK_S", "0.2"))
WEBHOOK_SWEEP_S = float(os.environ.get("WEBHOOK_SWEEP_S", "2"))
MAIL_SWEEP_S = float(os.environ.get("MAIL_SWEEP_S", "5"))
beat_schedule = {
    "relay-outbox": {"task": "maintenance.relay_outbox", "schedule": timedelta(seconds=2)},
    "expire-holds": {"task": "maintenance.expire_holds", "schedule": timedelta(seconds=15)},
    "redrive-stuck": {"task": "maintenance.redrive_stuck", "schedule": timedelta(seconds=20)},
    "converge-mypage": {"task": "maintenance.converge_mypage", "schedule": timedelta(seconds=30)},
    # The gauges /metrics serves without querying (tasks/gauges.py); a run older than the next is dropped.
    "measure-consistency": {"task": "maintenance.measure_consistency", "schedule": timedelta(seconds=20),
                            "options": {"expires": 20}},
    # Money no step gave back (a capture that landed after its booking was settled) is refunded
    # within minutes; each run reads only the charges made since the last one.
    # The waiting rooms' draw and admissions (tasks/waiting_room.py), several times a second so
    # that admissions are even; a tick older than the next is dropped, the next one catches up.
    "admit-waiting-rooms": {"task": "waiting_room.admit", "schedule": timedelta(seconds=ADMISSION_TICK_S),
                            "options": {"expires": 1.0}},
    # Webhook deliveries and mails whose retry is due, or whose message was lost (a sweep older
    # than the next is dropped; the next one takes the same rows).
    "dispatch-webhooks": {"task": "webhooks.dispatch_due", "schedule": timedelta(seconds=WEBHOOK_SWEEP_S),
                          "options": {"expires": WEBHOOK_SWEEP_S * 2}},
    "dispatch-mail": {"task": "mail.dispatch_due", "schedule": timedelta(seconds=MAIL_SWEEP_S),
                      "options": {"expires": MAIL_SWEEP_S * 2}},
    "reconcile-payments": {"task": "payments.reconcile",
                           "schedule": timedelta(seconds=float(os.environ.get("RECONCILE_INTERVAL_S", "60")))},
}

# beat's default file-backed scheduler, touching a heartbeat file for its liveness probe (tasks/probe.py).
beat_scheduler = "tasks.probe:HeartbeatScheduler"

# --- Events for Flower ------------------------------------------------------------------------
worker_send_task_events = True
# No "task-sent" events: they cost one more Redis publish per step on the hot path, and Flower
# learns of each task from the worker's received/started/succeeded events anyway.
task_send_sent_event = False

timezone = "UTC"
enable_utc = True
task_serializer = "json"
accept_content = ["json"]
