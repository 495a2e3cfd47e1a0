"""Flower, started exactly as stack/processes.py declares it, lets nobody in without its password:
not its pages, and above all not its control API (revoking tasks, shutting workers down)."""
import os
import secrets

import pytest
import requests

from stack.processes import stack_processes
from tests.processes import ManagedProcess, free_port, wait_until

USER, PASSWORD = "ops", f"pw-{secrets.token_hex(8)}"


@pytest.fixture(scope="module")
def flower(tmp_path_factory):
    folder, port = tmp_path_factory.mktemp("flower-auth"), free_port()
    spec = next(s for s in stack_processes(folder, flower_auth=f"{USER}:{PASSWORD}", flower_port=port)
                if s.name == "flower")
    argv = spec.executable_argv()
    assert f"--basic-auth={USER}:{PASSWORD}" in argv and f"--port={port}" in argv
    assert f"--db={folder}/flower.db" in argv  # its state goes to the test's folder, not var/
    process = ManagedProcess("flower", argv, folder / "flower.log",
                             {**spec.env, "REDIS_URL": os.environ["REDIS_URL"]}).start()
    url = f"http://127.0.0.1:{port}"

    def up():
        if process.popen.poll() is not None:
            raise AssertionError(f"Flower exited:\n{process.log()[-3000:]}")
        try:
            return requests.get(url + "/healthcheck", timeout=2).ok
        except requests.RequestException:
            return False
    wait_until(up, 90, 0.3, "Flower to answer")
    yield url
    process.stop()


def _unauthorized(response):
    assert response.status_code == 401, (response.request.method, response.url, response.status_code)
    if "/api/" not in response.url:  # pages ask the browser for the password; the API just refuses
        assert response.headers.get("WWW-Authenticate", "").lower().startswith("basic"), response.headers


@pytest.mark.parametrize("method,path", [
    ("get", "/"),
    ("get", "/tasks"),
    ("get", "/api/workers"),
    ("post", "/api/task/revoke/{id}"),
    ("post", "/api/task/revoke/{id}?terminate=true"),
    ("post", "/api/worker/shutdown/{worker}"),
    ("post", "/api/worker/pool/restart/{worker}"),
])
def test_without_credentials_everything_is_401(flower, method, path):
    url = flower + path.format(id=secrets.token_hex(8), worker="it-worker@localhost")
    _unauthorized(getattr(requests, method)(url, timeout=10))


@pytest.mark.parametrize("auth", [(USER, "wrong-password"), ("someone", PASSWORD), (USER, ""), (USER, PASSWORD.upper())])
def test_wrong_credentials_are_401(flower, auth):
    _unauthorized(requests.get(flower + "/", auth=auth, timeout=10))
    _unauthorized(requests.post(flower + f"/api/task/revoke/{secrets.token_hex(8)}", auth=auth, timeout=10))
    _unauthorized(requests.post(flower + "/api/worker/shutdown/it-worker@localhost", auth=auth, timeout=10))


def test_the_right_credentials_open_the_dashboard(flower):
    response = requests.get(flower + "/", auth=(USER, PASSWORD), timeout=30)
    assert response.status_code == 200
    assert "Flower" in response.text
