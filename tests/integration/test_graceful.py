"""Graceful restarts: gunicorn reloaded under load answers every request; a worker sent SIGTERM
in the middle of a slow step finishes it, and nothing is lost or done twice."""
import os
import signal
import threading

import pytest
import requests

from tests.integration.observed_stack import private_broker, start_api, step_runs
from tests.processes import start_worker, wait_until


@pytest.fixture(scope="module")
def private(workdir, gateway):
    folder = workdir / "graceful"
    env = {"REDIS_URL": private_broker(), "GATEWAY_URL": gateway.base_url, "GATEWAY_TIMEOUT_S": "30"}
    api, url = start_api(folder, env, name="graceful-api")
    yield {"folder": folder, "env": env, "api": api, "url": url}
    api.stop()


class Load:
    """A few threads requesting a database-backed page over new connections until stopped."""

    def __init__(self, url: str, threads: int = 4):
        self.url, self.ok, self.failures = url, 0, []
        self._stop, self._lock = threading.Event(), threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self):
        while not self._stop.is_set():
            try:
                response = requests.get(self.url, timeout=30)
                failure = None if response.status_code == 200 else f"HTTP {response.status_code}"
            except requests.RequestException as error:
                failure = repr(error)
            with self._lock:
                if failure:
                    self.failures.append(failure)
                else:
                    self.ok += 1

    def count(self) -> int:
        with self._lock:
            return self.ok

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(60)


def test_gunicorn_reloaded_under_load_drops_no_request(private, make_show):
    api, show = private["api"], make_show()
    with Load(f"{private['url']}/shows/{show['id']}") as load:
        wait_until(lambda: load.count() >= 20, 60, 0.05, "the load to run")
        for _ in range(2):  # two reloads in a row: old workers finish, new ones take over
            old_workers = set(api.children())
            os.kill(api.pid, signal.SIGHUP)
            wait_until(lambda: api.children() and not old_workers & set(api.children()), 90, 0.1,
                       "gunicorn to replace every worker")
            served = load.count()
            wait_until(lambda: load.count() >= served + 20, 60, 0.05, "the new workers to serve")
    assert load.failures == []
    assert load.count() >= 60


def test_worker_sent_sigterm_mid_step_finishes_it_and_nothing_is_lost(private, make_show, customer, wait_for,
                                                                      booking_state, gateway):
    folder, env = private["folder"], private["env"]
    first = start_worker(folder, "graceful-first", env, concurrency=2)
    gateway.set_faults(latency_ms=4000)  # every charge takes seconds: the worker is mid-step
    try:
        show = make_show(capacity=10, price=1500)
        ids = []
        for _ in range(2):
            response = requests.post(private["url"] + "/bookings", headers=customer["headers"],
                                     json={"show_id": show["id"], "qty": 2, "payment_method": "tok_ok"}, timeout=30)
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])
        wait_until(lambda: any(booking_state(i)["payment_status"] == "PENDING" for i in ids), 90, 0.05,
                   "a charge to be under way")

        os.kill(first.pid, signal.SIGTERM)  # what a deploy or `docker stop` sends: the main process only
        first.popen.wait(120)
    finally:
        gateway.clear_faults()

    charged_by_first = {booking_id for booking_id in ids
                        if step_runs(first.log(), booking_id, ("payments.charge",))}
    assert charged_by_first, "the step under way when SIGTERM came was finished, not abandoned"
    assert first.popen.returncode == 0, first.log()[-3000:]

    second = start_worker(folder, "graceful-second", env, concurrency=2)  # the next deploy's worker
    try:
        for booking_id in ids:
            state = wait_for(booking_id, timeout=120, status="PAID", payment_status="PAID", ticket_status="ISSUABLE")
            assert gateway.ledger(booking_id)["captured"] == 3000  # charged once, not twice
        assert state["remaining"] == 6
    finally:
        second.stop()
