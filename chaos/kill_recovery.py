"""How long a SIGKILLed worker's steps wait before they run again, on Redis and on RabbitMQ.

`python -m chaos.kill_recovery [--broker amqp://…] [--kills 3]` starts the stack as the chaos run
does (its own PostgreSQL and Redis; RabbitMQ on a vhost of its own when --broker names one), and
then, --kills times: books a few seats with a slow gateway, waits until a charge is under way,
SIGKILLs worker-payments (its process group: main process and pool children, mid-charge), and
measures the seconds from the kill until every booking whose charge was under way is paid. The
supervisor restarts the worker within a second or two on either broker; what differs is when the
broker hands the killed worker's messages out again:
- Redis holds them in its unacked set until the visibility timeout (an hour), so they wait for
  the re-drive job (REDRIVE_STUCK_AFTER_S, 60 s) to send their steps again from the database;
- RabbitMQ returns them to their queue the moment the dead worker's connection closes.

Its last line is one JSON object: {broker, kills, recovery_s: [...], median_s}.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import statistics
import sys
import time

from chaos.harness import Chaos, parse_args as chaos_args

log = logging.getLogger("chaos.kill_recovery")

GATEWAY_LATENCY_MS = 3000  # a charge lasts this long: the kill lands in the middle of one
BOOKINGS_PER_KILL = 6


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m chaos.kill_recovery", description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", default=os.environ.get("BROKER_URL"),
                        help="a RabbitMQ amqp:// URL (default: BROKER_URL, else Redis)")
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300.0, help="longest wait for one recovery")
    return parser.parse_args(argv)


class KillRecovery(Chaos):
    def states(self, ids: list[str]) -> dict[str, tuple[str, str]]:
        from sqlalchemy import select

        from models import db
        from models.bookings import Booking
        from models.payments import Payment
        with self.app.app_context():
            rows = db.session.execute(select(Booking.id, Booking.status, Payment.status)
                                      .join(Payment, Payment.booking_id == Booking.id)
                                      .where(Booking.id.in_(ids))).all()
            db.session.remove()
        return {booking_id: (status, payment) for booking_id, status, payment in rows}

    def prepare_one(self) -> None:
        from models import db
        from models.users import Role, register
        email, password = f"recovery-admin-{secrets.token_hex(4)}@example.com", "recovery-admin-password"
        with self.app.app_context():
            register(email, password, "Recovery admin", role=Role.ADMIN)
            db.session.commit()
        self.admin = self._token(email, password)
        email = f"recovery-{secrets.token_hex(4)}@example.com"
        response = self.api.call("POST", "/auth/register",
                                 json_body={"email": email, "password": "password-1", "name": "R"})
        assert response.status_code == 201, response.text
        self.customer = self._token(email, "password-1")
        from datetime import datetime, timedelta, timezone
        response = self.api.call("POST", "/shows", headers=self.admin, json_body={
            "title": "Recovery", "venue": "Loopback Hall", "price": 1000, "capacity": 1000,
            "starts_at": (datetime.now(timezone.utc) + timedelta(days=30)).isoformat()})
        assert response.status_code == 201, response.text
        self.show = response.json()["id"]

    def wait(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise RuntimeError(f"timed out waiting for {what}")

    def one_kill(self, timeout: float) -> float:
        self.gateway.set_faults(latency_ms=GATEWAY_LATENCY_MS)
        ids = []
        for _ in range(BOOKINGS_PER_KILL):
            response = self.api.call("POST", "/bookings", headers={
                **self.customer, "Idempotency-Key": secrets.token_hex(8)},
                json_body={"show_id": self.show, "qty": 1, "payment_method": "tok_ok"})
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])
        in_flight = self.wait(lambda: [i for i, (_, payment) in self.states(ids).items() if payment == "PENDING"],
                              120, "a charge to be under way")
        time.sleep(0.5)  # the gateway has the charge: the worker is in the middle of it
        os.killpg(self.stack.process("worker-payments").pid, signal.SIGKILL)
        killed_at = time.monotonic()
        self.gateway.clear_faults()  # what runs again is answered at once
        self.wait(lambda: all(self.states(in_flight)[i][1] == "PAID" for i in in_flight), timeout,
                  "the killed worker's charges to run again")
        recovered = time.monotonic() - killed_at
        self.wait(lambda: all(payment == "PAID" for _, payment in self.states(ids).values()), timeout,
                  "every booking to be paid")
        log.info("recovered in %.1f s (%d charge(s) under way at the kill)", recovered, len(in_flight))
        return recovered


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s recovery %(levelname)s %(message)s",
                        stream=sys.stderr)
    # Holds long enough that no killed booking expires before its charge runs again (on Redis that
    # is the re-drive's 60 s and more).
    run = KillRecovery(chaos_args(["--workers", "2", "--hold-minutes", "10",
                                   *(["--broker", args.broker] if args.broker else [])]))
    result: dict = {"broker": "RabbitMQ" if args.broker else "Redis", "kills": args.kills}
    # SIGTERM stops the stack it started, as the chaos run does (stack.stop in `finally`).
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        run.start()
        run.prepare_one()
        result["recovery_s"] = [round(run.one_kill(args.timeout), 1) for _ in range(args.kills)]
        result["median_s"] = statistics.median(result["recovery_s"])
    except BaseException as error:  # noqa: BLE001 - the last line says what went wrong
        log.exception("recovery run failed")
        result["error"] = repr(error)
    finally:
        run.stop()
    print(json.dumps(result), flush=True)
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
