"""Rate limits as production runs them: gunicorn with two worker processes, the counts in Redis.

Every request goes over a new connection (`Connection: close`), so the kernel hands them to
either worker; gunicorn's access log records which worker (pid) answered each one. A limit that
holds in total while both workers answer is a count they share. Each test has its own key prefix,
and the bookings it makes go to a broker database of their own (no worker consumes them).
"""
import http.client
import json
import os
import re
import secrets
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from stack.embedded import EmbeddedRedis
from tests.integration.observed_stack import private_broker, start_api
from tests.processes import ROOT, free_port, wait_until

ACCESS = re.compile(r"^<(\d+)> (\w+) (\S+) (\d{3}) (\S+)$", re.M)


class Api:
    """gunicorn (web/gunicorn_conf.py, 2 workers) whose access log names the worker of each request."""

    def __init__(self, folder, **env):
        self.folder, self.tag = folder, secrets.token_hex(4)
        self.access_log = folder / "access.log"
        env = {"RATE_LIMIT_KEY_PREFIX": f"rl-test-{self.tag}", "REDIS_URL": private_broker(),
               "GUNICORN_CMD_ARGS": f"--access-logfile {self.access_log} "
                                    "--access-logformat '%(p)s %(m)s %(U)s %(s)s %({x-test-tag}i)s'",
               **env}
        self.process, url = start_api(folder, env, name="ratelimited-api", workers=2)
        self.port = int(url.rsplit(":", 1)[1])
        self._both_workers_answer()

    def _both_workers_answer(self):
        """Wait until each of the two workers has answered a request: one still booting (a busy
        machine) would leave every request of a test to the other."""
        def both():
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda _: self.call("GET", "/healthz", tag="warm-up"), range(8)))
            return len({pid for pid, _, _, _, seen in ACCESS.findall(self._log()) if seen == "warm-up"}) >= 2
        wait_until(both, 90, 0.2, "both gunicorn workers to answer")

    def call(self, method: str, path: str, body=None, headers=None, source_ip: str = "127.0.0.1", tag: str = "-"):
        """One request on a fresh connection from `source_ip` (any 127.x address is this host)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60, source_address=(source_ip, 0))
        try:
            payload = json.dumps(body) if body is not None else None
            conn.request(method, path, body=payload, headers={
                "Connection": "close", "X-Test-Tag": tag,
                **({"Content-Type": "application/json"} if payload is not None else {}), **(headers or {})})
            response = conn.getresponse()
            data = response.read()
            return response.status, dict(response.getheaders()), (json.loads(data) if data else None)
        finally:
            conn.close()

    def served(self, tag: str, expected: int) -> list[tuple[int, int]]:
        """(pid, status) of the `expected` requests sent with `tag`, from the access log."""
        def logged():
            rows = [(int(pid), int(status)) for pid, _, _, status, seen in ACCESS.findall(self._log()) if seen == tag]
            return rows if len(rows) >= expected else None
        return wait_until(logged, 30, 0.1, f"{expected} access log lines tagged {tag}")

    def _log(self) -> str:
        return self.access_log.read_text() if self.access_log.exists() else ""

    def stop(self):
        self.process.stop()


@pytest.fixture
def serve(tmp_path):
    started = []

    def start(**env) -> Api:
        api = Api(tmp_path / f"api-{len(started)}", **env)
        started.append(api)
        return api
    yield start
    for api in started:
        api.stop()


def assert_429(status, headers, body):
    assert status == 429, (status, body)
    assert set(body) == {"code", "status", "message"} and body["code"] == 429 and body["message"], body
    assert int(headers["Retry-After"]) > 0, headers


def book_many(api: Api, customer: dict, show_id: str, count: int, tag: str) -> list[tuple]:
    """`count` booking requests at once (8 in flight), each over its own connection."""
    def one(_):
        return api.call("POST", "/bookings", {"show_id": show_id, "qty": 1, "payment_method": "tok_ok"},
                        customer["headers"], tag=tag)
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def bookings_of(app, customer_id: str) -> int:
    from sqlalchemy import func, select
    from models import db
    from models.bookings import Booking
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Booking).where(Booking.customer_id == customer_id))


def spread_over_both_workers(api, customer, show_id, tag_prefix, batch=8, rounds=12):
    """Send batches until both workers have answered this customer; return every (pid, status)."""
    served, results = [], []
    for round_ in range(rounds):
        tag = f"{tag_prefix}-{round_}"
        results += book_many(api, customer, show_id, batch, tag)
        served += api.served(tag, batch)
        if len({pid for pid, _ in served}) >= 2:
            return served, results
    raise AssertionError(f"all {len(served)} requests went to one worker: {Counter(served)}")


def test_one_customers_booking_limit_is_shared_by_both_workers(app, serve, new_customer, make_show):
    api = serve(RATE_LIMIT_BOOKINGS="5/hour")
    alice, bob, show = new_customer(), new_customer(), make_show(capacity=100)

    served, results = spread_over_both_workers(api, alice, show["id"], "alice")
    statuses = Counter(status for status, _, _ in results)
    assert statuses[202] == 5, statuses  # 5 in total, not 5 per worker
    assert set(statuses) == {202, 429}, statuses
    assert {pid for pid, status in served if status == 429}, served
    for status, headers, body in results:
        if status == 429:
            assert_429(status, headers, body)
    assert bookings_of(app, alice["id"]) == 5  # a refused request recorded nothing

    # another customer is not affected by alice's limit, on either worker; one after another, each
    # sees one request fewer remaining whichever worker answers
    body = {"show_id": show["id"], "qty": 1, "payment_method": "tok_ok"}
    others = [api.call("POST", "/bookings", body, bob["headers"], tag="bob") for _ in range(5)]
    assert [status for status, _, _ in others] == [202] * 5, [(s, b) for s, _, b in others]
    assert [headers["X-RateLimit-Remaining"] for _, headers, _ in others] == ["4", "3", "2", "1", "0"]
    assert_429(*api.call("POST", "/bookings", body, bob["headers"]))


def test_auth_is_limited_per_client_ip(serve, new_customer):
    api = serve(RATE_LIMIT_AUTH="6/hour", RATE_LIMIT_AUTH_FAILURES="3/hour")
    email = f"ip-{secrets.token_hex(4)}@example.com"
    status, _, _ = api.call("POST", "/auth/register", {"email": email, "password": "password-1", "name": "I"},
                            source_ip="127.0.0.9")
    assert status == 201
    right = {"email": email, "password": "password-1"}
    wrong = {"email": email, "password": "guess-123"}

    # password guessing from one address: 3 failures, then that address is refused, even the right password
    guesser = "127.0.0.2"
    assert [api.call("POST", "/auth/token", wrong, source_ip=guesser)[0] for _ in range(3)] == [401] * 3
    assert_429(*api.call("POST", "/auth/token", wrong, source_ip=guesser))
    assert_429(*api.call("POST", "/auth/token", right, source_ip=guesser))
    assert_429(*api.call("POST", "/auth/register", {"email": f"x{email}", "password": "password-1", "name": "I"},
                         source_ip=guesser))

    # another address logs in; its successful requests count against RATE_LIMIT_AUTH only
    person = "127.0.0.3"
    results = [api.call("POST", "/auth/token", right, source_ip=person) for _ in range(6)]
    assert [status for status, _, _ in results] == [200] * 6, results
    assert_429(*api.call("POST", "/auth/token", right, source_ip=person))

    # the per-IP auth limits do not touch a customer's other requests
    customer = new_customer()
    assert api.call("GET", "/me/bookings", headers=customer["headers"], source_ip=guesser)[0] == 200


def test_with_the_limiters_redis_down_bookings_are_accepted_under_a_per_process_limit(
        app, serve, tmp_path, new_customer, make_show):
    limiter_redis = EmbeddedRedis(tmp_path / "limiter-redis", free_port())
    limiter_redis.start()
    try:
        api = serve(RATE_LIMIT_STORAGE_URL=limiter_redis.url(0), RATE_LIMIT_BOOKINGS="5/hour",
                    RATE_LIMIT_FALLBACK="3/hour", RATE_LIMIT_STORAGE_TIMEOUT_S="0.5")
        show, carol = make_show(capacity=200), new_customer()
        status, headers, _ = api.call("POST", "/bookings", {"show_id": show["id"], "qty": 1, "payment_method": "tok_ok"},
                                      carol["headers"])
        assert status == 202 and headers["X-RateLimit-Remaining"] == "4"
        counted = redis.Redis.from_url(limiter_redis.url(0)).keys(f"*rl-test-{api.tag}*")
        assert counted, "the booking was not counted in the limiter's Redis"
    finally:
        limiter_redis.stop()  # the broker (REDIS_URL) stays up: only the limiter's storage is gone

    # bookings are still accepted, each worker now counting on its own (RATE_LIMIT_FALLBACK)
    dave = new_customer()
    served, results = [], []
    for round_ in range(12):
        tag = f"dave-{round_}"
        results += book_many(api, dave, show["id"], 8, tag)
        served += api.served(tag, 8)
        per_pid = Counter(pid for pid, _ in served)
        if len(per_pid) >= 2 and min(per_pid.values()) > 3:
            break
    else:
        raise AssertionError(f"could not get more than 3 requests to each worker: {Counter(served)}")
    assert all(status in (202, 429) for status, _, _ in results), Counter(s for s, _, _ in results)
    accepted = Counter(pid for pid, status in served if status == 202)
    assert sorted(accepted.values()) == [3, 3], accepted  # the fallback limit, in each process
    assert bookings_of(app, dave["id"]) == 6
    for status, headers, body in results:
        if status == 429:
            assert_429(status, headers, body)

    # the fallback limits only what Redis limited: reads and health checks stay open
    for _ in range(10):
        assert api.call("GET", "/shows?page_size=1")[0] == 200
        assert api.call("GET", "/healthz")[0] == 200
        assert api.call("GET", "/me/bookings", headers=dave["headers"])[0] == 200
    # and logging in still works (not a 500 while the limiter's storage is away)
    email = f"down-{secrets.token_hex(4)}@example.com"
    assert api.call("POST", "/auth/register", {"email": email, "password": "password-1", "name": "D"})[0] == 201
    assert api.call("POST", "/auth/token", {"email": email, "password": "password-1"})[0] == 200
    assert api.call("POST", "/auth/token", {"email": email, "password": "wrong-pass"})[0] == 401
    assert "Traceback" not in api.process.log()


def test_the_default_limits_are_generous_for_a_person_and_strict_for_a_bot():
    """SPEC §5: a customer may make dozens of bookings a minute; password guessing is stopped."""
    import subprocess
    import sys
    from limits import parse
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATE_LIMIT")}
    out = subprocess.run([sys.executable, "-c", "from web.config import Config as C; "
                          "print(C.RATE_LIMIT_BOOKINGS, C.RATE_LIMIT_AUTH, C.RATE_LIMIT_AUTH_FAILURES, "
                          "C.RATE_LIMIT_FALLBACK, C.RATELIMIT_ENABLED)"],
                         env=env, cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    per_minute = [parse(text).amount * 60 / parse(text).get_expiry() for text in out[:4]]
    bookings, auth, failures, fallback = per_minute
    assert out[4] == "True"
    assert bookings >= 60 and auth >= 60 and fallback >= bookings
    assert failures <= 60
