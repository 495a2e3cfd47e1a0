"""End-to-end fixtures: the whole stack started exactly as the run command starts it
(`python -m stack up`: migrate, gateway, gunicorn API, workers per queue group, beat), on its
own database and Redis database, and driven over real HTTP."""
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import requests

from stack.processes import MAIL_SINK_PORT, WORKER_METRICS_PORTS
from stack.supervisor import Stack
from tests.processes import free_port, occupied_ports

# The waiting room page's link once admitted (test_pages_browser.py follows it no further).
SHOP_URL_TEMPLATE = "https://shop.example/shows/{show_id}/book?admission={token}"


@pytest.fixture(scope="package")
def stack():
    """Started while the run command's worker metrics and mail sink ports are taken, as they are when a
    `bin/run` stack is up on this machine: the test stack must not need them (test_stack_ports.py)."""
    folder = Path(tempfile.mkdtemp(prefix="boxoffice-e2e-"))
    env = {**os.environ, "DATABASE_URL": os.environ["E2E_DATABASE_URL"], "REDIS_URL": os.environ["E2E_REDIS_URL"],
           "SHOP_URL_TEMPLATE": SHOP_URL_TEMPLATE}
    with occupied_ports(*WORKER_METRICS_PORTS.values(), MAIL_SINK_PORT):
        running = Stack(folder, api_port=free_port(), gateway_port=free_port(), flower=False, workers=2,
                        health_timeout=120, env=env)
        running.start()
        try:
            yield running
        finally:
            running.stop()
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="package")
def api(stack):
    """A requests session bound to the API's base URL."""
    class Api(requests.Session):
        base = stack.urls["api"]

        def request(self, method, url, *args, **kwargs):
            kwargs.setdefault("timeout", 30)
            return super().request(method, self.base + url, *args, **kwargs)
    with Api() as session:
        yield session
