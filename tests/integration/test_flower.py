"""Flower as the stack runs it (stack/processes.py): behind basic auth, its state kept on disk,
the broker view showing our queues by their context names."""
import requests

from stack.processes import stack_processes
from tests.integration.observed_stack import private_broker
from tests.processes import ManagedProcess, free_port, wait_until


def test_flower_requires_login_shows_the_queues_and_keeps_its_state(workdir):
    folder, port = workdir / "flower", free_port()
    folder.mkdir(parents=True, exist_ok=True)
    spec = next(s for s in stack_processes(folder, flower_auth="ops:secret-pass", flower_port=port)
                if s.name == "flower")
    flower = ManagedProcess("flower", spec.executable_argv(), folder / "flower.log",
                            {"REDIS_URL": private_broker()}).start()
    url, auth = f"http://127.0.0.1:{port}", ("ops", "secret-pass")
    try:
        def up():
            try:
                return requests.get(url + "/healthcheck", timeout=2).ok
            except requests.RequestException:
                return False
        wait_until(up, 90, 0.3, "Flower to answer")
        assert requests.get(url + "/", timeout=10).status_code == 401
        assert requests.post(url + "/api/task/revoke/some-id", timeout=10).status_code == 401
        assert requests.get(url + "/", auth=("ops", "wrong"), timeout=10).status_code == 401

        broker = requests.get(url + "/broker", auth=auth, timeout=30)
        assert broker.status_code == 200
        for queue in ("seats", "payments", "tickets", "mypage", "maintenance"):
            assert queue in broker.text
    finally:
        flower.stop()
    assert (folder / "flower.db").exists() or list(folder.glob("flower.db*"))  # --persistent state on disk
