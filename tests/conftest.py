"""Test servers: real PostgreSQL and Redis for the whole run.

With DATABASE_URL and REDIS_URL set, the tests use those servers (a fresh database is created
for the run and dropped after). Otherwise they start embedded servers from pip packages, the
same ones the run command uses. This happens in pytest_configure, before any test module
imports the app, because the app and celeryconfig read their settings from the environment.

With BROKER_URL naming a RabbitMQ server (`.ci/run`'s third pass), the steps go through it
instead of Redis: the run makes vhosts of its own on it (the suite's, the end-to-end stack's and
the private one), so it must be a server this machine administers (stack/rabbitmq.py).
"""
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
_state: dict = {}

# The Redis databases of REDIS_URL's server the suite owns, each emptied before use (the README
# names them): the suite's broker, the end-to-end stack's, and the one the tests that run a worker
# of their own publish to (tests/integration/observed_stack.py; one such test at a time).
REDIS_DB_SUITE, REDIS_DB_E2E, REDIS_DB_PRIVATE = 1, 2, 3


def _plain(url: str) -> str:
    """A libpq URL for psycopg from an SQLAlchemy one."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _create_database(server_url: str, name: str) -> str:
    with psycopg.connect(_plain(server_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def _drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(_plain(server_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _start_servers() -> tuple[str, str]:
    if os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"):
        return os.environ["DATABASE_URL"], os.environ["REDIS_URL"]
    from stack.embedded import EmbeddedPostgres, EmbeddedRedis, free_port

    folder = Path(tempfile.mkdtemp(prefix="boxoffice-test-"))
    _state["tmp"] = folder
    postgres = EmbeddedPostgres(folder / "postgres", free_port())
    postgres.start()
    _state["postgres"] = postgres
    redis_server = EmbeddedRedis(folder / "redis", free_port())
    redis_server.start()
    _state["redis"] = redis_server
    return postgres.url("postgres"), redis_server.url(0)


def pytest_configure(config):
    if hasattr(config, "workerinput"):  # pragma: no cover - no xdist here, but be explicit
        return
    server_url, redis_url = _start_servers()
    run = secrets.token_hex(4)
    names = {"main": f"boxoffice_test_{run}", "e2e": f"boxoffice_e2e_{run}"}
    _state.update(server_url=server_url, databases=names)
    urls = {key: _create_database(server_url, name) for key, name in names.items()}
    instance = Path(tempfile.mkdtemp(prefix="boxoffice-instance-"))
    _state["instance"] = instance
    os.environ.update({
        "DATABASE_URL": urls["main"],
        "E2E_DATABASE_URL": urls["e2e"],
        "REDIS_URL": _with_db(redis_url, REDIS_DB_SUITE),
        "E2E_REDIS_URL": _with_db(redis_url, REDIS_DB_E2E),
        "BOXOFFICE_INSTANCE": str(instance),
        "HOLD_MINUTES": "10",
        # Rate limits stay on, but the whole suite comes from 127.0.0.1 far faster than a person;
        # test_rate_limits.py sets low limits on its own servers to check them.
        "RATE_LIMIT_AUTH": "100000/minute",
        "RATE_LIMIT_AUTH_FAILURES": "100000/minute",
        "RATE_LIMIT_BOOKINGS": "100000/minute",
        "RATE_LIMIT_QUEUE_JOINS": "100000/minute",
    })
    import redis
    for key in ("REDIS_URL", "E2E_REDIS_URL"):
        redis.Redis.from_url(os.environ[key]).flushdb()
    if os.environ.get("BROKER_URL"):
        os.environ.update(_rabbitmq_vhosts(os.environ["BROKER_URL"], run))

    from flask_migrate import upgrade
    from web import create_app
    app = create_app()
    with app.app_context():
        upgrade()
    _state["app"] = app


def _rabbitmq_vhosts(url: str, run: str) -> dict[str, str]:
    from stack.rabbitmq import RabbitMQ
    server = RabbitMQ(url)
    if not server.controllable():
        pytest.exit(f"BROKER_URL {server.host}: the tests need rabbitmqctl for that server here, "
                    "to make vhosts of their own", returncode=4)
    _state["rabbitmq"] = server
    _state["vhosts"] = {key: f"boxoffice-test-{run}-{role}" for key, role in
                        (("BROKER_URL", "suite"), ("E2E_BROKER_URL", "e2e"), ("PRIVATE_BROKER_URL", "private"))}
    return {key: server.add_vhost(vhost) for key, vhost in _state["vhosts"].items()}


def _with_db(redis_url: str, index: int) -> str:
    return urlsplit(redis_url)._replace(path=f"/{index}").geturl()


def pytest_unconfigure(config):
    if "databases" in _state:
        from models import db
        app = _state.get("app")
        if app is not None:
            with app.app_context():
                db.engine.dispose()
        for name in _state["databases"].values():
            try:
                _drop_database(_state["server_url"], name)
            except Exception as error:  # a leftover test database is not worth failing the run
                print(f"could not drop {name}: {error!r}")
    for vhost in _state.get("vhosts", {}).values():
        try:
            _state["rabbitmq"].delete_vhost(vhost)
        except Exception as error:  # a leftover vhost is not worth failing the run
            print(f"could not delete the vhost {vhost}: {error!r}")
    for key in ("redis", "postgres"):
        if key in _state:
            _state[key].stop()
    for key in ("tmp", "instance"):
        if key in _state:
            shutil.rmtree(_state[key], ignore_errors=True)


@pytest.fixture(scope="session")
def app():
    return _state["app"]


@pytest.fixture
def app_context(app):
    from models import db
    with app.app_context():
        yield
        db.session.rollback()


@pytest.fixture
def client(app):
    return app.test_client()
