"""A daemon thread per process, started on first use (and again in a forked child, which
inherits the parent's objects but none of its threads)."""
import os
import threading
from collections.abc import Callable


class ProcessThread:
    """Runs `target` forever on one daemon thread of the current process."""

    def __init__(self, target: Callable[[], None], name: str):
        self._target, self._name = target, name
        self._lock = threading.Lock()
        self._pid = None

    def ensure_started(self) -> None:
        """Start the thread unless this process already has it (cheap: one comparison)."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():  # first use in this process (or after a fork)
                self._pid = os.getpid()
                threading.Thread(target=self._target, name=self._name, daemon=True).start()
