"""A stack started by the test machinery (as by the benchmark and the chaos run) uses free ports
for everything, the workers' metrics included: it starts, and its metrics are reachable, while
the run command's ports are taken (tests/e2e/conftest.py holds 9101-9103 while it starts)."""
import psutil
import requests

from stack.processes import WORKER_METRICS_PORTS
from tests.processes import wait_until


def test_the_stack_serves_worker_metrics_on_ports_of_its_own_while_the_defaults_are_taken(stack):
    assert set(stack.metrics_ports) == set(WORKER_METRICS_PORTS)
    assert not set(stack.metrics_ports.values()) & set(WORKER_METRICS_PORTS.values())
    for name, port in stack.metrics_ports.items():
        worker = psutil.Process(stack.process(name).pid)
        wait_until(lambda: any(c.laddr.port == port and c.status == psutil.CONN_LISTEN
                               for c in worker.net_connections("tcp")), 60, 0.2, f"{name} to serve metrics")
        response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=30)
        assert response.status_code == 200
        assert "boxoffice_queue_length" in response.text, name
        assert stack._children[name].restarts == 0, name  # it never died on a busy port
