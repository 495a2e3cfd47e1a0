"""A RabbitMQ server that this machine may administer: vhosts of its own, and restarts.

The tests and the chaos run use RabbitMQ only when BROKER_URL names one (there is no embedded
RabbitMQ: it needs Erlang, which no pip package brings). They give each run vhosts of its own,
so that runs never see each other's messages, and delete them afterwards. Administering goes
through `rabbitmqctl` on this machine; on a broker it cannot control (a remote one, or none
installed), `controllable()` says so and the callers leave restarts out.
"""
from __future__ import annotations

import shutil
import subprocess
import time
from urllib.parse import quote, unquote, urlsplit



def is_rabbitmq(url: str | None) -> bool:
    """An AMQP URL: RabbitMQ is the broker (celeryconfig.py reads BROKER_URL with this)."""
    return bool(url) and url.split("://", 1)[0] in ("amqp", "amqps", "pyamqp")


class RabbitMQ:
    """The server of an `amqp://user:password@host:port/vhost` URL."""

    def __init__(self, url: str):
        if not is_rabbitmq(url):
            raise ValueError(f"not a RabbitMQ URL: {url!r}")
        self.url = url
        parts = urlsplit(url)
        self.user = unquote(parts.username or "guest")
        self.host = parts.hostname or "127.0.0.1"

    def with_vhost(self, vhost: str) -> str:
        """This URL, on another vhost."""
        return urlsplit(self.url)._replace(path="/" + quote(vhost, safe="")).geturl()

    def controllable(self) -> bool:
        """rabbitmqctl is here and answers, and the server is this machine's."""
        if self.host not in ("127.0.0.1", "localhost", "::1") or not shutil.which("rabbitmqctl"):
            return False
        try:
            self._ctl("status", timeout=30)
            return True
        except (subprocess.SubprocessError, OSError):
            return False

    def _ctl(self, *args: str, timeout: float = 60) -> str:
        for attempt in (1, 2):
            result = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=timeout)
            if result.returncode == 0:
                return result.stdout
            # Asked while the server restarts (another run's fault): once it is up, ask again.
            if attempt == 1 and "app to be running" in result.stderr and args[0] not in ("stop_app", "start_app"):
                subprocess.run(["rabbitmqctl", "-q", "await_startup"], capture_output=True, timeout=120)
                continue
            raise subprocess.CalledProcessError(result.returncode, ["rabbitmqctl", *args],
                                                result.stdout, result.stderr)

    def add_vhost(self, vhost: str) -> str:
        """A new, empty vhost this URL's user may use fully; its URL."""
        self._ctl("add_vhost", vhost)
        self._ctl("set_permissions", "-p", vhost, self.user, ".*", ".*", ".*")
        return self.with_vhost(vhost)

    def delete_vhost(self, vhost: str) -> None:
        """The vhost and every queue and message in it gone (no error if it was not there)."""
        try:
            self._ctl("delete_vhost", vhost)
        except subprocess.CalledProcessError as error:
            if "does not exist" not in (error.stderr or "") + (error.stdout or ""):
                raise

    def empty_vhost(self, vhost: str) -> str:
        """The vhost deleted and made again: what a broker that lost its data comes back as."""
        self.delete_vhost(vhost)
        return self.add_vhost(vhost)

    def stop(self) -> None:
        """The RabbitMQ application stopped (the Erlang node stays up): every connection closed,
        publishes refused, until `start`."""
        self._ctl("stop_app")

    def start(self) -> None:
        self._ctl("start_app")
        self._ctl("await_startup", timeout=120)

    def restart(self) -> None:
        """Stopped and started again. Quorum queues keep their messages: they are on disk."""
        self.stop()
        time.sleep(0.5)
        self.start()


def broker_env(broker_url: str | None) -> dict[str, str]:
    """What a process's environment must say so that it uses this broker (nothing for Redis)."""
    return {"BROKER_URL": broker_url} if is_rabbitmq(broker_url) else {}

