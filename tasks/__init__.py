"""Celery, bound to the Flask app the way Flask's docs do it: every task runs in an app context."""
from celery import Celery, Task
from celery.signals import worker_process_init
from flask import Flask


class StepPublisher:
    """What units of work hand their committed steps to (services/unit_of_work.py): the outbox
    rows to publish now (tasks/publishing.py), the shows whose reservation to ask for soon
    (tasks/reservation_kicks.py)."""

    def __init__(self, app: Flask):
        self.app = app

    def publish(self, ready: list[tuple[int, str, str, bool]]) -> None:
        from tasks.publishing import publish_and_forget
        publish_and_forget(ready)

    def reserve_soon(self, show_id: str) -> None:
        from tasks.reservation_kicks import reserve_soon
        reserve_soon(show_id, self.app)

    def announce(self, announced) -> None:
        """Webhook deliveries and mails to their own queues (the sweeps send what this loses)."""
        from tasks.announcing import hand_over
        hand_over(announced)


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                # Every start is counted in the database first (RELIABILITY row 3): a step that
                # kills its worker on every delivery is stopped there, not looped for ever.
                if self.request.id and not self.request.called_directly and getattr(self, "count_starts", True):
                    from tasks.failures import too_many_starts
                    if too_many_starts(self, args):
                        return "gave up: its worker died on every delivery"
                return self.run(*args, **kwargs)

        def on_failure(self, exc, task_id, args, kwargs, einfo):
            """Retries exhausted (or a permanent error): keep a record for admins to retry."""
            from tasks.failures import record_task_failure
            with app.app_context():
                record_task_failure(self, exc, args)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object("celeryconfig")
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    from tasks.topology import DeclareTopology  # RabbitMQ only: every queue, declared and bound
    celery_app.steps["consumer"].add(DeclareTopology)

    app.extensions["step_publisher"] = StepPublisher(app)

    from tasks import overload  # noqa: F401 (ticket steps report their outcomes: connects the signals)

    from tasks.telemetry import init_celery  # JSON logs, step metrics, liveness heartbeat
    init_celery(celery_app)

    @worker_process_init.connect(weak=False)
    def _fresh_connections(**_):
        # A forked pool process must not share the parent's database sockets.
        from models import db
        with app.app_context():
            db.engine.dispose(close=False)

    return celery_app
