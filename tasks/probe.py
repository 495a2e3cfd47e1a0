"""Liveness of workers and beat, usable as a container probe: `python -m tasks.probe worker|beat`.

Each process touches a heartbeat file from its own main loop: a worker from a bootstep on the
worker's timer (it stops when the event loop hangs or the process dies), beat from every tick of
its scheduler. The probe exits 0 when the file is fresh, 1 when it is missing or stale.

HEARTBEAT_FILE names the file (one per process; a container has one process, so the default
suits it); the probe reads the same variable, or --file.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from celery import bootsteps
from celery.beat import PersistentScheduler

WORKER_INTERVAL_S = 5.0
DEFAULT_MAX_AGE_S = {"worker": 30.0, "beat": 60.0}


def heartbeat_file(kind: str) -> Path:
    return Path(os.environ.get("HEARTBEAT_FILE") or Path(tempfile.gettempdir()) / f"boxoffice-{kind}.heartbeat")


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    os.utime(path)


class WorkerHeartbeat(bootsteps.StartStopStep):
    """Touches the worker's heartbeat file from the worker's own timer."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.path = heartbeat_file("worker")
        self.tref = None

    def start(self, worker):
        touch(self.path)
        self.tref = worker.timer.call_repeatedly(WORKER_INTERVAL_S, touch, (self.path,), priority=10)

    def stop(self, worker):
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        self.path.unlink(missing_ok=True)  # a stopped worker is not alive


class HeartbeatScheduler(PersistentScheduler):
    """Celery's default file-backed scheduler, touching beat's heartbeat file on every tick."""

    def __init__(self, *args, **kwargs):
        self.heartbeat = heartbeat_file("beat")
        super().__init__(*args, **kwargs)

    def tick(self, *args, **kwargs):
        touch(self.heartbeat)
        return super().tick(*args, **kwargs)

    def close(self):
        super().close()
        self.heartbeat.unlink(missing_ok=True)


def check(kind: str, path: Path, max_age_s: float) -> tuple[bool, str]:
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False, f"{kind}: no heartbeat at {path}"
    if age > max_age_s:
        return False, f"{kind}: heartbeat {age:.0f}s old (limit {max_age_s:.0f}s)"
    return True, f"{kind}: alive (heartbeat {age:.0f}s old)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks.probe", description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(DEFAULT_MAX_AGE_S))
    parser.add_argument("--file", type=Path, help="heartbeat file (default: HEARTBEAT_FILE)")
    parser.add_argument("--max-age", type=float, help="seconds after which the heartbeat is stale")
    args = parser.parse_args(argv)
    ok, message = check(args.kind, args.file or heartbeat_file(args.kind),
                        args.max_age or DEFAULT_MAX_AGE_S[args.kind])
    print(message)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
