"""The Redis client factory: one client per process, URL and timeouts; never shared across a fork."""
import os

from shared_state.redis_clients import redis_client

URL = "redis://127.0.0.1:1/0"  # nothing is sent: clients connect lazily


def test_one_client_per_url_and_timeouts():
    fast = redis_client(URL, 0.5)
    assert redis_client(URL, 0.5) is fast
    assert redis_client(URL) is not fast
    assert redis_client("redis://127.0.0.1:1/1", 0.5) is not fast
    options = fast.connection_pool.connection_kwargs
    assert options["socket_timeout"] == options["socket_connect_timeout"] == 0.5


def test_a_forked_process_gets_its_own_client():
    parent = redis_client(URL, 0.5)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a fresh client, and the same one on every call there
        try:
            child = redis_client(URL, 0.5)
            os.write(write, b"1" if child is not parent and redis_client(URL, 0.5) is child else b"0")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(pid, 0)
    assert answer == b"1"
    assert redis_client(URL, 0.5) is parent
