"""What a stretch of the rush kept busy: CPU per process, PostgreSQL's sessions and waits, Redis's
operations (docs/scaling.md reads them to name the resource that saturates).

`Resources(bench)` samples once a second in a thread of its own between `start()` and `stop()`:

- **CPU** of every process under this one (the stack is our children: the API's gunicorn and its
  workers, each Celery worker and its pool, beat, the gateway sandbox, the embedded PostgreSQL and
  Redis, the load generator), by the stack's process name, from `/proc` (psutil): the CPU seconds
  each used ÷ the wall time, in cores. Processes that exited meanwhile (a pool child recycled)
  are missed, a few ms each.
- **PostgreSQL** `pg_stat_activity` of the stack's database: the mean number of sessions active,
  and of those waiting, by wait event (`Lock:transactionid`, `LWLock:WALWrite`, `IO:WALSync`, …).
  A session of this sampler is left out.
- **Redis** `INFO stats`: commands processed ÷ wall time.
- **By second**: the cores busy in all, and the API's, each sample (`cpu_cores_by_s`,
  `api_cores_by_s`): a rush's start and its sold-out end load the machine differently.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter

import psutil
import psycopg
import redis

log = logging.getLogger("bench")

INTERVAL_S = 1.0
SERVERS = {"postgres": "postgres", "redis-server": "redis", "beam.smp": "rabbitmq"}

WAITS = """
SELECT state, coalesce(wait_event_type || ':' || wait_event, '') AS waiting, count(*)
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
GROUP BY 1, 2
"""


class Resources:
    def __init__(self, bench):
        self.db_url = bench.db_url
        self.redis_url = bench.stack.redis_url
        self.names = {child.popen.pid: name for name, child in bench.stack._children.items()
                      if child.popen is not None}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cpu_start: dict[int, tuple[str, float]] = {}
        self._cpu_last: dict[int, tuple[str, float]] = {}
        self._samples = 0
        self._active = 0
        self._waiting: Counter = Counter()
        self._commands = (0, 0.0)
        self._started = 0.0
        self._series: list[tuple[float, float]] = []  # (all, the API) cores busy, a sample each

    def _owner(self, process: psutil.Process) -> str:
        """The stack process a process belongs to: itself or its nearest ancestor the stack started;
        else a server by its program; else the load generator (our other children)."""
        try:
            for each in [process, *process.parents()]:
                if each.pid in self.names:
                    return self.names[each.pid]
                if each.pid == os.getpid():
                    break
                if "bench.bare_app:app" in each.cmdline():
                    return "bare insert app"
            return SERVERS.get(process.name(), "load generator")
        except psutil.Error:
            return "gone"

    def _cpu(self) -> dict[int, tuple[str, float]]:
        seen = {}
        for process in psutil.Process().children(recursive=True):
            try:
                times = process.cpu_times()
                seen[process.pid] = (self._owner(process), times.user + times.system)
            except psutil.Error:
                continue
        return seen

    def _busy(self, before: dict, after: dict, seconds: float) -> tuple[float, float]:
        """Cores busy between two CPU readings `seconds` apart: all processes, and the API's."""
        used = {pid: cpu - before.get(pid, (owner, cpu))[1] for pid, (owner, cpu) in after.items()}
        api = sum(used[pid] for pid, (owner, _) in after.items() if owner == "api")
        return round(sum(used.values()) / seconds, 2), round(api / seconds, 2)

    def _redis_commands(self, client) -> int:
        return int(client.info("stats")["total_commands_processed"])

    def start(self) -> "Resources":
        self._started = time.monotonic()
        self._cpu_start = self._cpu_last = self._cpu()
        self._sampled = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="bench-resources", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        client = redis.Redis.from_url(self.redis_url)
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            self._commands = (self._redis_commands(client), time.monotonic())
            while not self._stop.wait(INTERVAL_S):
                try:
                    rows = conn.execute(WAITS).fetchall()
                    before, self._cpu_last = self._cpu_last, {**self._cpu_last, **self._cpu()}
                    now = time.monotonic()
                    self._series.append(self._busy(before, self._cpu_last, now - self._sampled))
                    self._sampled = now
                except Exception as error:  # noqa: BLE001 - a sample missed is not a run failed
                    log.info("resources: sample missed: %r", error)
                    continue
                self._samples += 1
                for state, waiting, count in rows:
                    if state == "active":
                        self._active += count
                        if waiting and waiting != "Client:ClientRead":
                            self._waiting[waiting] += count
            self._cpu_last = {**self._cpu_last, **self._cpu()}  # the last stretch, however short
            self._commands_end = (self._redis_commands(client), time.monotonic())

    def stop(self) -> dict:
        """The figures since start(): `cpu_cores` by process (busiest first, and their sum),
        `pg_active_sessions`, `pg_waiting` by wait event (mean sessions), `redis_ops_per_s`."""
        self._stop.set()
        self._thread.join(timeout=30)
        wall = time.monotonic() - self._started
        cores: Counter = Counter()
        for pid, (owner, cpu) in self._cpu_last.items():
            cores[owner] += cpu - self._cpu_start.get(pid, (owner, 0.0))[1]
        samples = max(1, self._samples)
        (start_commands, started), (end_commands, ended) = self._commands, self._commands_end
        return {
            "seconds": round(wall, 1),
            "cpu_cores": {name: round(value / wall, 2) for name, value in cores.most_common() if value / wall >= 0.01},
            "cpu_cores_total": round(sum(cores.values()) / wall, 2),
            "pg_active_sessions": round(self._active / samples, 2),
            "pg_waiting": {event: round(count / samples, 2) for event, count in self._waiting.most_common(6)},
            "redis_ops_per_s": round((end_commands - start_commands) / max(ended - started, 1e-9)),
            "cpu_cores_by_s": [every for every, _ in self._series],
            "api_cores_by_s": [api for _, api in self._series],
        }
