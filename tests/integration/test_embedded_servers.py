"""The embedded PostgreSQL and Redis are real servers that keep (or lose) data the way production ones do."""

import psycopg
import pytest
import redis

from stack.embedded import EmbeddedPostgres, EmbeddedRedis, free_port, servers_from_env_or_embedded

pytestmark = pytest.mark.server_independent  # CI runs it once (.ci/run)


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    server = EmbeddedPostgres(tmp_path_factory.mktemp("postgres"), free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server):
    client = redis.Redis.from_url(redis_server.url(0))
    yield client
    client.close()


def connect(postgres, dbname):
    # url() is for SQLAlchemy; psycopg takes the plain libpq form of the same address.
    return psycopg.connect(postgres.url(dbname).replace("+psycopg", ""), autocommit=True)


def test_postgres_creates_a_database_and_runs_sql_over_tcp(postgres):
    postgres.ensure_database("boxoffice_check")
    postgres.ensure_database("boxoffice_check")  # a second call finds it and does nothing

    with connect(postgres, "boxoffice_check") as conn:
        conn.execute("CREATE TABLE seat (id int PRIMARY KEY, label text NOT NULL)")
        conn.execute("INSERT INTO seat VALUES (1, 'A1'), (2, 'A2')")
        rows = conn.execute("SELECT label FROM seat ORDER BY id").fetchall()

    assert rows == [("A1",), ("A2",)]


def test_postgres_is_configured_as_a_durable_server_for_the_whole_stack(postgres):
    with connect(postgres, "postgres") as conn:
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('fsync', 'max_connections', 'listen_addresses', 'shared_buffers', 'block_size')"
            ).fetchall()
        )
        user = conn.execute("SELECT current_user").fetchone()[0]

    assert settings["fsync"] == "on"
    assert int(settings["max_connections"]) >= 300
    assert settings["listen_addresses"] == "127.0.0.1"
    assert int(settings["shared_buffers"]) * int(settings["block_size"]) == 128 * 1024 * 1024
    assert user == "postgres"


def test_postgres_keeps_committed_rows_after_being_killed(postgres):
    postgres.ensure_database("boxoffice_crash")
    with connect(postgres, "boxoffice_crash") as conn:
        conn.execute("CREATE TABLE booking (id int PRIMARY KEY, status text NOT NULL)")
        conn.execute("INSERT INTO booking VALUES (1, 'confirmed')")

    postgres.kill()
    assert not postgres.running
    postgres.start()

    assert postgres.running
    with connect(postgres, "boxoffice_crash") as conn:
        assert conn.execute("SELECT status FROM booking WHERE id = 1").fetchone() == ("confirmed",)


def test_postgres_restart_keeps_data(postgres):
    postgres.ensure_database("boxoffice_restart")
    with connect(postgres, "boxoffice_restart") as conn:
        conn.execute("CREATE TABLE show (id int PRIMARY KEY)")
        conn.execute("INSERT INTO show VALUES (7)")

    postgres.restart()

    with connect(postgres, "boxoffice_restart") as conn:
        assert conn.execute("SELECT id FROM show").fetchall() == [(7,)]


def test_starting_postgres_on_a_running_data_dir_reuses_that_server(postgres):
    second = EmbeddedPostgres(postgres.data_dir, free_port())

    second.start()

    assert second.pid == postgres.pid
    assert second.port == postgres.port


def test_redis_runs_commands(redis_client):
    redis_client.set("seat:1", "held")
    redis_client.rpush("queue", "a", "b")

    assert redis_client.get("seat:1") == b"held"
    assert redis_client.lrange("queue", 0, -1) == [b"a", b"b"]


def test_redis_persists_with_aof_and_never_evicts(redis_client):
    assert redis_client.config_get("appendonly") == {"appendonly": "yes"}
    assert redis_client.config_get("appendfsync") == {"appendfsync": "everysec"}
    assert redis_client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    assert redis_client.config_get("bind") == {"bind": "127.0.0.1"}


def test_redis_restart_keeps_data(redis_server, redis_client):
    redis_client.set("booking:1", "pending")

    redis_server.restart()

    assert redis_client.get("booking:1") == b"pending"


def test_redis_restarted_empty_has_lost_everything(redis_server, redis_client):
    redis_client.set("booking:2", "pending")

    redis_server.restart(empty=True)

    assert redis_client.get("booking:2") is None
    assert redis_client.dbsize() == 0


def test_redis_can_be_killed_and_started_again(redis_server, redis_client):
    redis_server.kill()
    assert not redis_server.running

    redis_server.start()

    assert redis_server.running
    assert redis_client.ping()


def test_urls_from_the_environment_start_no_servers(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://app@db.example/boxoffice")
    monkeypatch.setenv("REDIS_URL", "redis://cache.example:6379/0")

    database_url, redis_url, stop = servers_from_env_or_embedded(tmp_path / "var", free_port(), free_port())
    stop()

    assert database_url == "postgresql+psycopg://app@db.example/boxoffice"
    assert redis_url == "redis://cache.example:6379/0"
    assert not (tmp_path / "var").exists()


def test_without_environment_urls_embedded_servers_serve_the_boxoffice_database(tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)

    database_url, redis_url, stop = servers_from_env_or_embedded(tmp_path / "var", free_port(), free_port())
    try:
        with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("boxoffice",)
        with redis.Redis.from_url(redis_url) as client:
            assert client.ping()
    finally:
        stop()
