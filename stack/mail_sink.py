"""The local mail sink: an SMTP server (aiosmtpd) that keeps every message it accepts as a file,
so a developer reads the mail customers were sent (`python -m stack.mail_sink`; bin/run starts it
and points SMTP_URL at it).

Each message is one file in the folder, `<time received>-<Message-ID>.eml`: a message sent twice
(the same Message-ID) shows as two files, never as one silently overwritten. `--refuse N` answers
the first N messages with 451 (try again later), for tests of an SMTP server that refuses.
"""
from __future__ import annotations

import argparse
import logging
import re
import signal
import threading
import time
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

from aiosmtpd.controller import Controller

log = logging.getLogger("stack.mail_sink")


def file_name(message_id: str, received: float) -> str:
    safe = re.sub(r"[^A-Za-z0-9@._-]", "", message_id) or "no-message-id"
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(received))}.{int(received * 1e6) % 1_000_000:06d}-{safe}.eml"


class MailFolder:
    """The aiosmtpd handler: each accepted message written whole to the folder."""

    def __init__(self, folder: Path, refuse: int = 0):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.refuse = refuse
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:
        with self._lock:
            if self.refuse > 0:
                self.refuse -= 1
                return "451 4.3.0 try again later"
        content = envelope.original_content or envelope.content
        message = message_from_bytes(content, policy=default_policy)
        path = self.folder / file_name(message.get("Message-ID", ""), time.time())
        draft = path.with_suffix(".part")
        draft.write_bytes(content)
        draft.rename(path)  # a reader never sees half a message
        log.info("stored %s for %s (%s)", path.name, ", ".join(envelope.rcpt_tos), message.get("Subject", ""))
        return "250 OK"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.mail_sink",
                                     description="A local SMTP server that keeps every message it accepts as a file.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--dir", default="var/mail", help="where messages are stored (default var/mail)")
    parser.add_argument("--refuse", type=int, default=0, help="answer the first N messages with 451")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    controller = Controller(MailFolder(Path(args.dir), args.refuse), hostname=args.host, port=args.port)
    controller.start()
    log.info("mail sink listening on %s:%d, storing in %s", args.host, args.port, args.dir)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
