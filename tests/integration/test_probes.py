"""`python -m tasks.probe worker|beat`: 0 while the process runs, non-zero once it hangs or dies."""
import os
import signal
import subprocess
import sys

import pytest

from tests.integration.observed_stack import private_broker
from tests.processes import BIN, ROOT, ManagedProcess, start_worker, wait_until


def probe(kind: str, heartbeat, max_age: float) -> int:
    return subprocess.run([sys.executable, "-m", "tasks.probe", kind, "--file", str(heartbeat),
                           "--max-age", str(max_age)], cwd=ROOT, capture_output=True).returncode


@pytest.fixture(scope="module")
def broker():
    return private_broker()


def test_worker_probe_passes_while_alive_and_fails_when_hung_or_dead(workdir, broker, gateway):
    heartbeat = workdir / "probes" / "worker.heartbeat"
    worker = start_worker(workdir / "probes", "probe-worker", {"REDIS_URL": broker, "HEARTBEAT_FILE": str(heartbeat),
                                                                "GATEWAY_URL": gateway.base_url}, concurrency=1)
    try:
        wait_until(lambda: probe("worker", heartbeat, 15) == 0, 30, 0.5, "the worker probe to pass")
        os.kill(worker.pid, signal.SIGSTOP)  # hung: the main loop no longer runs
        wait_until(lambda: probe("worker", heartbeat, 8) != 0, 60, 0.5, "the probe to see the hang")
        os.kill(worker.pid, signal.SIGCONT)
        wait_until(lambda: probe("worker", heartbeat, 8) == 0, 60, 0.5, "the probe to pass again")
        worker.kill()
        wait_until(lambda: probe("worker", heartbeat, 8) != 0, 60, 0.5, "the probe to see the death")
    finally:
        worker.kill()


def test_beat_probe_passes_while_ticking_and_fails_when_hung(workdir, broker):
    folder = workdir / "probes"
    heartbeat = folder / "beat.heartbeat"
    beat = ManagedProcess("probe-beat", [str(BIN / "celery"), "-A", "wsgi.celery", "beat", "--schedule",
                                         str(folder / "celerybeat-schedule")],
                          folder / "probe-beat.log", {"REDIS_URL": broker, "HEARTBEAT_FILE": str(heartbeat)}).start()
    try:
        wait_until(lambda: probe("beat", heartbeat, 10) == 0, 90, 0.5, "the beat probe to pass")
        os.kill(beat.pid, signal.SIGSTOP)
        wait_until(lambda: probe("beat", heartbeat, 6) != 0, 60, 0.5, "the probe to see the hang")
        os.kill(beat.pid, signal.SIGCONT)
        wait_until(lambda: probe("beat", heartbeat, 6) == 0, 60, 0.5, "the probe to pass again")
    finally:
        beat.kill()
    assert probe("beat", folder / "no-such-file", 60) != 0
