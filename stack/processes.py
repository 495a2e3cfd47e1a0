"""The one list of the stack's processes: what runs, with which command line and environment.

The run command (`python -m stack up`), the docker-compose checks and the README all read this
list, so a process is added or changed here and nowhere else.
"""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

GATEWAY_PORT = 8100
MAIL_SINK_PORT = 8025
FLOWER_PORT = 5555
DEFAULT_API_PORT = 8000


@dataclass(frozen=True)
class ProcessSpec:
    """One process of the stack. argv[0] is a bare program name, resolved by `executable_argv`."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    oneshot: bool = False  # runs to completion before the long-running ones start

    def executable_argv(self) -> list[str]:
        """argv with the program taken from the venv of the running interpreter."""
        program, *rest = self.argv
        if program == "python":
            return [sys.executable, *rest]
        return [str(Path(sys.executable).parent / program), *rest]


def stack_processes(
    data_dir: Path | str,
    *,
    api_port: int = DEFAULT_API_PORT,
    workers: int = 2,
    flower: bool = True,
    flower_auth: str = "USER:PASS",
    gateway_port: int = GATEWAY_PORT,
    flower_port: int = FLOWER_PORT,
    metrics_ports: dict[str, int] | None = None,
    mail_port: int = MAIL_SINK_PORT,
) -> list[ProcessSpec]:
    """Every process of the stack in start order; the one-shot migration comes first.

    data_dir is where the processes keep their state (`var/` locally, a volume in docker-compose).
    metrics_ports: each worker's metrics port by process name (default WORKER_METRICS_PORTS).
    """
    data = str(data_dir)
    ports = {**WORKER_METRICS_PORTS, **(metrics_ports or {})}
    celery = ("celery", "-A", "wsgi.celery")
    specs = [
        ProcessSpec("migrate", ("flask", "--app", "wsgi", "db", "upgrade"), oneshot=True),
        ProcessSpec(
            "gateway",
            ("python", "-m", "gateway", "--host", "127.0.0.1", "--port", str(gateway_port),
             "--db", f"{data}/gateway.sqlite3"),
        ),
        # The local SMTP sink customer mail goes to (SMTP_URL); every message a file in DATA/mail.
        ProcessSpec("mail-sink", ("python", "-m", "stack.mail_sink", "--host", "127.0.0.1", "--port", str(mail_port),
                                  "--dir", f"{data}/mail")),
        ProcessSpec(
            "api",
            ("gunicorn", "--config", "web/gunicorn_conf.py", "wsgi:app"),
            env={"BIND": f"127.0.0.1:{api_port}", **metrics_env(data, "api")},
        ),
        ProcessSpec(
            "worker-booking",
            (*celery, "worker", "-Q", "seats,tickets,mypage", "-n", "booking@%h",
             "--concurrency", str(workers), "-E"),
            env=worker_env(data, "worker-booking", ports["worker-booking"]),
        ),
        ProcessSpec(
            "worker-payments",
            (*celery, "worker", "-Q", "payments", "-n", "payments@%h", "--concurrency", str(workers), "-E"),
            env=worker_env(data, "worker-payments", ports["worker-payments"]),
        ),
        ProcessSpec(
            "worker-maintenance",
            (*celery, "worker", "-Q", "maintenance", "-n", "maintenance@%h", "--concurrency", "1", "-E"),
            env=worker_env(data, "worker-maintenance", ports["worker-maintenance"]),
        ),
        # The waiting rooms' admission job, on its own: a tick never waits behind other work.
        ProcessSpec(
            "worker-admission",
            (*celery, "worker", "-Q", "waiting_room", "-n", "admission@%h", "--concurrency", "1", "-E"),
            env=worker_env(data, "worker-admission", ports["worker-admission"]),
        ),
        # Webhook deliveries and customer mail (SPEC §12), on queues of their own: a receiver or an
        # SMTP server that is slow or down never holds up a booking step.
        ProcessSpec(
            "worker-notify",
            (*celery, "worker", "-Q", "webhooks,mail", "-n", "notify@%h", "--concurrency", str(2 * workers), "-E"),
            env=worker_env(data, "worker-notify", ports["worker-notify"]),
        ),
        ProcessSpec("beat", (*celery, "beat", "--schedule", f"{data}/celerybeat-schedule"),
                    env={"HEARTBEAT_FILE": f"{data}/heartbeat/beat"}),
    ]  # fmt: skip
    if flower:
        specs.append(
            ProcessSpec(
                "flower",
                (*celery, "flower", "--address=127.0.0.1", f"--port={flower_port}",
                 f"--basic-auth={flower_auth}", "--persistent=True", f"--db={data}/flower.db"),
            )
        )  # fmt: skip
    return specs


# Each worker serves its step metrics on its own port (tasks/telemetry.py); liveness probes read
# each process's heartbeat file (`python -m tasks.probe worker|beat` with HEARTBEAT_FILE).
# These are the run command's ports; every other stack (tests, benchmark, chaos run) gets free ones
# (`Stack(metrics_ports=None)`), so it starts while a `bin/run` stack is up.
WORKER_METRICS_PORTS = {"worker-booking": 9101, "worker-payments": 9102, "worker-maintenance": 9103,
                        "worker-admission": 9104, "worker-notify": 9105}


def free_metrics_ports() -> dict[str, int]:
    """A free loopback port for each worker's metrics, as for the other servers of a private stack."""
    from .embedded import free_port
    ports: dict[str, int] = {}
    while len(set(ports.values())) < len(WORKER_METRICS_PORTS):
        ports = {name: free_port() for name in WORKER_METRICS_PORTS}
    return ports


def metrics_env(data: str, name: str) -> dict[str, str]:
    """prometheus-client multiprocess mode: one directory per process group."""
    return {"PROMETHEUS_MULTIPROC_DIR": f"{data}/metrics/{name}"}


def worker_env(data: str, name: str, metrics_port: int) -> dict[str, str]:
    return {**metrics_env(data, name), "WORKER_METRICS_PORT": str(metrics_port),
            "WORKER_METRICS_ADDR": "127.0.0.1", "HEARTBEAT_FILE": f"{data}/heartbeat/{name}"}


def common_env(data_dir: Path | str, database_url: str, redis_url: str,
               gateway_port: int = GATEWAY_PORT, mail_port: int = MAIL_SINK_PORT) -> dict[str, str]:
    """What every process gets on top of the caller's environment."""
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "GATEWAY_URL": f"http://127.0.0.1:{gateway_port}",
        "SMTP_URL": f"smtp://127.0.0.1:{mail_port}",
        "BOXOFFICE_INSTANCE": f"{data_dir}/instance",
    }


def process_env(
    spec: ProcessSpec,
    base: dict[str, str],
    data_dir: Path,
    database_url: str,
    redis_url: str,
    web_concurrency: int,
    gateway_port: int = GATEWAY_PORT,
    mail_port: int = MAIL_SINK_PORT,
) -> dict[str, str]:
    """The full environment of one process: caller's env, then the stack's, then the process's own."""
    env = dict(base)
    env.update(common_env(data_dir, database_url, redis_url, gateway_port, mail_port))
    env.setdefault("WEB_CONCURRENCY", str(web_concurrency))
    env.update(spec.env)
    env["PYTHONUNBUFFERED"] = "1"  # logs reach the log file as they happen
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), base.get("PYTHONPATH", "")]))
    return env


def flower_credentials(data_dir: Path) -> tuple[str, bool]:
    """USER:PASS for Flower: FLOWER_BASIC_AUTH, else generated once and kept in DATA/flower-credentials.

    Returns (credentials, generated_now) so the caller prints a new password exactly once.
    """
    from_env = os.environ.get("FLOWER_BASIC_AUTH")
    if from_env:
        return from_env, False
    path = Path(data_dir) / "flower-credentials"
    if path.exists():
        return path.read_text().strip(), False
    credentials = f"admin:{secrets.token_urlsafe(18)}"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(credentials + "\n")
    return credentials, True
