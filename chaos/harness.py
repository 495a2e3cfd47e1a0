"""Chaos harness: prove that the stack never loses and never doubles.

It starts its own PostgreSQL and Redis (embedded, in a temporary folder, on free loopback ports)
and the whole stack on top with `stack.supervisor.Stack`, exactly as the run command does. With
`--broker amqp://…` (or BROKER_URL) the steps go through that RabbitMQ instead, on a vhost of the
run's own when rabbitmqctl can make one (stack/rabbitmq.py); Redis keeps the shared state. Then:

1. a workload of N bookings from many customers over several shows (some with a declined card,
   some cancelled soon after), through the HTTP API, retrying with the same Idempotency-Key when
   the API itself is down. A share of them go to reserved shows on one seat map (SPEC §8): mostly
   best available in a random category, the rest picks of seats the seat page showed AVAILABLE a
   moment before (so picks collide, as real ones do); one of those shows has a purchase limit.
   Another share goes through the waiting room of a queued show (SPEC §9): each such customer
   joins, polls until admitted, and books with their Admission-Token. A share of the paid
   general bookings get their ticket issued and scanned at the door (SPEC §10): two gates at
   once, or a gate racing the customer's cancel. Some general shows have a cancellation policy
   (SPEC §11), one of 10% and one of 100% at the run's distance from the show, so cancels of
   paid bookings keep a fee and a 100% one gives nothing back; some paid bookings of two seats
   or more give one seat back first (a partial cancel) and maybe the rest later. One more show
   takes a share of the bookings until it is cancelled (POST /shows/{id}/cancel), a fault of the
   schedule in the middle of the workload: from then on its bookings are refused (409) and every
   booking it had is refunded in full in the background;
2. meanwhile, faults on a schedule: worker processes and pool children SIGKILLed mid-task, Redis
   restarted empty, RabbitMQ restarted (when it is the broker and this machine controls it),
   PostgreSQL restarted, the gateway driven through errors, timeouts and an outage;
3. the faults stop; the harness waits until the system is quiet (every booking final with no
   charge or refund under way, the my page converged) or the quiet timeout passes;
4. it checks SPEC §4 and §8 against the database and the gateway's own ledger
   (models/consistency.py), and the seat page of each reserved show against the seats of its
   live bookings, from the API, that no answered queue join was lost nor any entry admitted
   twice, that every cancelled booking's fee is its show's (or 0, cancelled unpaid), part by
   part, and that the cancelled show's refunds are all done; it prints a summary, and as its
   last line one JSON object. Exit
   status 0 only if all counts are 0 (every count the report has, whatever it adds later).

Everything talks to 127.0.0.1 only; the whole run is bounded by --time-limit and stops by itself.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import requests

from chaos import notify

log = logging.getLogger("chaos")

GATEWAY_TIMEOUT_S = 2  # the stack's read timeout of a gateway call (the slow-gateway fault outlasts it)

RESERVED_PRICES = {"VIP": 5000, "R": 4000, "S": 3000, "A": 2000}
RESERVED_LIMIT = 4  # max_per_customer of the second reserved show: customers run into it
BEST_AVAILABLE_SHARE = 0.7  # of the reserved bookings; the rest are picks
QUEUE_ADMIT_PER_MINUTE = 600  # the queued show's rate: customers wait seconds, through the faults
QUEUE_POLL_S = 0.5
QUEUE_PATIENCE_S = 300.0
# Who picks goes for the best seats left (the page lists seats in quality order): picks collide
# with each other and with best available, as on a real on-sale, not only when a hall is full.
PICK_AMONG_BEST = 12
# SPEC §11: general show i gets FEE_POLICIES[i % 3]; the shows start in 30 days, so the first
# rule of each matches: no fee, 10%, 100% (nothing given back).
FEE_POLICIES = (None,
                [{"hours_before": 168, "fee_percent": 10}, {"hours_before": 0, "fee_percent": 30}],
                [{"hours_before": 0, "fee_percent": 100}])
FEE_PERCENT_NOW = (0, 10, 100)
PARTIAL_SHARE = 0.4  # of the cancels of general bookings of 2+ seats: one seat back first, once paid
DOOMED_SHARE = 0.06  # of the general bookings: to the show cancelled in the middle of the run


def chaos_hall() -> dict:
    """The seat map of the reserved shows: 314 seats in three sections and four categories, with
    rows whose numbering has gaps (an aisle, a pillar) and seats whose category differs from their
    row's, so best available meets rows where the adjacent blocks are short."""
    def row(name, category, seats):
        return {"name": name, "category": category, "seats": seats}
    aisle = [*range(1, 9), *range(11, 21)]  # no seats 9 and 10
    pillar = [*range(1, 6), *range(8, 21)]  # no seats 6 and 7
    return {"name": "Chaos hall", "sections": [
        {"name": "Floor", "rows": [
            row("A", "VIP", 20), row("B", "VIP", 20), row("C", "R", 20), row("D", "R", 20),
            row("E", "R", aisle)]},
        {"name": "Balcony", "rows": [
            row("F", "S", [*range(1, 20), {"number": 20, "category": "A"}]), row("G", "S", 20),
            row("H", "S", pillar), row("I", "A", 20), row("J", "A", 20), row("K", "A", 20),
            row("L", "A", 20), row("M", "A", 20)]},
        {"name": "Gallery", "rows": [row("N", "A", 20), row("O", "A", 20), row("P", "A", aisle)]},
    ]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bookings", type=int, default=2000, help="bookings to make (default 2000)")
    parser.add_argument("--shows", type=int, default=10, help="general admission shows to spread them over")
    parser.add_argument("--reserved-share", type=float, default=0.3,
                        help="share of the bookings that go to the two reserved shows")
    parser.add_argument("--queued-share", type=float, default=0.05,
                        help="share of the bookings made through the waiting room of a queued show "
                             "(join, poll until admitted, book with the Admission-Token)")
    parser.add_argument("--customers", type=int, default=60)
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument("--oversubscribe", type=float, default=1.3,
                        help="seats asked for / seats available (above 1, some bookings are rejected)")
    parser.add_argument("--cancel-rate", type=float, default=0.2)
    parser.add_argument("--decline-rate", type=float, default=0.05)
    parser.add_argument("--door-share", type=float, default=0.15,
                        help="share of the general bookings whose ticket is issued and scanned at the door once paid")
    parser.add_argument("--workers", type=int, default=2, help="concurrency of each worker process")
    parser.add_argument("--fault-interval", type=float, default=8.0, help="seconds between faults")
    parser.add_argument("--hold-minutes", type=float, default=1.0, help="hold deadline of the stack under test")
    parser.add_argument("--quiet-timeout", type=float, default=420.0,
                        help="how long to wait for every booking to settle after the faults stop")
    parser.add_argument("--time-limit", type=float, default=1500.0, help="hard bound on the whole run")
    parser.add_argument("--flower", action="store_true", help="also run Flower (off to spare CPU)")
    parser.add_argument("--broker", default=os.environ.get("BROKER_URL"),
                        help="a RabbitMQ amqp:// URL to use as the broker (default: BROKER_URL, else Redis)")
    parser.add_argument("--data-dir", help="where servers and logs live (default: a fresh temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the data folder afterwards")
    parser.add_argument("--seed", type=int, default=None)
    return parser.parse_args(argv)


class Api:
    """A tiny HTTP client for the API under test, patient with an API that restarts."""

    def __init__(self, base: str):
        self.base = base
        self.local = threading.local()

    def session(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        return self.local.session

    def call(self, method, path, *, headers=None, json_body=None, ok=(200, 201, 202), patience=120.0):
        """Send until an answer in `ok` or a 4xx; a 5xx or connection error is retried (the same
        Idempotency-Key makes that safe)."""
        deadline = time.monotonic() + patience
        delay = 0.2
        while True:
            try:
                response = self.session().request(method, self.base + path, headers=headers, json=json_body,
                                                  timeout=30)
                if response.status_code in ok or 400 <= response.status_code < 500:
                    return response
                error = f"HTTP {response.status_code}"
            except requests.RequestException as exc:
                error = repr(exc)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{method} {path}: gave up after {patience:.0f}s ({error})")
            time.sleep(delay)
            delay = min(delay * 2, 3.0)


class Chaos:
    def __init__(self, args):
        self.args = args
        self.random = random.Random(args.seed)
        self.accepted: list[str] = []
        self.reserved_accepted: list[tuple[str, str, str]] = []  # (booking, show, "pick" or "best")
        self.reserved_outcomes: dict[str, Counter] = {}  # "pick" / "best" -> final status or reject reason
        self.accepted_lock = threading.Lock()
        self.cancels = Counter()
        self.door: Counter = Counter()  # what the door scans gave (and door_* problems: must be 0)
        self.partials: Counter = Counter()  # answers to partial cancels
        self.parts: dict[str, list[int]] = {}  # booking id -> the qty of each part cancelled
        self.doomed: Counter = Counter()  # bookings of the cancelled show refused, and any accepted after
        self.sold_out_refused: Counter = Counter()  # show id -> bookings answered 409 sold_out at once
        self.doomed_cancel_sent = threading.Event()  # the cancel asked for
        self.doomed_cancelled = threading.Event()  # and answered 202
        self.faults: Counter = Counter()          # fault type -> times it fired
        self.fault_failures: Counter = Counter()  # fault type -> times it could not be made
        self.slow_gateway_bookings: list[str] = []  # cancelled while the gateway was too slow
        self.slow_gateway = threading.Event()
        self.workload_done = threading.Event()
        self.stop_faults = threading.Event()
        self.errors: list[str] = []
        self.seat_problems: list[str] = []
        # The waiting room: customers who joined (one entry each), the entries answered 201/200,
        # the admitted_until each poll showed per entry, and how many bookings went through it.
        self.queued_customers: set[int] = set()
        self.joined: dict[str, int] = {}
        self.admitted_seen: dict[str, set] = {}
        self.queued_bookings = 0
        self.started = time.monotonic()
        self.rabbitmq, self.vhost = None, None  # the broker, when RabbitMQ that this machine controls

    # -- setup --------------------------------------------------------------------------------
    def start(self):
        from stack.embedded import EmbeddedPostgres, EmbeddedRedis
        from stack.supervisor import Stack

        args = self.args
        self.tmp = Path(args.data_dir or tempfile.mkdtemp(prefix="boxoffice-chaos-")).resolve()
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.postgres = EmbeddedPostgres(self.tmp / "postgres", free_port())
        self.redis = EmbeddedRedis(self.tmp / "redis", free_port())
        log.info("starting PostgreSQL and Redis in %s", self.tmp)
        self.postgres.start()
        self.postgres.ensure_database("boxoffice")
        self.redis.start()
        env = dict(os.environ)
        env.update(self.start_broker())
        env.update({
            "DATABASE_URL": self.postgres.url("boxoffice"),
            "REDIS_URL": self.redis.url(0),
            "HOLD_MINUTES": str(args.hold_minutes),
            "GATEWAY_TIMEOUT_S": str(GATEWAY_TIMEOUT_S),
            "BREAKER_RESET_S": "5",
            "RATE_LIMITS": "off",  # the workload is one client IP making thousands of requests
            "WEB_CONCURRENCY": "2",
            # A mail claimed by the notify worker the run kills is due again after its lease: 30 s
            # here (still three SMTP timeouts), not 120, so it is sent before the quiet timeout.
            "MAIL_LEASE_S": "30",
        })
        # Stack reads the servers from the process environment: point it at ours.
        os.environ["DATABASE_URL"], os.environ["REDIS_URL"] = env["DATABASE_URL"], env["REDIS_URL"]
        self.stack = Stack(self.tmp / "stack", api_port=free_port(), gateway_port=free_port(),
                           flower_port=free_port(), flower=args.flower, workers=args.workers,
                           env=env, health_timeout=180)
        log.info("starting the stack")
        self.stack.start()
        self.api = Api(self.stack.urls["api"])
        from gateway.client import GatewayClient
        self.gateway = GatewayClient(self.stack.urls["gateway"], timeout=30)
        from web import create_app
        self.app = create_app({"SQLALCHEMY_DATABASE_URI": _psycopg(env["DATABASE_URL"]),
                               "GATEWAY_URL": self.stack.urls["gateway"]})

    def start_broker(self) -> dict[str, str]:
        """RabbitMQ, when asked for: a vhost of the run's own if this machine administers the
        server (and then restarts are among the faults), else the URL as given."""
        if not self.args.broker:
            return {}
        from stack.rabbitmq import RabbitMQ
        from stack.supervisor import mask_password
        server = RabbitMQ(self.args.broker)
        url = self.args.broker
        if server.controllable():
            self.rabbitmq, self.vhost = server, f"boxoffice-chaos-{secrets.token_hex(4)}"
            url = server.add_vhost(self.vhost)
        log.info("broker: RabbitMQ, %s (restarts %s)", mask_password(url),
                 "among the faults" if self.rabbitmq else "left out: not a server this machine controls")
        os.environ["BROKER_URL"] = url
        return {"BROKER_URL": url}

    def stop(self):
        receiver = getattr(self, "receiver", None)
        if receiver is not None:
            receiver.stop()
        stack = getattr(self, "stack", None)
        if stack is not None:
            stack.stop(timeout=20)
        for server in (getattr(self, "redis", None), getattr(self, "postgres", None)):
            if server is not None:
                try:
                    server.stop()
                except Exception as error:  # noqa: BLE001 - best effort on the way out
                    log.warning("stopping %s: %r", server, error)
        if getattr(self, "rabbitmq", None) is not None and not self.args.keep:
            try:
                self.rabbitmq.delete_vhost(self.vhost)
            except Exception as error:  # noqa: BLE001 - a leftover vhost is only clutter
                log.warning("deleting the vhost %s: %r", self.vhost, error)
        if not self.args.keep and not self.args.data_dir and getattr(self, "tmp", None):
            shutil.rmtree(self.tmp, ignore_errors=True)

    def prepare(self):
        from models import db
        from models.users import Role, register

        email, password = f"chaos-admin-{secrets.token_hex(4)}@example.com", "chaos-admin-password"
        with self.app.app_context():
            register(email, password, "Chaos admin", role=Role.ADMIN)
            db.session.commit()
        self.admin = self._token(email, password)
        # A partner listening for every event (SPEC §12), from before the first booking.
        self.receiver = notify.Receiver()
        self.receiver.start()
        self.endpoint = notify.register(self.api, self.admin, self.receiver)
        email = f"chaos-gate-{secrets.token_hex(4)}@example.com"
        with self.app.app_context():
            register(email, password, "Chaos gate", role=Role.STAFF)
            db.session.commit()
        self.staff = self._token(email, password)
        self.customers = []
        for i in range(self.args.customers):
            email = f"chaos-{i}-{secrets.token_hex(3)}@example.com"
            response = self.api.call("POST", "/auth/register",
                                     json_body={"email": email, "password": "password-1", "name": f"C{i}"})
            assert response.status_code == 201, response.text
            self.customers.append(self._token(email, "password-1"))
        general_share = 1 - self.args.reserved_share
        seats_asked = self.args.bookings * general_share * 2  # qty is 1..3, mean 2
        capacity = max(1, int(seats_asked / self.args.oversubscribe / self.args.shows))
        starts_at = (datetime.now(timezone.utc) + timedelta(days=30)).isoformat()
        self.shows = []
        self.fee_percent = {}  # general show id -> the fee_percent a cancel asked now costs
        self.price = {}
        for i in range(self.args.shows):
            response = self.api.call("POST", "/shows", headers=self.admin, json_body={
                "title": f"Chaos {i}", "venue": "Loopback Hall", "starts_at": starts_at,
                "price": 1000 + i, "capacity": capacity, "cancellation_policy": FEE_POLICIES[i % 3]})
            assert response.status_code == 201, response.text
            self.shows.append(response.json()["id"])
            self.fee_percent[self.shows[-1]] = FEE_PERCENT_NOW[i % 3]
            self.price[self.shows[-1]] = 1000 + i
        # The show cancelled mid-way: a fee policy of its own, which its cancel must not apply.
        response = self.api.call("POST", "/shows", headers=self.admin, json_body={
            "title": "Chaos doomed", "venue": "Loopback Hall", "starts_at": starts_at, "price": 2500,
            "capacity": capacity, "cancellation_policy": FEE_POLICIES[1]})
        assert response.status_code == 201, response.text
        self.doomed_show = response.json()["id"]
        self.fee_percent[self.doomed_show], self.price[self.doomed_show] = FEE_PERCENT_NOW[1], 2500
        self.prepare_reserved(starts_at)
        response = self.api.call("POST", "/shows", headers=self.admin, json_body={
            "title": "Chaos queued", "venue": "Loopback Hall", "starts_at": starts_at, "price": 1500,
            # Room for every queued booking (qty 1..2) several times over: a customer who joined
            # must find seats, and a join refused for a sold-out show would be no queue fault.
            "capacity": int(self.args.bookings * self.args.queued_share * 4) + 10,
            "waiting_room": {"admit_per_minute": QUEUE_ADMIT_PER_MINUTE, "session_minutes": 15}})
        assert response.status_code == 201, response.text
        self.queued_show = response.json()["id"]
        # One queue entry per customer and show: customers of their own, one per queued booking.
        self.queue_customers = []
        for i in range(int(self.args.bookings * self.args.queued_share * 1.5) + 5):
            email = f"chaos-queue-{i}-{secrets.token_hex(3)}@example.com"
            response = self.api.call("POST", "/auth/register",
                                     json_body={"email": email, "password": "password-1", "name": f"Q{i}"})
            assert response.status_code == 201, response.text
            self.queue_customers.append(self._token(email, "password-1"))

    def prepare_reserved(self, starts_at):
        """One seat map and two reserved shows on it, the second with a purchase limit."""
        response = self.api.call("POST", "/seat-maps", headers=self.admin, json_body=chaos_hall())
        assert response.status_code == 201, response.text
        seat_map = response.json()
        self.categories = [category["name"] for category in seat_map["categories"]]
        self.reserved_shows = []
        for i, limit in enumerate((None, RESERVED_LIMIT)):
            response = self.api.call("POST", "/shows", headers=self.admin, json_body={
                "title": f"Chaos reserved {i}", "venue": "Chaos hall", "starts_at": starts_at,
                "seat_map_id": seat_map["id"], "prices": RESERVED_PRICES, "max_per_customer": limit})
            assert response.status_code == 201, response.text
            self.reserved_shows.append(response.json()["id"])

    def _token(self, email, password):
        response = self.api.call("POST", "/auth/token", json_body={"email": email, "password": password})
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    # -- workload -----------------------------------------------------------------------------
    def workload(self):
        # Paced over the whole fault schedule, so every fault meets work in progress.
        duration = self.schedule_seconds()
        start = time.monotonic()
        plan = [start + duration * i / self.args.bookings for i in range(self.args.bookings)][::-1]
        lock = threading.Lock()

        def client(index):
            rnd = random.Random(self.random.random() + index)
            while True:
                with lock:
                    if not plan:
                        return
                    due = plan.pop()
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())
                try:
                    self.one_booking(rnd)
                except Exception as error:  # noqa: BLE001 - recorded, reported, fails the run
                    self.errors.append(repr(error))

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(self.args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.workload_done.set()

    def one_booking(self, rnd):
        customer = rnd.choice(self.customers)
        method = "tok_declined" if rnd.random() < self.args.decline_rate else "tok_ok"
        reserved = rnd.random() < self.args.reserved_share
        extra_headers = {}
        queued = not reserved and rnd.random() < self.args.queued_share / (1 - self.args.reserved_share)
        if queued:
            customer, token = self.through_the_waiting_room(rnd)
            form = {"show_id": self.queued_show, "qty": rnd.randint(1, 2)}
            extra_headers = {"Admission-Token": token}
        elif reserved:
            form = self.reserved_form(rnd)
        elif rnd.random() < DOOMED_SHARE:
            form = {"show_id": self.doomed_show, "qty": rnd.randint(1, 3)}
        else:
            form = {"show_id": rnd.choice(self.shows), "qty": rnd.randint(1, 3)}
        # One key for every attempt: a retry after a 5xx or a dropped connection is the same booking.
        headers = {**customer, **extra_headers, "Idempotency-Key": secrets.token_hex(12)}
        doomed = form["show_id"] == self.doomed_show
        sent_after_cancel = doomed and self.doomed_cancelled.is_set()
        response = self.api.call("POST", "/bookings", headers=headers, json_body={**form, "payment_method": method},
                                 ok=(202, 409))
        if response.status_code == 409 and response.json().get("reject_reason") == "sold_out":
            # Refused at once: every seat (of its category) paid for, no hold that could come back.
            with self.accepted_lock:
                self.sold_out_refused[form["show_id"]] += 1
            return
        if doomed and response.status_code == 409:
            # Refused once the cancel was asked for; never before.
            self.doomed["refused" if self.doomed_cancel_sent.is_set() else "refused_before_cancel"] += 1
            return
        if sent_after_cancel:  # sent after the cancel was answered, yet accepted
            self.doomed["accepted_after_cancel"] += 1
        if response.status_code != 202:
            raise RuntimeError(f"booking not accepted: {response.status_code} {response.text[:200]}")
        booking_id = response.json()["id"]
        with self.accepted_lock:
            self.accepted.append(booking_id)
            self.queued_bookings += queued
            if reserved:
                self.reserved_accepted.append((booking_id, form["show_id"], "pick" if "seats" in form else "best"))
        if not reserved and rnd.random() < self.args.door_share:
            self.at_the_door(booking_id, customer, rnd)
        elif rnd.random() < self.args.cancel_rate:
            if not reserved and not queued and not doomed and form["qty"] >= 2 and rnd.random() < PARTIAL_SHARE:
                self.cancel_a_part(booking_id, customer, form, rnd)
                if rnd.random() < 0.5:
                    return  # it stays PAID with the rest
            time.sleep(rnd.uniform(0, 1.5))  # cancel at any point of the lifecycle
            slow = self.slow_gateway.is_set()
            answer = self.api.call("POST", f"/bookings/{booking_id}/cancel", headers=customer, ok=(202, 409))
            self.cancels[answer.status_code] += 1
            if slow and answer.status_code == 202:
                with self.accepted_lock:
                    self.slow_gateway_bookings.append(booking_id)

    def cancel_a_part(self, booking_id, customer, form, rnd, patience=60.0):
        """Once the booking is PAID, give one seat back (SPEC §11). 202: recorded with its
        fee-to-be; 409: the booking did not get paid (declined, expired) or was moved on."""
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            state = self.api.call("GET", f"/bookings/{booking_id}", headers=customer, ok=(200,)).json()
            if state["status"] != "PENDING" and state["status"] != "CONFIRMED":
                break
            time.sleep(0.3)
        answer = self.api.call("POST", f"/bookings/{booking_id}/cancel", headers=customer,
                               json_body={"qty": 1}, ok=(202, 409))
        self.partials[answer.status_code] += 1
        if answer.status_code == 202:
            with self.accepted_lock:
                self.parts.setdefault(booking_id, []).append(1)

    def cancel_doomed_show(self, patience=30.0):
        """The fault "show cancelled mid-workload": repeated on a later pass, it is harmless. The
        first time, it waits (a while, not for ever) until the show has a PAID booking, so that
        the cancel has a refund to make: with a few bookings per show, the faults before it (a
        broker restart among them) can leave none paid yet, and the run would prove nothing."""
        deadline = time.monotonic() + patience
        while (not self.doomed_cancel_sent.is_set() and not self.workload_done.is_set()
               and time.monotonic() < deadline and not self.doomed_paid()):
            time.sleep(1)
        self.doomed_cancel_sent.set()
        answer = self.api.call("POST", f"/shows/{self.doomed_show}/cancel", headers=self.admin, ok=(202,))
        assert answer.json()["status"] == "CANCELLED", answer.text
        self.doomed_cancelled.set()

    def doomed_paid(self) -> bool:
        from models import db
        from sqlalchemy import text as sql
        try:
            with self.app.app_context():
                paid = db.session.execute(sql("SELECT count(*) FROM bookings WHERE show_id = :s AND status = 'PAID'"),
                                          {"s": self.doomed_show}).scalar()
                db.session.remove()
        except Exception as error:  # noqa: BLE001 - a fault may have PostgreSQL down a moment
            log.info("doomed show not readable yet: %r", error)
            return False
        return paid > 0

    def through_the_waiting_room(self, rnd) -> tuple[dict, str]:
        """A customer who has not queued yet joins the queued show's waiting room, polls until
        admitted (through Redis restarts and killed workers), and returns their Admission-Token."""
        with self.accepted_lock:
            index = len(self.queued_customers)
            if index >= len(self.queue_customers):
                raise RuntimeError("every queue customer has queued once")
            self.queued_customers.add(index)
        customer = self.queue_customers[index]
        joined = self.api.call("POST", f"/shows/{self.queued_show}/queue", headers=customer, ok=(200, 201))
        if joined.status_code not in (200, 201):
            raise RuntimeError(f"join not answered: {joined.status_code} {joined.text[:200]}")
        entry_id = joined.json()["id"]
        with self.accepted_lock:
            self.joined[entry_id] = index
        deadline = time.monotonic() + QUEUE_PATIENCE_S
        while time.monotonic() < deadline:
            polled = self.api.call("GET", f"/queue/{entry_id}", headers=customer, ok=(200,))
            if polled.status_code != 200:
                raise RuntimeError(f"queue poll: {polled.status_code} {polled.text[:200]}")
            entry = polled.json()
            if entry["state"] == "ADMITTED":
                with self.accepted_lock:
                    self.admitted_seen.setdefault(entry_id, set()).add(entry["admitted_until"])
                return customer, entry["admission_token"]
            if entry["state"] != "WAITING":
                raise RuntimeError(f"queue entry {entry_id} became {entry['state']} while waiting")
            time.sleep(QUEUE_POLL_S)
        raise RuntimeError(f"queue entry {entry_id} not admitted within {QUEUE_PATIENCE_S:.0f}s")

    def queue_problems(self) -> dict[str, list[str]]:
        """From PostgreSQL: every entry a join was answered with still exists for its customer
        (none lost to Redis restarts or killed processes); from the polls: no entry was seen
        admitted with two different turns (admitted twice)."""
        from models import db
        from sqlalchemy import text as sql
        with self.app.app_context():
            rows = dict(db.session.execute(sql("SELECT id, customer_id FROM queue_entries WHERE show_id = :s"),
                                           {"s": self.queued_show}).all())
            db.session.remove()
        lost = [entry_id for entry_id in self.joined if entry_id not in rows]
        twice = [entry_id for entry_id, seen in self.admitted_seen.items() if len(seen) > 1]
        return {"queue_entries_lost": lost, "queue_turns_changed": twice}
    def at_the_door(self, booking_id, customer, rnd, patience=30.0):
        """Once paid (within `patience`), issue the ticket, then scan it at two gates at once, or
        at one gate while the customer cancels. A lost answer retried may turn an admission into
        ALREADY_CHECKED_IN (it was committed); never may two gates, or a gate and a cancel, both win."""
        deadline = time.monotonic() + patience
        while True:
            booking = self.api.call("GET", f"/bookings/{booking_id}", headers=customer).json()
            if booking.get("ticket_status") == "ISSUABLE":
                break
            if booking.get("status") not in ("PENDING", "CONFIRMED", "PAID") or time.monotonic() > deadline:
                self.door["not_paid_in_time"] += 1
                return
            time.sleep(0.5)
        issued = self.api.call("POST", f"/bookings/{booking_id}/ticket", headers=customer)
        if issued.status_code != 200:
            self.door[f"issue_{issued.status_code}"] += 1
            return
        qr = issued.json()["ticket"]["qr"]
        racing_cancel = rnd.random() < 0.5
        barrier = threading.Barrier(2)
        answers = {}

        def send(name, path, headers, body, ok):
            try:
                barrier.wait(timeout=30)
                answers[name] = self.api.call("POST", path, headers=headers, json_body=body, ok=ok).status_code
            except Exception as error:  # noqa: BLE001 - recorded, reported, fails the run
                self.errors.append(f"{name}: {error!r}")

        second = (("cancel", f"/bookings/{booking_id}/cancel", customer, None, (202, 409)) if racing_cancel
                  else ("west", "/checkins", self.staff, {"qr": qr, "gate": "west"}, (200, 409)))
        threads = [threading.Thread(target=send, args=("east", "/checkins", self.staff, {"qr": qr, "gate": "east"},
                                                       (200, 409))),
                   threading.Thread(target=send, args=second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        admitted = sum(status == 200 for gate, status in answers.items() if gate != "cancel")
        self.door["scanned"] += 1
        self.door["admitted"] += admitted
        if admitted > 1:
            self.door["door_admitted_twice"] += 1
        if racing_cancel:
            self.cancels[answers.get("cancel")] += 1
            if admitted and answers.get("cancel") == 202:
                self.door["door_admitted_and_cancelled"] += 1

    def reserved_form(self, rnd) -> dict:
        """Best available (a random category, 1..4 seats) or a pick of 1..4 seats side by side
        that the seat page showed AVAILABLE just now: other clients may take them meanwhile."""
        show_id = rnd.choice(self.reserved_shows)
        qty = rnd.randint(1, 4)
        if rnd.random() < BEST_AVAILABLE_SHARE:
            return {"show_id": show_id, "qty": qty, "category": rnd.choice(self.categories)}
        page = self.api.call("GET", f"/shows/{show_id}/seats", ok=(200,))
        if page.status_code != 200:
            raise RuntimeError(f"seat page: {page.status_code} {page.text[:200]}")
        return {"show_id": show_id, "seats": pick_seats(page.json()["seats"], qty, rnd)}

    # -- faults -------------------------------------------------------------------------------
    def fault_schedule(self):
        """(name, apply, undo, seconds it lasts). Each type must fire at least once (the run
        fails otherwise): a fault that could not be made is not hidden behind repeats of others."""
        short = self.args.fault_interval * 0.5
        # Three times the client's timeout plus any margin, and held for longer than a hold: a
        # charge sent now is answered (and may capture) long after the client gave up, while
        # customers cancel and holds expire. Money must still come back, decided by the gateway.
        slow_ms = int((GATEWAY_TIMEOUT_S + 5) * 3 * 1000)
        slow_for = self.args.hold_minutes * 60 + 20
        return [
            ("gateway errors 30%", lambda: self.gateway.set_faults(error_rate=0.3), lambda: self.gateway.clear_faults(), short),
            ("SIGKILL worker-payments", lambda: self.kill_process("worker-payments"), None, short),
            ("gateway timeouts 20%", lambda: self.gateway.set_faults(timeout_rate=0.2, timeout_s=3),
             lambda: self.gateway.clear_faults(), short),
            ("SIGKILL a worker-booking pool child", lambda: self.kill_children("worker-booking"), None, short),
            ("gateway answers 408/409/5xx with no body",
             lambda: self.gateway.set_faults(error_rate=0.3, error_statuses=[408, 409, 500, 502, 503],
                                             error_body=False),
             lambda: self.gateway.clear_faults(), short),
            ("Redis restarted empty", lambda: self.redis.restart(empty=True), None, short),
            ("SIGKILL worker-booking", lambda: self.kill_process("worker-booking"), None, short),
            # Quorum queues keep what they hold across it; the workers and the API reconnect.
            *([("RabbitMQ restarted", self.rabbitmq.restart, None, short)] if self.rabbitmq else []),
            ("gateway slower than the client timeout", lambda: self._slow_gateway(slow_ms),
             self._fast_gateway, slow_for),
            # In the middle of the workload: its fan-out and refunds run through the faults that
            # follow (the gateway's outage, worker-maintenance and beat SIGKILLed among them).
            ("show cancelled mid-workload", self.cancel_doomed_show, None, short),
            ("PostgreSQL restarted", lambda: self.postgres.restart(), None, short),
            ("gateway outage", lambda: self.gateway.set_faults(outage=True), lambda: self.gateway.clear_faults(), short),
            ("SIGKILL a worker-payments pool child", lambda: self.kill_children("worker-payments"), None, short),
            ("SIGKILL worker-maintenance and beat", lambda: (self.kill_process("worker-maintenance"),
                                                              self.kill_process("beat")), None, short),
            ("SIGKILL worker-admission", lambda: self.kill_process("worker-admission"), None, short),
            # SPEC §12: the partner's receiver down, the SMTP server hung, the notify worker killed.
            ("webhook receiver down (503)", lambda: self.receiver.down.set(), lambda: self.receiver.down.clear(), short),
            ("SMTP server hung (SIGSTOP)", lambda: self.signal_process("mail-sink", signal.SIGSTOP),
             lambda: self.signal_process("mail-sink", signal.SIGCONT), short),
            ("SIGKILL worker-notify", lambda: self.kill_process("worker-notify"), None, short),
        ]

    def schedule_seconds(self) -> float:
        """How long one pass over the schedule takes: each fault, then as long again without it."""
        return sum(max(lasts, self.args.fault_interval * 0.5) + self.args.fault_interval * 0.5
                   for *_, lasts in self.fault_schedule())

    def _slow_gateway(self, latency_ms):
        self.gateway.set_faults(latency_ms=latency_ms)
        self.slow_gateway.set()

    def _fast_gateway(self):
        self.slow_gateway.clear()
        self.gateway.clear_faults()

    def faults_loop(self):
        schedule = self.fault_schedule()
        index = 0
        while not self.stop_faults.wait(self.args.fault_interval * 0.5):
            name, apply, undo, lasts = schedule[index % len(schedule)]
            index += 1
            log.warning("FAULT: %s", name)
            try:
                apply()
                self.faults[name] += 1
            except Exception as error:  # noqa: BLE001 - counted: a type that never fired fails the run
                self.fault_failures[name] += 1
                log.warning("could not inject %s: %r", name, error)
            if self.stop_faults.wait(lasts):
                if undo:
                    self._undo(undo)
                break
            if undo:
                self._undo(undo)
            if self.workload_done.is_set() and index >= len(schedule):
                return

    def faults_missed(self) -> list[str]:
        return [name for name, *_ in self.fault_schedule() if self.faults[name] == 0]

    def _undo(self, undo):
        for _ in range(30):
            try:
                undo()
                return
            except Exception as error:  # noqa: BLE001
                log.warning("undoing a fault: %r", error)
                time.sleep(1)

    def kill_process(self, name):
        popen = self.stack.process(name)
        os.killpg(popen.pid, signal.SIGKILL)  # the process and its pool children, mid-task

    def signal_process(self, name, signum):
        os.killpg(self.stack.process(name).pid, signum)

    def kill_children(self, name):
        popen = self.stack.process(name)
        out = subprocess.run(["pgrep", "-P", str(popen.pid)], capture_output=True, text=True).stdout.split()
        if not out:
            raise RuntimeError(f"{name} has no pool children yet")
        os.kill(int(self.random.choice(out)), signal.SIGKILL)

    # -- the check ----------------------------------------------------------------------------
    def check(self):
        from models import db
        from models.consistency import check

        with self.app.app_context():
            try:
                return check(self.gateway, self.accepted)
            finally:
                db.session.remove()

    def fee_problems(self) -> tuple[list[str], int]:
        """Cancelled bookings of the general shows whose fee is neither their show's percentage of
        the amount (a paid booking cancelled) nor 0 (cancelled before the capture); and how many
        cancels kept a fee."""
        from sqlalchemy import select

        from models import db
        from models.bookings import Booking, BookingStatus

        with self.app.app_context():
            try:
                rows = db.session.execute(
                    select(Booking.id, Booking.show_id, Booking.status, Booking.amount, Booking.cancellation_fee,
                           Booking.cancelled_with_show)
                    .where(Booking.status.in_([BookingStatus.CANCELLED, BookingStatus.PAID]),
                           Booking.show_id.in_([*self.shows, self.doomed_show]))).all()
            finally:
                db.session.remove()
        wrong = []
        for booking_id, show_id, status, amount, fee, with_show in rows:
            if with_show:
                # Cancelled with its show: in full, no fee (its parts were never cancelled). One its
                # customer cancelled before the show was keeps the fee of that cancel (below).
                if fee != 0:
                    wrong.append(f"{booking_id}: fee {fee}, cancelled with its show")
                continue
            percent, parts = self.fee_percent[show_id], self.parts.get(booking_id, [])
            # Each part's fee, then the rest's when cancelled whole (a part needs a paid booking, so
            # the rest was paid too): rounded down part by part.
            of_parts = sum(qty * self.price[show_id] * percent // 100 for qty in parts)
            allowed = ({of_parts} if status == BookingStatus.PAID else
                       {of_parts + amount * percent // 100} if parts else {0, amount * percent // 100})
            if fee not in allowed:
                wrong.append(f"{booking_id}: {status} fee {fee} of {amount} after parts {parts}, not {sorted(allowed)}")
        return wrong, sum(1 for *_, fee in rows if fee > 0)

    def doomed_refunds(self) -> dict:
        show = self.api.call("GET", f"/shows/{self.doomed_show}", ok=(200,)).json()
        return show["refunds"] or {"total": 0, "done": 0, "pending": -1}

    def wait_quiet(self, deadline):
        """Until every booking is settled (final, no charge or refund under way) and the my page
        converged, two checks in a row."""
        clean_in_a_row = 0
        report = None
        while time.monotonic() < deadline:
            try:
                report = self.check()
            except Exception as error:  # noqa: BLE001 - the stack may still be recovering
                log.info("check failed, retrying: %r", error)
                time.sleep(3)
                continue
            counts = report.counts()
            unsent = notify.unfinished(self.app)
            log.info("settling: %s stuck, %s my page mismatches, %s deliveries and mails to go", counts["stuck"],
                     counts["mypage_mismatches"], unsent)
            if counts["stuck"] == 0 and counts["mypage_mismatches"] == 0 and unsent == 0:
                clean_in_a_row += 1
                if clean_in_a_row >= 2:
                    return report
            else:
                clean_in_a_row = 0
            time.sleep(5)
        return report

    def seat_page_problems(self) -> list[str]:
        """From the API, as a customer would see it: every reserved show's seat page against the
        seats of its live bookings. The page may be about a second behind (SPEC §8), so a
        disagreement is looked at again a few times before it counts."""
        problems: list[str] = []
        for attempt in range(4):
            if attempt:
                time.sleep(2)
            bookings = {show_id: [] for show_id in self.reserved_shows}
            outcomes: dict[str, Counter] = {"pick": Counter(), "best": Counter()}
            problems = []
            for booking_id, show_id, kind in self.reserved_accepted:
                response = self.api.call("GET", f"/bookings/{booking_id}", headers=self.admin, ok=(200,))
                if response.status_code != 200:
                    problems.append(f"booking {booking_id}: HTTP {response.status_code}")
                    continue
                booking = response.json()
                bookings[show_id].append(booking)
                outcomes[kind][booking.get("reject_reason") or booking["status"]] += 1
            for show_id, show_bookings in bookings.items():
                page = self.api.call("GET", f"/shows/{show_id}/seats", ok=(200,))
                if page.status_code != 200:
                    problems.append(f"show {show_id}: seat page HTTP {page.status_code}")
                    continue
                problems += [f"show {show_id}: {problem}"
                             for problem in seat_page_disagreements(page.json()["seats"], show_bookings)]
            self.reserved_outcomes = outcomes
            if not problems:
                break
            log.info("seat pages disagree with the bookings (%d), looking again", len(problems))
        return problems

    def run(self) -> dict:
        hard_deadline = self.started + self.args.time_limit
        self.start()
        self.prepare()
        log.info("workload: %d bookings over %d general and %d reserved shows (%.0f%% of the bookings) "
                 "by %d customers", self.args.bookings, len(self.shows), len(self.reserved_shows),
                 self.args.reserved_share * 100, len(self.customers))
        faults = threading.Thread(target=self.faults_loop, name="faults", daemon=True)
        faults.start()
        work = threading.Thread(target=self.workload, name="workload", daemon=True)
        work.start()
        work.join(max(1.0, hard_deadline - time.monotonic() - self.args.quiet_timeout))
        faults.join(max(1.0, hard_deadline - time.monotonic() - self.args.quiet_timeout))
        self.stop_faults.set()
        faults.join(60)
        self._undo(self.gateway.clear_faults)
        workload_s = time.monotonic() - self.started
        log.info("faults stopped; waiting for quiet")
        report = self.wait_quiet(min(hard_deadline, time.monotonic() + self.args.quiet_timeout))
        if report is None:
            raise RuntimeError("the system never answered a consistency check")
        counts = report.counts()
        self.seat_problems = self.seat_page_problems()
        queue = self.queue_problems()
        self.wrong_fees, cancelled_with_fee = self.fee_problems()
        doomed_refunds = self.doomed_refunds()
        self.notify_problems = notify.problems(self.app, self.endpoint, self.receiver, self.stack.data_dir / "mail")
        result = {
            "bookings": len(self.accepted),
            "final_states": counts["final_states"],
            "faults": sum(self.faults.values()),
            "faults_by_type": dict(self.faults),
            "faults_missed": self.faults_missed(),
            "cancelled_while_gateway_slow": len(self.slow_gateway_bookings),
            "reserved_bookings": len(self.reserved_accepted),
            "queued_bookings": self.queued_bookings,
            "reserved_outcomes": {kind: dict(outcomes) for kind, outcomes in self.reserved_outcomes.items()},
            # Every count of the report, the ones it gains later too: passed() wants each of them 0.
            **report_counts(counts),
            "seat_page_mismatches": len(self.seat_problems),
            **{name: len(found) for name, found in queue.items()},
            "door_scanned": self.door["scanned"],
            "door_admitted_twice": self.door["door_admitted_twice"],
            "door_admitted_and_cancelled": self.door["door_admitted_and_cancelled"],
            "cancelled_with_fee": cancelled_with_fee,
            "fee_mismatches": len(self.wrong_fees),
            "partial_cancels": self.partials[202],
            "show_cancel_refunds": doomed_refunds,
            "show_cancel_refunds_pending": doomed_refunds["pending"],
            "show_cancel_bookings_refused": self.doomed["refused"],
            "show_cancel_refused_before_cancel": self.doomed["refused_before_cancel"],
            "show_cancel_accepted_after_cancel": self.doomed["accepted_after_cancel"],
            **{key: value for key, value in self.notify_problems.items() if key != "missed_examples"},
            "workload_errors": len(self.errors),
            # Asked for and neither accepted nor refused for a cancelled show.
            "not_accepted": (self.args.bookings - len(self.accepted) - self.doomed["refused"]
                             - sum(self.sold_out_refused.values()) if not work.is_alive() else None),
            "sold_out_refused": sum(self.sold_out_refused.values()),
            "seconds": round(time.monotonic() - self.started),
        }
        self.print_summary(report, result, workload_s)
        return result

    def print_summary(self, report, result, workload_s):
        print("== chaos summary ==")
        print(f"bookings accepted: {result['bookings']} (asked {self.args.bookings}; refused at once as sold out: "
              f"{result['sold_out_refused']}); cancels: {dict(self.cancels)}; workload errors: {len(self.errors)}")
        for error in self.errors[:5]:
            print(f"  workload error: {error}")
        print(f"faults injected ({sum(self.faults.values())}): "
              + ", ".join(f"{name} x{n}" for name, n in self.faults.items()))
        if result["faults_missed"]:
            print(f"faults that never fired: {', '.join(result['faults_missed'])} "
                  f"(attempts that failed: {dict(self.fault_failures)})")
        print(f"cancelled while the gateway was slower than the client timeout: "
              f"{result['cancelled_while_gateway_slow']}")
        print(f"final states: {result['final_states']}")
        print(f"reserved: {result['reserved_bookings']} bookings on {len(self.reserved_shows)} shows; outcomes "
              + "; ".join(f"{kind}: {outcomes}" for kind, outcomes in result["reserved_outcomes"].items()))
        print("report counts: " + ", ".join(f"{key} {value}" for key, value in
                                            report_counts(report.counts()).items()))
        print(f"waiting room: {len(self.joined)} joined, {len(self.admitted_seen)} admitted, "
              f"{self.queued_bookings} bookings through it; entries lost {result['queue_entries_lost']}, "
              f"turns changed {result['queue_turns_changed']}")
        print(f"seat page mismatches: {result['seat_page_mismatches']}")
        print(f"at the door: {dict(self.door)}")
        print(f"cancels that kept a fee: {result['cancelled_with_fee']}; fee mismatches: {result['fee_mismatches']}; "
              f"partial cancels: {dict(self.partials)}")
        found = self.notify_problems
        print(f"webhooks: {found['webhook_events']} events, {found['webhook_deliveries_received']} deliveries received "
              f"({found['webhook_refused_while_down']} refused while down); missed {found['webhook_events_missed']}, "
              f"bad signatures {found['webhook_bad_signatures']}; mail: {found['mails']} mails, lost "
              f"{found['mails_lost']}, doubled {found['mails_doubled']}, resent with the same Message-ID "
              f"{found['mail_resends']} {found['missed_examples'] or ''}")
        print(f"the show cancelled mid-way: refunds {result['show_cancel_refunds']}, bookings refused after "
              f"{result['show_cancel_bookings_refused']}, refused before {result['show_cancel_refused_before_cancel']}, "
              f"accepted after {result['show_cancel_accepted_after_cancel']}")
        for problem in self.wrong_fees[:10]:
            print(f"  fee: {problem}")
        for problem in self.seat_problems[:10]:
            print(f"  seat page: {problem}")
        print(f"workload + faults took {workload_s:.0f}s, whole run {result['seconds']}s")
        print(f"shows: {sum(1 for s in report.shows if s['agrees'])}/{len(report.shows)} agree "
              f"(capacity, remaining, held)")
        for row in report.money_problems[:10]:
            print(f"  money problem: {row}")
        for booking_id in report.stuck[:10]:
            print(f"  stuck: {booking_id}")
        for booking_id in report.lost[:10]:
            print(f"  lost: {booking_id}")
        print(f"logs: {self.stack.logs_dir}" if self.args.keep or self.args.data_dir else "")
        sys.stdout.flush()


def pick_seats(seats: list[dict], qty: int, rnd: random.Random) -> list[str]:
    """A customer's pick from a seat page: up to `qty` seats side by side (consecutive numbers in
    one row), starting at one of the best AVAILABLE seats. With none left, any seat: the pick is
    REJECTED as seat_taken, which is worth exercising too."""
    available = [index for index, seat in enumerate(seats) if seat["status"] == "AVAILABLE"]
    if not available:
        return [rnd.choice(seats)["id"]]
    start = rnd.choice(available[:PICK_AMONG_BEST])
    picked = [seats[start]]
    for seat in seats[start + 1:]:
        last = picked[-1]
        if (len(picked) == qty or seat["status"] != "AVAILABLE" or (seat["section"], seat["row"]) !=
                (last["section"], last["row"]) or seat["number"] != last["number"] + 1):
            break
        picked.append(seat)
    return [seat["id"] for seat in picked]


LIVE_SEAT_STATUS = {"CONFIRMED": "HELD", "PAID": "SOLD"}  # a live booking's status -> its seats' status


def seat_page_disagreements(seats: list[dict], bookings: list[dict]) -> list[str]:
    """Where a reserved show's seat page and its bookings (as GET /bookings/{id} answers) disagree:
    a seat in two live bookings, a live booking without its qty seats, a seat HELD or SOLD that no
    live booking has, or a live booking's seat shown in another status than the booking's."""
    problems = []
    owner: dict[str, dict] = {}
    for booking in bookings:
        if booking["status"] not in LIVE_SEAT_STATUS:
            continue
        seat_ids = [seat["id"] for seat in booking.get("seats") or ()]
        if len(seat_ids) != booking["qty"]:
            problems.append(f"booking {booking['id']} ({booking['status']}, qty {booking['qty']}) has seats {seat_ids}")
        for seat_id in seat_ids:
            if seat_id in owner:
                problems.append(f"seat {seat_id} in bookings {owner[seat_id]['id']} and {booking['id']}")
            owner[seat_id] = booking
    for seat in seats:
        booking = owner.pop(seat["id"], None)
        if booking is None:
            if seat["status"] in ("HELD", "SOLD"):
                problems.append(f"seat {seat['id']} is {seat['status']} with no live booking")
        elif seat["status"] != LIVE_SEAT_STATUS[booking["status"]]:
            problems.append(f"seat {seat['id']} is {seat['status']}, its booking {booking['id']} {booking['status']}")
    problems += [f"seat {seat_id} of booking {booking['id']} is not on the page" for seat_id, booking in owner.items()]
    return problems


def _psycopg(url: str) -> str:
    from web.config import database_url
    return database_url(url)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s chaos %(levelname)s %(message)s",
                        stream=sys.stderr)
    chaos = Chaos(args)
    result: dict = {}
    # The run stops by itself: a watchdog ends it if anything hangs past the time limit.
    watchdog = threading.Timer(args.time_limit + 120, lambda: os.kill(os.getpid(), signal.SIGTERM))
    watchdog.daemon = True
    watchdog.start()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        result = chaos.run()
    except BaseException as error:  # noqa: BLE001 - always print the last JSON line
        log.exception("chaos run failed")
        result = {"bookings": len(chaos.accepted), "final_states": {}, "faults": sum(chaos.faults.values()),
                  "error": repr(error), "lost": None, "stuck": None, "oversold": None,
                  "double_charges": None, "missing_refunds": None, "issued_on_refunded": None,
                  "mypage_mismatches": None, "seat_page_mismatches": None}
    finally:
        try:
            chaos.stop()
        except Exception:  # noqa: BLE001
            log.exception("stopping the stack")
        watchdog.cancel()
    print(json.dumps(result), flush=True)
    return 0 if passed(result) else 1


# Counts every result has; a missing one fails the run.
ZERO_KEYS = ("lost", "stuck", "oversold", "double_charges", "missing_refunds", "money_mismatches",
             "issued_on_refunded", "mypage_mismatches", "seat_page_mismatches", "workload_errors", "not_accepted")
# The numbers of a result that are not counts of problems. Every other number is one, so a count
# the consistency report gains (seat_double_held, limit_exceeded, ...) is in the verdict the
# moment it is in the report, with no list here to forget to update.
NOT_COUNTS = frozenset({"bookings", "faults", "seconds", "cancelled_while_gateway_slow", "reserved_bookings",
                        "queued_bookings", "door_scanned", "cancelled_with_fee", "partial_cancels",
                        "show_cancel_bookings_refused", "sold_out_refused", "webhook_events", "webhook_deliveries_received",
                        "webhook_refused_while_down", "mails", "mail_resends"})


def report_counts(counts: dict) -> dict:
    """The consistency report's counts of problems (not its totals)."""
    return {key: value for key, value in counts.items() if key not in ("bookings", "final_states")}


def counted_keys(result: dict) -> list[str]:
    """The keys of a result that must be 0: ZERO_KEYS, and every other number but NOT_COUNTS (a
    None is a count that could not be made, and fails too)."""
    others = [key for key, value in result.items() if key not in NOT_COUNTS and key not in ZERO_KEYS
              and (value is None or (isinstance(value, int) and not isinstance(value, bool)))]
    return [*ZERO_KEYS, *others]


def passed(result: dict) -> bool:
    """Every count 0, every booking asked for accepted, and every scheduled fault type fired."""
    return ("error" not in result
            and all(result.get(key) == 0 for key in counted_keys(result))
            and result.get("faults_missed") == []
            and result.get("faults", 0) > 0)
