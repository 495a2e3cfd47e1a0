"""Real processes for tests: the payment gateway sandbox and Celery workers, started, watched,
stopped and killed exactly as in production (no eager mode, no in-thread workers)."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ALL_QUEUES = "seats,payments,tickets,mypage,maintenance"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class occupied_ports:
    """Holds these loopback ports (a listening socket on each that is free), as a `bin/run`
    stack would: `with occupied_ports(9101, 9102, 9103):`. Ports already taken stay taken."""

    def __init__(self, *ports: int):
        self.ports, self.sockets = ports, []

    def __enter__(self) -> "occupied_ports":
        for port in self.ports:
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", port))
                sock.listen()
                self.sockets.append(sock)
            except OSError:  # someone else's already: occupied all the same
                sock.close()
        return self

    def __exit__(self, *exc) -> None:
        for sock in self.sockets:
            sock.close()


def wait_until(predicate, timeout: float = 60, interval: float = 0.1, message: str = "condition"):
    """Poll until predicate() is truthy; return its value. Fails the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(interval)


class ManagedProcess:
    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict | None = None):
        self.name, self.argv, self.log_path = name, argv, log_path
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.popen: subprocess.Popen | None = None

    def start(self) -> "ManagedProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=self._log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 60) -> None:
        def seen():
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited early:\n{self.log()[-3000:]}")
            return text in self.log()
        wait_until(seen, timeout, 0.2, f"{self.name} to log {text!r}")

    def children(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def stop(self, timeout: float = 30) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        os.killpg(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._log.close()

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(10)


def wait_healthy(process: ManagedProcess, url: str, timeout: float = 90) -> None:
    """Wait until an HTTP process answers /healthz; fail at once (with its log) if it exits."""
    def healthy():
        if process.popen.poll() is not None:
            raise AssertionError(f"{process.name} exited:\n{process.log()[-3000:]}")
        try:
            return requests.get(url + "/healthz", timeout=2).ok
        except requests.RequestException:
            return False
    wait_until(healthy, timeout, 0.2, f"{process.name} to answer /healthz")


def start_gateway(folder: Path) -> tuple[ManagedProcess, str]:
    port = free_port()
    process = ManagedProcess("gateway", [str(BIN / "python"), "-m", "gateway", "--host", "127.0.0.1",
                                         "--port", str(port), "--db", str(folder / "gateway.sqlite3")],
                             folder / "gateway.log").start()
    url = f"http://127.0.0.1:{port}"
    wait_healthy(process, url, 60)
    return process, url


def start_worker(folder: Path, name: str, env: dict, queues: str = ALL_QUEUES, concurrency: int = 4,
                 extra: list[str] | None = None) -> ManagedProcess:
    argv = [str(BIN / "celery"), "-A", "wsgi.celery", "worker", "-Q", queues, "-n", f"{name}@%h",
            "--concurrency", str(concurrency), "--loglevel", "INFO", "--without-mingle", "--without-gossip",
            *(extra or [])]
    process = ManagedProcess(name, argv, folder / f"{name}.log", env).start()
    process.wait_for_log("ready.", timeout=90)
    return process
