"""RELIABILITY rows 1 and 2: the visibility timeout is set where Celery reads it, and exceeds
every time limit and every retry countdown (else a delayed or slow step runs twice at once)."""
import ast
import importlib
import inspect
import pkgutil

import celeryconfig
from tasks import policy


def all_step_options():
    """Every registered step's retry options, from the real Celery app."""
    from web import create_app
    app = create_app()
    celery = app.extensions["celery"]
    celery.loader.import_default_modules()
    return {name: task for name, task in celery.tasks.items() if not name.startswith("celery.")}


def test_visibility_timeout_is_the_same_in_all_three_places():
    timeout = celeryconfig.VISIBILITY_TIMEOUT
    assert celeryconfig.broker_transport_options["visibility_timeout"] == timeout
    assert celeryconfig.result_backend_transport_options["visibility_timeout"] == timeout
    assert celeryconfig.visibility_timeout == timeout


def test_the_celery_app_really_uses_that_timeout():
    from web import create_app
    conf = create_app().extensions["celery"].conf
    assert conf.broker_transport_options["visibility_timeout"] == celeryconfig.VISIBILITY_TIMEOUT
    assert conf.result_backend_transport_options["visibility_timeout"] == celeryconfig.VISIBILITY_TIMEOUT


def test_visibility_timeout_exceeds_time_limits():
    assert celeryconfig.task_soft_time_limit < celeryconfig.task_time_limit < celeryconfig.VISIBILITY_TIMEOUT


def test_visibility_timeout_exceeds_every_steps_countdown_and_time_limit():
    steps = all_step_options()
    assert {"seats.reserve", "payments.charge", "payments.refund", "tickets.make_issuable",
            "mypage.project", "maintenance.expire_holds"} <= set(steps)
    for name, task in steps.items():
        assert task.acks_late, name
        assert task.reject_on_worker_lost, name
        limit = task.time_limit or celeryconfig.task_time_limit
        assert limit < celeryconfig.VISIBILITY_TIMEOUT, name
        if task.autoretry_for:
            # The largest countdown autoretry can choose is retry_backoff_max (jitter only lowers it).
            assert task.retry_backoff, name
            assert task.retry_jitter, name
            assert 0 < task.retry_backoff_max <= policy.RETRY_BACKOFF_MAX_BOUND, name
            assert task.retry_backoff_max + limit < celeryconfig.VISIBILITY_TIMEOUT, name
            assert 0 < task.max_retries < 100, f"{name}: retries must be bounded"


def _delays(source: str) -> list[tuple[int, str, object]]:
    """Every countdown / eta / default_retry_delay a call in this source passes: (line, keyword,
    value: the constant, or None when it is computed)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg in ("countdown", "eta", "default_retry_delay"):
                    value = keyword.value.value if isinstance(keyword.value, ast.Constant) else None
                    found.append((node.lineno, keyword.arg, value))
    return found


def _task_modules() -> list:
    """Every module of the tasks package (new ones included without editing this test)."""
    import tasks
    return [importlib.import_module(f"tasks.{info.name}") for info in pkgutil.iter_modules(tasks.__path__)]


def test_the_delay_finder_sees_what_it_looks_for():
    # So the check below can fail: a long countdown, an eta and a computed delay are all found.
    source = "task.retry(countdown=7200)\nstep.apply_async(args=[1], eta=when)\nx.retry(countdown=2 * n)\n"
    assert _delays(source) == [(1, "countdown", 7200), (2, "eta", None), (3, "countdown", None)]


def test_no_step_uses_a_countdown_or_eta_beyond_the_visibility_timeout():
    # Durable timers live in the database (hold deadlines swept by beat), not in long countdowns.
    modules = _task_modules()
    names = {module.__name__ for module in modules}
    assert {"tasks.maintenance", "tasks.payments", "tasks.seats", "tasks.tickets", "tasks.mypage",
            "tasks.publishing", "tasks.reservation_kicks", "tasks.failures", "tasks.overload"} <= names, names
    for module in modules:
        for line, keyword, value in _delays(inspect.getsource(module)):
            where = f"{module.__name__}:{line}"
            assert keyword != "eta", f"{where}: an eta is a timer in the broker"
            assert isinstance(value, (int, float)), f"{where}: {keyword} must be a constant to be checked"
            assert value < celeryconfig.VISIBILITY_TIMEOUT, f"{where}: {keyword}={value}"


def test_beat_intervals_are_far_below_the_visibility_timeout():
    for entry in celeryconfig.beat_schedule.values():
        assert entry["schedule"].total_seconds() < celeryconfig.VISIBILITY_TIMEOUT


def test_retry_bounds_cannot_be_raised_above_the_visibility_bound():
    # One bound: the one celeryconfig checks against the visibility timeout is the one tasks use.
    assert (policy.RETRY_BACKOFF_MAX, policy.RETRY_BACKOFF_MAX_BOUND) == \
        (celeryconfig.RETRY_BACKOFF_MAX, celeryconfig.RETRY_BACKOFF_MAX_BOUND)
    assert policy.RETRY_BACKOFF_MAX <= policy.RETRY_BACKOFF_MAX_BOUND < celeryconfig.VISIBILITY_TIMEOUT
    assert policy.retry_policy(backoff_max=celeryconfig.VISIBILITY_TIMEOUT * 10)["retry_backoff_max"] \
        <= policy.RETRY_BACKOFF_MAX_BOUND


def test_per_task_retry_bounds_are_configurable(monkeypatch):
    monkeypatch.setenv("TASK_MAX_RETRIES__PAYMENTS_CHARGE", "3")
    assert policy.retry_policy("payments.charge", max_retries=12)["max_retries"] == 3
    assert policy.retry_policy("payments.refund", max_retries=16)["max_retries"] == 16


def test_delivery_settings():
    assert celeryconfig.task_acks_late is True
    assert celeryconfig.task_reject_on_worker_lost is True
    assert celeryconfig.worker_cancel_long_running_tasks_on_connection_loss is True
    assert celeryconfig.task_ignore_result is True
