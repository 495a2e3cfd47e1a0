"""A private slice of the stack for the operations tests: gunicorn and a worker on their own broker.

The package's shared worker consumes the suite's broker; these tests must know which process
runs a step (to read its log, scrape its metrics, or SIGTERM it), so they publish to a broker of
their own (a Redis database, or with BROKER_URL the private RabbitMQ vhost of tests/conftest.py)
and run their own API and worker processes against it. PostgreSQL and the gateway sandbox are
the suite's.
"""
import json
import os
from contextlib import contextmanager
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import redis

from tests.processes import BIN, ManagedProcess, free_port, wait_healthy


def private_broker() -> str:
    """REDIS_URL's server with the suite's private database (tests/conftest.py), emptied: what an
    earlier test left there is noise. Tests run one at a time, and each one's private processes
    are stopped by its (function or module) fixture before the next test empties it again."""
    from tests.conftest import REDIS_DB_PRIVATE
    url = urlsplit(os.environ["REDIS_URL"])._replace(path=f"/{REDIS_DB_PRIVATE}").geturl()
    redis.Redis.from_url(url).flushdb()
    return url


def private_rabbitmq() -> str | None:
    """The private RabbitMQ vhost, emptied; None when the broker is Redis."""
    url = os.environ.get("PRIVATE_BROKER_URL")
    if not url:
        return None
    from stack.rabbitmq import RabbitMQ
    server = RabbitMQ(url)
    return server.empty_vhost(urlsplit(url).path.lstrip("/"))


class Broker:
    """What a private stack publishes to, on either broker, with the faults the tests make: a
    restart (emptied or not), a stop and a start, and the length of a queue."""

    def __init__(self, redis_server, rabbitmq_url: str | None):
        from stack.rabbitmq import RabbitMQ
        self.redis_server, self.rabbitmq_url = redis_server, rabbitmq_url
        self.rabbitmq = RabbitMQ(rabbitmq_url) if rabbitmq_url else None
        self.url = rabbitmq_url or redis_server.url(0)
        self.name = "RabbitMQ" if self.rabbitmq else "Redis"

    def env(self) -> dict[str, str]:
        from stack.rabbitmq import broker_env
        return broker_env(self.rabbitmq_url)

    def restart(self, empty: bool = False) -> None:
        if self.rabbitmq is None:
            return self.redis_server.restart(empty=empty)
        if empty:  # what a broker that lost its disk comes back as
            self.rabbitmq.stop()
            self.rabbitmq.start()
            self.rabbitmq.empty_vhost(urlsplit(self.url).path.lstrip("/"))
        else:
            self.rabbitmq.restart()

    def stop(self) -> None:
        (self.rabbitmq or self.redis_server).stop()

    def start(self) -> None:
        (self.rabbitmq or self.redis_server).start()

    def queue_length(self, queue: str) -> int:
        if self.rabbitmq is None:
            return redis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5).llen(queue)
        from kombu import Connection
        with Connection(self.url, connect_timeout=5) as connection:
            channel = connection.channel()
            try:
                return channel.queue_declare(queue=queue, passive=True).message_count
            except connection.channel_errors:
                return 0  # not declared: nothing was ever published to it
            finally:
                try:
                    channel.close()
                except connection.channel_errors:
                    pass

    def purge(self, queue: str) -> None:
        if self.rabbitmq is None:
            redis.Redis.from_url(self.url).delete(queue)
            return
        from kombu import Connection
        with Connection(self.url, connect_timeout=5) as connection:
            try:
                connection.channel().queue_purge(queue)
            except connection.channel_errors:
                pass


def start_api(folder: Path, env: dict, name: str = "api", workers: int = 2) -> tuple[ManagedProcess, str]:
    """gunicorn exactly as the stack runs it (web/gunicorn_conf.py), on a free loopback port."""
    port = free_port()
    process = ManagedProcess(name, [str(BIN / "gunicorn"), "--config", "web/gunicorn_conf.py", "wsgi:app"],
                             folder / f"{name}.log",
                             {"BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": str(workers), "WEB_THREADS": "4",
                              **env}).start()
    url = f"http://127.0.0.1:{port}"
    wait_healthy(process, url, 90)
    return process, url


class PrivateStack:
    """A Redis server of its own and a broker of its own (the same server, or the private
    RabbitMQ vhost: to stop, restart, empty), an API on it, and workers and beat started per test
    (stopped by `stop_processes`); PostgreSQL is the suite's."""

    def __init__(self, folder: Path, env: dict, api_name: str):
        from stack.embedded import EmbeddedRedis
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.redis_server = EmbeddedRedis(folder / "redis", free_port())
        self.redis_server.start()
        self.url = self.redis_server.url(0)  # the shared state's Redis (and the broker, unless RabbitMQ)
        self.broker = Broker(self.redis_server, private_rabbitmq())
        self.env = {"REDIS_URL": self.url, **self.broker.env(), **env}
        self.api_name = api_name
        self.api, self.api_url = start_api(folder, self.env, name=api_name)
        self.processes = []
        self._names = iter(range(1000))

    def redis(self):
        return redis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5)

    def worker(self, concurrency=2, queues=None, extra_env=None):
        from tests.processes import start_worker
        name = f"{self.api_name}-worker-{next(self._names)}"
        options = {"queues": queues} if queues else {}
        process = start_worker(self.folder, name, {**self.env, **(extra_env or {})}, concurrency=concurrency,
                               **options)
        self.processes.append(process)
        return process

    def beat(self):
        name = f"{self.api_name}-beat-{next(self._names)}"
        process = ManagedProcess(name, [str(BIN / "celery"), "-A", "wsgi.celery", "beat", "--loglevel", "INFO",
                                        "--schedule", str(self.folder / f"{name}-schedule")],
                                 self.folder / f"{name}.log",
                                 {**self.env, "HEARTBEAT_FILE": str(self.folder / f"{name}.heartbeat")}).start()
        process.wait_for_log("beat: Starting", timeout=90)
        self.processes.append(process)
        return process

    def restart_api(self):
        self.api.stop()
        self.api, self.api_url = start_api(self.folder, self.env, name=f"{self.api_name}-{next(self._names)}")

    def stop_processes(self):
        while self.processes:
            self.processes.pop().stop()

    def close(self):
        self.stop_processes()
        self.api.stop()
        self.redis_server.stop()


BATCH_STEPS = frozenset({"seats.reserve", "payments.charge", "payments.refund", "tickets.make_issuable", "mypage.project"})


def step_runs(text: str, booking_id: str, steps) -> list[dict]:
    """One log record per run of these steps for a booking: a single step's SUCCESS line, or the
    line a batch step writes for each booking it handled."""
    return [r for r in json_lines(text) if r.get("booking_id") == booking_id and r.get("task") in steps
            and ("outcome" in r if r["task"] in BATCH_STEPS else r.get("state") == "SUCCESS")]


def json_lines(text: str) -> list[dict]:
    """The JSON log records in a process's output (banners and warnings are skipped)."""
    records = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return records


def request_id() -> str:
    return f"test-{secrets.token_hex(8)}"


def ended_deliveries(processes, task_ids, timeout: float = 120) -> dict[str, dict]:
    """Wait until these workers (one process or several) have logged the end of each of these
    deliveries, by task id: its last SUCCESS or FAILURE record (a retried step keeps its id and
    ends later). Returns {task_id: that record, with "worker": the process's name}; its "message"
    carries the step's return value or error."""
    from tests.processes import wait_until
    processes = processes if isinstance(processes, (list, tuple)) else [processes]
    wanted = set(task_ids)

    def ended():
        found = {}
        for process in processes:
            for record in json_lines(process.log()):
                if record.get("task_id") in wanted and record.get("state") in ("SUCCESS", "FAILURE"):
                    found[record["task_id"]] = {**record, "worker": process.name}
        return found if set(found) == wanted else None
    names = ", ".join(p.name for p in processes)
    return wait_until(ended, timeout, 0.2, f"{len(wanted)} deliveries to end in the log of {names}")


def returned(record: dict) -> str:
    """A SUCCESS record's return value (tasks/telemetry.py logs "step NAME succeeded: VALUE")."""
    assert record["state"] == "SUCCESS", record
    return record["message"].split(" succeeded: ", 1)[1]


def starts_of(app, task_ids) -> dict[str, tuple[int, int]]:
    """{task_id: (starts, retries)} from the database's start counter (models/task_failures.py)."""
    from sqlalchemy import select

    from models import db
    from models.task_failures import TaskStart
    with app.app_context():
        rows = db.session.execute(select(TaskStart.task_id, TaskStart.starts, TaskStart.retries)
                                  .where(TaskStart.task_id.in_(list(task_ids)))).all()
        db.session.remove()
    return {task_id: (starts, retries) for task_id, starts, retries in rows}


def assert_each_started_once(app, task_ids) -> None:
    """Each of these deliveries started once, on its first attempt. On Redis the database's start
    counter says so. On RabbitMQ a first delivery is not counted (tasks/failures.py,
    first_delivery: the broker flags a redelivery), so no row at all says so."""
    import celeryconfig
    starts = starts_of(app, task_ids)
    if celeryconfig.BROKER_IS_RABBITMQ:
        assert starts == {}, starts
    else:
        assert len(starts) == len(list(task_ids)) and set(starts.values()) == {(1, 0)}, starts


def failures_of(app, booking_id: str) -> list:
    """Steps recorded as given up for a booking (models/task_failures.py)."""
    from sqlalchemy import select

    from models import db
    from models.task_failures import TaskFailure
    with app.app_context():
        rows = [(f.task, f.error) for f in db.session.scalars(
            select(TaskFailure).where(TaskFailure.booking_id == booking_id)).all()]
        db.session.remove()
    return rows


@contextmanager
def statements(app):
    """Every SQL statement the app's engine runs inside the block (this process only)."""
    from sqlalchemy import event

    from models import db
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)
    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def outbox_rows(app, booking_id) -> int:
    """How many outbox rows of a booking are still waiting to be published or cleared."""
    from sqlalchemy import func, select

    from models import db
    from models.outbox import OutboxMessage
    with app.app_context():
        count = db.session.scalar(select(func.count()).select_from(OutboxMessage)
                                  .where(OutboxMessage.booking_id == booking_id))
        db.session.remove()
        return count
