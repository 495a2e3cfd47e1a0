"""The broker's fanout channel after Redis restarts (tasks/redis_transport.py): a read kombu asks
for as blocking comes back, instead of waiting for ever on the new connection, so the worker's
event loop goes on consuming. Against a real Redis server of its own, restarted."""
import threading

import pytest
from kombu import Connection

from stack.embedded import EmbeddedRedis
from tests.processes import free_port


@pytest.fixture
def redis_server(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis", free_port())
    server.start()
    yield server
    server.stop()


def test_the_broker_uses_the_transport_with_bounded_fanout_reads(redis_server):
    import celeryconfig  # noqa: F401 (registers the transport for redis:// URLs)
    from tasks.redis_transport import FanoutPubSub, Transport
    with Connection(redis_server.url(0)) as connection:
        assert isinstance(connection.transport, Transport)
        assert isinstance(connection.default_channel.subclient, FanoutPubSub)


def _read_in_time(pubsub, seconds=15):
    answers = []

    def read():
        try:
            answers.append(pubsub.parse_response())
        except Exception as error:  # noqa: BLE001 - a connection error is an answer too
            answers.append(error)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=seconds)
    return not reader.is_alive(), answers


def test_a_fanout_read_with_nothing_to_read_after_redis_restarted_returns_instead_of_blocking(redis_server):
    """After the restart the connection is a new one: the old socket's last readiness (or a stale
    one) makes kombu ask for a read with no message there. It must come back: the event loop that
    asked is the worker's only one."""
    import celeryconfig
    with Connection(redis_server.url(0), transport_options=celeryconfig.broker_transport_options) as connection:
        pubsub = connection.default_channel.subclient
        pubsub.subscribe("/0.celery.pidbox")
        pubsub.parse_response()  # the subscription's confirmation
        redis_server.restart(empty=True)
        returned, _ = _read_in_time(pubsub)  # reconnects, subscribes again, reads the confirmation
        assert returned
        returned, answers = _read_in_time(pubsub)  # nothing to read now
        assert returned, "a read with no message there waited for ever"
        assert answers == [None]
        pubsub.close()
