"""`Stack`: start the whole stack the way `python -m stack up` does, supervise it, stop it.

Order: PostgreSQL + Redis (embedded unless DATABASE_URL / REDIS_URL are set), the `boxoffice`
database, the migration, then the long-running processes, each in its own session with its output
in DATA/logs/NAME.log. A background thread restarts any process that dies, with backoff.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .embedded import ServerError, free_port, port_in_use, servers_from_env_or_embedded, tail
from .processes import (
    DEFAULT_API_PORT,
    FLOWER_PORT,
    GATEWAY_PORT,
    REPO_ROOT,
    ProcessSpec,
    flower_credentials,
    free_metrics_ports,
    process_env,
    stack_processes,
)

log = logging.getLogger("stack")

MIGRATE_TIMEOUT = 300
MAX_BACKOFF = 30.0
HEALTHY_UPTIME = 30.0  # a process that ran this long before dying restarts without delay growth


class StackError(RuntimeError):
    """The stack could not start; the message says why and shows the relevant log."""


@dataclass
class _Child:
    spec: ProcessSpec
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = 1.0
    restart_at: float | None = None

    def spawn(self) -> None:
        argv = self.spec.executable_argv()
        with open(self.log_path, "ab") as logfile:
            # Own session, so a terminal Ctrl-C reaches only the supervisor, which stops in order.
            self.popen = subprocess.Popen(
                argv,
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started_at = time.monotonic()
        self.restart_at = None

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


class Stack:
    """The whole stack as child processes of this Python process.

    >>> stack = Stack("var", api_port=8000)
    >>> stack.start()            # returns once /healthz answers
    >>> stack.urls["api"]
    >>> stack.process("worker-payments").kill()   # restarted by the supervisor
    >>> stack.stop()
    """

    def __init__(
        self,
        data_dir: Path | str = "var",
        *,
        api_port: int = DEFAULT_API_PORT,
        workers: int = 2,
        web_concurrency: int | None = None,
        flower: bool = True,
        pg_port: int = 5433,
        redis_port: int = 6380,
        detach: bool = False,
        health_timeout: float = 60.0,
        env: dict[str, str] | None = None,
        gateway_port: int = GATEWAY_PORT,
        flower_port: int = FLOWER_PORT,
        metrics_ports: dict[str, int] | None = None,
        mail_port: int | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        # The mail sink's SMTP port: the run command's fixed one (MAIL_SINK_PORT); others a free one.
        self.mail_port = mail_port or free_port()
        # The workers' metrics ports: the run command passes its fixed ones (WORKER_METRICS_PORTS);
        # any other stack gets free ones, chosen once, so a restarted worker keeps its port.
        self.metrics_ports = dict(metrics_ports) if metrics_ports else free_metrics_ports()
        self.gateway_port = gateway_port
        self.flower_port = flower_port
        self.api_port = api_port
        self.workers = workers
        self.web_concurrency = web_concurrency or int(os.environ.get("WEB_CONCURRENCY", "2"))
        self.flower = flower
        self.pg_port = pg_port
        self.redis_port = redis_port
        self.detach = detach
        self.health_timeout = health_timeout
        self.base_env = dict(os.environ if env is None else env)
        self.logs_dir = self.data_dir / "logs"
        self.database_url = ""
        self.redis_url = ""
        self.flower_auth = ""
        self.flower_auth_generated = False
        self._stop_servers = lambda: None
        self._children: dict[str, _Child] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._force = threading.Event()
        self._supervisor: threading.Thread | None = None

    # -- public API
    @property
    def urls(self) -> dict[str, str]:
        api = f"http://127.0.0.1:{self.api_port}"
        urls = {
            "api": api,
            "docs": f"{api}/docs",
            "gateway": f"http://127.0.0.1:{self.gateway_port}",
            "smtp": f"smtp://127.0.0.1:{self.mail_port}",
            "mail": str(self.data_dir / "mail"),
            "database": self.database_url,
            "redis": self.redis_url,
            # The steps' broker: RabbitMQ when BROKER_URL names one, else that Redis.
            "broker": self.base_env.get("BROKER_URL") or self.redis_url,
            "logs": str(self.logs_dir),
        }
        if self.flower:
            urls["flower"] = f"http://127.0.0.1:{self.flower_port}"
        return urls

    def process(self, name: str) -> subprocess.Popen:
        """The current Popen of a running process (it changes when the supervisor restarts it)."""
        with self._lock:
            child = self._children[name]
            if child.popen is None:
                raise LookupError(f"{name} is not running")
            return child.popen

    def start(self) -> None:
        """Start everything and return once the API's /healthz answers. Raises StackError."""
        try:
            self._prepare_dirs()
            self._start_servers()
            specs = self._specs()
            self._check_programs(specs)
            self._check_ports_free()
            for spec in specs:
                if spec.oneshot:
                    self._run_oneshot(spec)
            for spec in specs:
                if not spec.oneshot:
                    self._launch(spec)
            self._supervisor = threading.Thread(target=self._supervise, name="stack-supervisor", daemon=True)
            self._supervisor.start()
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every process, SIGKILL what is left after timeout, then stop the servers."""
        self._stopping.set()
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join()
        with self._lock:
            children = list(self._children.values())
        for child in children:
            if child.alive:
                log.info("stopping %s (pid %s)", child.spec.name, child.popen.pid)
                _signal_group(child.popen.pid, signal.SIGTERM, leader_only=True)
        deadline = time.monotonic() + timeout
        while any(c.alive for c in children) and time.monotonic() < deadline and not self._force.is_set():
            time.sleep(0.1)
        for child in children:
            if child.alive:
                log.warning("%s did not stop in time; killing it", child.spec.name)
            if child.popen is not None:
                # Also whatever it forked (gunicorn workers, celery pool processes).
                _signal_group(child.popen.pid, signal.SIGKILL)
                child.popen.wait()
        self._stop_servers()
        self._stop_servers = lambda: None

    def force_stop(self) -> None:
        """Make a running stop() stop waiting and SIGKILL at once (second Ctrl-C)."""
        self._force.set()

    # -- steps
    def _prepare_dirs(self) -> None:
        fresh = not self.data_dir.exists()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if fresh:
            (self.data_dir / ".gitignore").write_text("*\n")
        self.logs_dir.mkdir(exist_ok=True)
        (self.data_dir / "instance").mkdir(exist_ok=True)

    def _start_servers(self) -> None:
        try:
            self.database_url, self.redis_url, self._stop_servers = servers_from_env_or_embedded(
                self.data_dir, self.pg_port, self.redis_port, database="boxoffice", detach=self.detach
            )
        except ServerError as error:
            raise StackError(str(error)) from error

    def _specs(self) -> list[ProcessSpec]:
        if self.flower:
            self.flower_auth, self.flower_auth_generated = flower_credentials(self.data_dir)
        return stack_processes(
            self.data_dir,
            api_port=self.api_port,
            workers=self.workers,
            flower=self.flower,
            flower_auth=self.flower_auth,
            gateway_port=self.gateway_port,
            flower_port=self.flower_port,
            metrics_ports=self.metrics_ports,
            mail_port=self.mail_port,
        )

    def _check_programs(self, specs: list[ProcessSpec]) -> None:
        for spec in specs:
            program = spec.executable_argv()[0]
            if not Path(program).exists():
                raise StackError(f"{spec.name}: {program} not found; install requirements.txt into this venv")

    def _check_ports_free(self) -> None:
        ports = {"api": self.api_port, "gateway": self.gateway_port, "mail sink": self.mail_port}
        if self.flower:
            ports["flower"] = self.flower_port
        ports.update({f"{name} metrics": port for name, port in self.metrics_ports.items()})
        busy = [f"{name} port {port}" for name, port in ports.items() if port_in_use(port)]
        if busy:
            raise StackError(f"already in use on 127.0.0.1: {', '.join(busy)} (another stack running?)")

    def _child(self, spec: ProcessSpec) -> _Child:
        env = process_env(
            spec, self.base_env, self.data_dir, self.database_url, self.redis_url, self.web_concurrency,
            self.gateway_port, self.mail_port,
        )
        return _Child(spec, env, self.logs_dir / f"{spec.name}.log")

    def _run_oneshot(self, spec: ProcessSpec) -> None:
        child = self._child(spec)
        log.info("running %s", spec.name)
        child.spawn()
        try:
            code = child.popen.wait(MIGRATE_TIMEOUT)
        except subprocess.TimeoutExpired:
            _signal_group(child.popen.pid, signal.SIGKILL)
            child.popen.wait()
            raise StackError(f"{spec.name} took longer than {MIGRATE_TIMEOUT}s; see {child.log_path}") from None
        if code != 0:
            command = " ".join(spec.argv)
            raise StackError(
                f"{spec.name} failed ({command} exited with {code}); last lines of {child.log_path}:\n"
                f"{tail(child.log_path)}"
            )

    def _launch(self, spec: ProcessSpec) -> None:
        child = self._child(spec)
        child.spawn()
        log.info("started %s (pid %s), log in %s", spec.name, child.popen.pid, child.log_path)
        with self._lock:
            self._children[spec.name] = child

    def _supervise(self) -> None:
        while not self._stopping.wait(0.2):
            now = time.monotonic()
            with self._lock:
                for child in self._children.values():
                    self._look_after(child, now)

    def _look_after(self, child: _Child, now: float) -> None:
        if child.alive:
            return
        if child.restart_at is None:
            code = child.popen.returncode if child.popen else None
            if now - child.started_at >= HEALTHY_UPTIME:
                child.backoff = 1.0
            child.restart_at = now + child.backoff
            log.warning("%s exited with code %s; restarting in %.0fs (see %s)",
                        child.spec.name, code, child.backoff, child.log_path)  # fmt: skip
            child.backoff = min(child.backoff * 2, MAX_BACKOFF)
            return
        if now >= child.restart_at and not self._stopping.is_set():
            child.restarts += 1
            child.spawn()
            log.info("restarted %s (pid %s, restart #%s)", child.spec.name, child.popen.pid, child.restarts)

    def _wait_healthy(self) -> None:
        url = f"{self.urls['api']}/healthz"
        deadline = time.monotonic() + self.health_timeout
        while time.monotonic() < deadline:
            if self._stopping.is_set():
                raise StackError("stopped while starting")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        log.info("API healthy at %s", url)
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        failing = self._failing_child()
        raise StackError(
            f"the API did not answer {url} within {self.health_timeout:.0f}s; "
            f"last lines of {failing.log_path}:\n{tail(failing.log_path)}"
        )

    def _failing_child(self) -> _Child:
        """The process most likely at fault: one that keeps dying, else the API."""
        with self._lock:
            dying = [c for c in self._children.values() if c.restarts or not c.alive]
            return dying[0] if dying else self._children["api"]


def _signal_group(pid: int, signum: int, leader_only: bool = False) -> None:
    try:
        if leader_only:
            os.kill(pid, signum)
        else:
            os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def mask_password(url: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db, for printing."""
    return re.sub(r"(://[^:/@]+):[^@/]+@", r"\1:***@", url)
