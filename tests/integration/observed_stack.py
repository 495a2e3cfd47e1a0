"""A private slice of the stack for the operations tests: gunicorn and a worker on their own broker.

The package's shared worker consumes the suite's broker database; these tests must know which
process runs a step (to read its log, scrape its metrics, or SIGTERM it), so they publish to a
Redis database of their own and run their own API and worker processes against it. PostgreSQL
and the gateway sandbox are the suite's.
"""
import json
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import redis

from tests.processes import BIN, ManagedProcess, free_port, wait_healthy


def private_broker(index: int) -> str:
    """REDIS_URL's server with database `index`, emptied (leftovers of an earlier run are noise)."""
    url = urlsplit(os.environ["REDIS_URL"])._replace(path=f"/{index}").geturl()
    redis.Redis.from_url(url).flushdb()
    return url


def start_api(folder: Path, env: dict, name: str = "api", workers: int = 2) -> tuple[ManagedProcess, str]:
    """gunicorn exactly as the stack runs it (web/gunicorn_conf.py), on a free loopback port."""
    port = free_port()
    process = ManagedProcess(name, [str(BIN / "gunicorn"), "--config", "web/gunicorn_conf.py", "wsgi:app"],
                             folder / f"{name}.log",
                             {"BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": str(workers), "WEB_THREADS": "4",
                              **env}).start()
    url = f"http://127.0.0.1:{port}"
    wait_healthy(process, url, 90)
    return process, url


BATCH_STEPS = frozenset({"seats.reserve_show", "payments.charge_many", "tickets.make_issuable_many"})


def step_runs(text: str, booking_id: str, steps) -> list[dict]:
    """One log record per run of these steps for a booking: a single step's SUCCESS line, or the
    line a batch step writes for each booking it handled."""
    return [r for r in json_lines(text) if r.get("booking_id") == booking_id and r.get("task") in steps
            and ("outcome" in r if r["task"] in BATCH_STEPS else r.get("state") == "SUCCESS")]


def json_lines(text: str) -> list[dict]:
    """The JSON log records in a process's output (banners and warnings are skipped)."""
    records = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return records


def request_id() -> str:
    return f"test-{secrets.token_hex(8)}"
