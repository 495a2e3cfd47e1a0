"""The harness: start the stack as the run command does, seed it, drive it, check it, measure it.

Everything runs on 127.0.0.1, in a fresh temporary data dir with free ports, so a run never
touches a developer's stack or the test databases.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import psutil
import psycopg

from stack.embedded import free_port
from stack.processes import REPO_ROOT, process_env, stack_processes
from stack.supervisor import Stack

from bench import checks

log = logging.getLogger("bench")

FINAL = ("PAID", "REJECTED", "PAYMENT_FAILED", "EXPIRED", "CANCELLED")
DECIDED = ("CONFIRMED",) + FINAL
WORKER_PROCESSES = ("worker-booking", "worker-payments", "worker-maintenance", "worker-admission")
RESERVE_TASKS = ("seats.reserve",)


def plain_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Options:
    workers: int = 2
    web_concurrency: int = 2
    concurrency: int = 64
    flower: bool = True
    keep: bool = False
    settle_timeout: float = 900.0
    seed: int = 6
    env_servers: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)


class BenchStack:
    """The stack in a temp dir, plus the harness's own app, customers and tokens."""

    def __init__(self, options: Options):
        self.options = options
        self.data_dir = Path(tempfile.mkdtemp(prefix="boxoffice-bench-"))
        self.stack: Stack | None = None
        self.app = None
        self.tokens: list[str] = []

    # -- lifecycle
    def __enter__(self) -> "BenchStack":
        if not self.options.env_servers:  # embedded servers of our own, on free ports
            os.environ.pop("DATABASE_URL", None)
            os.environ.pop("REDIS_URL", None)
        env = dict(os.environ)
        env.setdefault("SECRET_KEY", secrets.token_urlsafe(32))
        env.setdefault("TOKEN_TTL_S", str(7 * 24 * 3600))
        env.update(self.options.extra_env)
        self.stack = Stack(
            self.data_dir / "var", api_port=free_port(), gateway_port=free_port(), flower_port=free_port(),
            pg_port=free_port(), redis_port=free_port(), workers=self.options.workers,
            web_concurrency=self.options.web_concurrency, flower=self.options.flower, env=env,
            health_timeout=120.0,
        )
        log.info("starting the stack in %s", self.data_dir)
        self.stack.start()
        # The harness's own app talks to the same servers, with the same secret (to mint tokens).
        os.environ.update({key: env[key] for key in ("SECRET_KEY", "TOKEN_TTL_S")})
        os.environ["DATABASE_URL"] = self.stack.database_url
        os.environ["REDIS_URL"] = self.stack.redis_url
        os.environ["GATEWAY_URL"] = self.stack.urls["gateway"]
        os.environ["BOXOFFICE_INSTANCE"] = str(self.data_dir / "var" / "instance")
        from web import create_app
        self.app = create_app()
        self._announce_dashboard()
        return self

    def _announce_dashboard(self) -> None:
        """An admin of this run, so the on-sale dashboard (docs/pages.md) can be watched meanwhile."""
        from models import db
        from models.users import Role, register
        email, password = f"bench-admin-{uuid.uuid4().hex[:8]}@example.test", secrets.token_urlsafe(12)
        with self.app.app_context():
            register(email, password, "Bench admin", role=Role.ADMIN)
            db.session.commit()
        print(f"watch it: {self.stack.urls['api']}/admin/dashboard (sign in as {email}, password {password})",
              flush=True)

    def __exit__(self, *exc) -> None:
        if self.stack is not None:
            self.stack.stop()
        if self.options.keep:
            print(f"kept the data dir: {self.data_dir}")
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    @property
    def db_url(self) -> str:
        return plain_url(self.stack.database_url)

    def api_env(self, **overrides: str) -> dict[str, str]:
        """The environment the stack gives the API process (for the bare-insert baseline)."""
        return self._env_of("api", overrides)

    def _env_of(self, name: str, overrides: dict[str, str]) -> dict[str, str]:
        spec = self.spec(name)
        env = process_env(spec, self.stack.base_env, self.stack.data_dir, self.stack.database_url,
                          self.stack.redis_url, self.stack.web_concurrency, self.stack.gateway_port)
        env.update(overrides)
        return env

    def spec(self, name: str):
        specs = stack_processes(self.stack.data_dir, api_port=self.stack.api_port, workers=self.stack.workers,
                                flower=False, gateway_port=self.stack.gateway_port,
                                metrics_ports=self.stack.metrics_ports)
        return next(s for s in specs if s.name == name)

    # -- seeding (before any timed phase)
    def seed_customers(self, count: int) -> list[str]:
        """Customers straight into the database (one password hash for all) and their tokens."""
        if len(self.tokens) >= count:
            return self.tokens[:count]
        from flask_jwt_extended import create_access_token
        from sqlalchemy import insert

        from models import db
        from models.database import new_id
        from models.users import Role, User
        from argon2 import PasswordHasher

        password_hash = PasswordHasher().hash("bench-password")
        start = len(self.tokens)
        rows = [{"id": new_id(), "email": f"bench-{i}@example.test", "name": f"Bench customer {i}",
                 "password_hash": password_hash, "role": str(Role.CUSTOMER)} for i in range(start, count)]
        with self.app.app_context():
            db.session.execute(insert(User), rows)
            db.session.commit()
            with self.app.test_request_context():
                self.tokens += [create_access_token(identity=row["id"], additional_claims={"role": row["role"]})
                                for row in rows]
        return self.tokens[:count]

    def create_show(self, seats: int, price: int = 1500) -> str:
        from models import db
        from models.database import utc_now
        from models.shows import Show
        with self.app.app_context():
            show = Show(title=f"Rush {uuid.uuid4().hex[:8]}", venue="Bench Hall",
                        starts_at=utc_now() + timedelta(days=30), price=price, capacity=seats)
            db.session.add(show)
            db.session.commit()
            return show.id

    # -- process memory
    def rss_mb(self, name: str) -> float:
        """Resident memory of a stack process and everything it forked, in MB."""
        try:
            root = psutil.Process(self.stack.process(name).pid)
            total = root.memory_info().rss
            for child in root.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
            return total / 1e6
        except (psutil.NoSuchProcess, LookupError):
            return 0.0


# -- load generation --------------------------------------------------------------------------

def run_load(base_url: str, path: str, tokens: list[str], items: list, concurrency: int, workdir: Path,
             stop_when=None, **plan) -> dict:
    """Run bench.load in its own process; returns its result. `plan`: more of its plan (method,
    seat_page, seed, poll, queue). With `stop_when`, a polling plan (`poll` or `queue`) runs until
    that function returns: then the generator is told to stop, by a file it watches."""
    tag = uuid.uuid4().hex[:8]
    plan_path, result_path = workdir / f"plan-{tag}.json", workdir / f"result-{tag}.json"
    stop_path = workdir / f"stop-{tag}"
    for mode in ("poll", "queue"):
        if stop_when is not None and mode in plan:
            plan[mode] = {**plan[mode], "stop_file": str(stop_path)}
    plan_path.write_text(json.dumps({"base_url": base_url, "path": path, "tokens": tokens, "items": items,
                                     "concurrency": concurrency, **plan}))
    process = subprocess.Popen([sys.executable, "-m", "bench.load", str(plan_path), str(result_path)], cwd=REPO_ROOT)
    try:
        if stop_when is not None:
            stop_when(process)
            stop_path.touch()
        if process.wait() != 0:
            raise RuntimeError(f"the load generator failed (exit status {process.returncode})")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    result = json.loads(result_path.read_text())
    for leftover in (plan_path, result_path, stop_path):
        leftover.unlink(missing_ok=True)
    return result


def load_summary(result: dict, accepted_status: str = "202") -> dict:
    accepted = result["statuses"].get(accepted_status, 0)
    latencies = [ms for ms in result["latencies_ms"] if ms >= 0]  # -1: a pick not sent (bench/load.py)
    return {
        "accepted": accepted,
        "accepted_rps": accepted / result["elapsed_s"] if result["elapsed_s"] else 0.0,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "statuses": result["statuses"],
        "errors": result["errors"],
        "elapsed_s": result["elapsed_s"],
        "loadgen_cpu_s": result["cpu_s"],
        "loadgen_cpu_pct": 100 * result["cpu_s"] / result["elapsed_s"] if result["elapsed_s"] else 0.0,
    }


class ProgressPoller(threading.Thread):
    """Counts a show's bookings by status every interval, with wall-clock times."""

    def __init__(self, db_url: str, show_id: str, interval: float = 0.1):
        super().__init__(name="bench-poller", daemon=True)
        self.db_url, self.show_id, self.interval = db_url, show_id, interval
        self.samples: list[tuple[float, dict[str, int]]] = []
        self.stop = threading.Event()
        self.target: int | None = None
        self.done = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.db_url, autocommit=True) as connection:
            while not self.stop.is_set():
                counts = dict(connection.execute(
                    "SELECT status, count(*) FROM bookings WHERE show_id = %s GROUP BY status",
                    (self.show_id,)).fetchall())
                now = time.time()
                self.samples.append((now, counts))
                if self.target is not None and sum(counts.get(s, 0) for s in FINAL) >= self.target:
                    self.done.set()
                    return
                self.stop.wait(self.interval)

    def first_time(self, predicate) -> float | None:
        for at, counts in self.samples:
            if predicate(counts):
                return at
        return None


class ReserveStepClock:
    """Seconds the booking worker has spent inside the reservation step, from the step-duration
    histogram its metrics port serves (tasks/telemetry.py): seat decisions per second of the step
    itself, not bounded by how fast the API accepts."""

    def __init__(self, bench: BenchStack):
        port = bench.stack.metrics_ports["worker-booking"]  # this run's own (free) port
        self.url = f"http://127.0.0.1:{port}/metrics"
        # Make sure it is this run's worker that serves it (nothing else took the port meanwhile).
        worker = psutil.Process(bench.stack.process("worker-booking").pid)
        if not any(c.laddr.port == port and c.status == psutil.CONN_LISTEN for c in worker.net_connections("tcp")):
            raise RuntimeError(f"port {port} is not served by this run's booking worker (another stack running?)")

    def read(self) -> dict[str, float]:
        from prometheus_client.parser import text_string_to_metric_families
        with urllib.request.urlopen(self.url, timeout=10) as response:
            text = response.read().decode()
        wanted = {"boxoffice_task_duration_seconds_sum": "seconds", "boxoffice_task_duration_seconds_count": "ended",
                  "boxoffice_tasks_started_total": "started"}
        totals = {"seconds": 0.0, "ended": 0.0, "started": 0.0, "seats_queue": 0.0, "unacked": 0.0}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in wanted and sample.labels.get("task") in RESERVE_TASKS:
                    totals[wanted[sample.name]] += sample.value
                elif sample.name == "boxoffice_queue_length" and sample.labels.get("queue") == "seats":
                    totals["seats_queue"] = sample.value
                elif sample.name == "boxoffice_queue_unacked_messages":
                    totals["unacked"] = sample.value
        return totals

    def seconds_when_quiet(self, timeout: float = 60.0) -> float:
        """The step's seconds once no reservation message is left: after every booking is final,
        the "already decided" exits of a backlog still count as time in the step."""
        deadline = time.monotonic() + timeout
        while True:
            totals = self.read()
            if totals["started"] == totals["ended"] and not totals["seats_queue"] and not totals["unacked"]:
                return totals["seconds"]
            if time.monotonic() > deadline:
                log.warning("reservation step not quiet after %.0fs: %s", timeout, totals)
                return totals["seconds"]
            time.sleep(0.2)


# -- the rush ---------------------------------------------------------------------------------

def rush(bench: BenchStack, requests: int, seats: int, customers: int, workdir: Path) -> dict:
    """The on-sale rush on one new show; returns its figures and checks."""
    options = bench.options
    tokens = bench.seed_customers(customers)
    show_id = bench.create_show(seats)
    rng = random.Random(options.seed)
    items = [[rng.randrange(customers), {"show_id": show_id, "qty": rng.randint(1, 4), "payment_method": "tok_ok"}]
             for _ in range(requests)]
    log.info("rush: %d requests for %d seats from %d customers at %d connections",
             requests, seats, customers, options.concurrency)
    result, figures = drive(bench, show_id, tokens, items, workdir)
    figures.update(requests=requests, seats=seats, customers=customers)
    figures.update(check_show(bench, show_id, result))
    return figures


def drive(bench: BenchStack, show_id: str, tokens: list[str], items: list, workdir: Path, stop_when=None,
          **plan) -> tuple[dict, dict]:
    """Send the booking requests, wait until every accepted booking is final, and time it:
    (the load generator's result, the rush's figures)."""
    options = bench.options
    clock = ReserveStepClock(bench)
    step_s_before = clock.seconds_when_quiet()
    poller = ProgressPoller(bench.db_url, show_id)
    poller.start()
    result = run_load(bench.stack.urls["api"], "/bookings", tokens, items, options.concurrency, workdir,
                      stop_when=stop_when, **plan)
    load = load_summary(result)
    poller.target = load["accepted"]
    if not poller.done.wait(options.settle_timeout):
        poller.stop.set()
        raise RuntimeError(f"not every booking was final within {options.settle_timeout:.0f}s: "
                           f"{poller.samples[-1][1] if poller.samples else {}}")
    started = result["started_at"]
    accepted = load["accepted"]
    all_final_at = poller.first_time(lambda c: sum(c.get(s, 0) for s in FINAL) >= accepted)
    all_decided_at = poller.first_time(lambda c: sum(c.get(s, 0) for s in DECIDED) >= accepted)
    settle_s = all_final_at - started
    decide_s = all_decided_at - started
    step_s = clock.seconds_when_quiet() - step_s_before
    figures = {
        "concurrency": options.concurrency,
        "accepted": accepted,
        "accepted_rps": load["accepted_rps"],
        "api_p50_ms": load["p50_ms"],
        "api_p99_ms": load["p99_ms"],
        "load_s": load["elapsed_s"],
        "settle_s": settle_s,
        "settled_per_s": accepted / settle_s if settle_s > 0 else 0.0,
        "reserve_step_s": step_s,
        "reservations_per_s": accepted / step_s if step_s > 0 else None,
        "reserve_s": decide_s,
        "reservations_e2e_per_s": accepted / decide_s if decide_s > 0 else 0.0,
        # Refused at once as sold out (409, no booking written: docs/lifecycle.md), not accepted.
        "sold_out_answers": load["statuses"].get("409", 0),
        "statuses": load["statuses"],
        "errors": load["errors"],
        "loadgen_cpu_pct": load["loadgen_cpu_pct"],
    }
    return result, figures


def check_show(bench: BenchStack, show_id: str, load_result: dict, reserved: bool = False) -> dict:
    """oversold, fairness_violations and ledger_mismatches for one show. Fairness is judged by
    when each booking's request was sent and answered (the load result, joined by booking id); on
    a reserved show, among the best-available bookings of each category (a pick refused its seats
    had no claim on other seats)."""
    from gateway.client import GatewayClient
    ledger = GatewayClient(bench.stack.urls["gateway"], timeout=60).ledger()["by_reference"]
    with psycopg.connect(bench.db_url) as connection:
        capacity, remaining = connection.execute(
            "SELECT capacity, remaining FROM shows WHERE id = %s", (show_id,)).fetchone()
        cursor = connection.execute(
            "SELECT id, seq, qty, status, seats_held, amount, customer_id, category, seats, reject_reason "
            "FROM bookings WHERE show_id = %s ORDER BY seq",
            (show_id,))
        columns = [c.name for c in cursor.description]
        rows = [dict(zip(columns, row)) for row in cursor.fetchall()]
        ids = {row["id"] for row in rows}
        # The gateway is the stack's own, fresh for the run: a reference that is no booking of
        # ours is a stray charge, counted here; another show's bookings are checked with it.
        others = [reference for reference in ledger if reference not in ids]
        elsewhere = {row[0] for row in connection.execute(
            "SELECT id FROM bookings WHERE id = ANY(%s)", (others,))} if others else set()
    ledger = checks.show_ledger(ledger, ids, elsewhere)
    statuses: dict[str, int] = {}
    for row in rows:
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    held = sum(row["qty"] for row in rows if row["seats_held"])
    times = {booking_id: (sent, answered) for booking_id, sent, answered
             in zip(load_result["ids"], load_result["sent_s"], load_result["answered_s"]) if booking_id}
    timed = [{**row, "sent": times[row["id"]][0], "answered": times[row["id"]][1]}
             for row in rows if row["id"] in times]
    return {
        "oversold": checks.oversold(capacity, remaining, rows),
        "fairness_violations": (checks.fairness_violations_best_available(timed) if reserved
                                else checks.fairness_violations_realtime(timed)),
        "fairness_untimed_bookings": len(rows) - len(timed),
        "ledger_mismatches": checks.ledger_mismatches(rows, ledger),
        "seats_sold": held,
        "seats_remaining": remaining,
        "seat_counter_consistent": remaining == capacity - held,
        "booking_statuses": statuses,
        **({"bookings": rows} if reserved else {}),  # for the seated checks; not reported
    }


# -- the seated rush (SPEC §8) ------------------------------------------------------------------

# name, share of the seats (front to back), share of the best-available asks, price
CATEGORIES = (("VIP", 0.10, 0.20, 180_000), ("R", 0.25, 0.30, 140_000), ("S", 0.35, 0.30, 100_000),
              ("A", 0.30, 0.20, 70_000))
ROWS_PER_SECTION = 8
BEST_AVAILABLE_SHARE = 0.7


def seat_map_body(seats: int, rng: random.Random) -> dict:
    """A hall of `seats` seats: rows of 20-40 (the last of a category may be shorter), eight rows
    a section, the categories front to back in CATEGORIES' shares."""
    quotas = [int(seats * share) for _, share, _, _ in CATEGORIES]
    quotas[-1] = seats - sum(quotas[:-1])
    sections: list[dict] = []
    for (category, *_), quota in zip(CATEGORIES, quotas):
        while quota > 0:
            if not sections or len(sections[-1]["rows"]) == ROWS_PER_SECTION:
                sections.append({"name": f"Section {len(sections) + 1}", "rows": []})
            size = min(rng.randint(20, 40), quota)
            rows = sections[-1]["rows"]
            rows.append({"name": str(len(rows) + 1), "seats": size, "category": category})
            quota -= size
    return {"name": f"Bench hall of {seats}", "sections": sections}


def seated_items(show_id: str, requests: int, customers: int, rng: random.Random) -> list:
    """70 % best available (qty 1-4, the category by CATEGORIES' weights), 30 % picks of 1-4
    seats, chosen by the load generator from the page that customer just fetched."""
    names = [name for name, *_ in CATEGORIES]
    weights = [weight for _, _, weight, _ in CATEGORIES]
    items = []
    for _ in range(requests):
        body = {"show_id": show_id, "payment_method": "tok_ok"}
        if rng.random() < BEST_AVAILABLE_SHARE:
            body.update(qty=rng.randint(1, 4), category=rng.choices(names, weights)[0])
        else:
            body["pick"] = rng.randint(1, 4)
        items.append([rng.randrange(customers), body])
    return items


def fetch_page(bench: BenchStack, show_id: str) -> bytes:
    with urllib.request.urlopen(f"{bench.stack.urls['api']}/shows/{show_id}/seats", timeout=30) as response:
        return response.read()


def add_seated_show(seats: int, max_per_customer: int | None = None, seed: int = 6,
                    waiting_room: dict | None = None) -> str:
    """The seated rush's hall and a reserved show on it, through the services the API uses (in
    the caller's app context; also the profilers' show), with a waiting room if given (its
    settings, SPEC §9). Returns the show's id."""
    from models.database import utc_now
    from services.seat_maps import add_seat_map
    from services.shows import create_show
    seat_map = add_seat_map(seat_map_body(seats, random.Random(seed)))
    show = create_show({"title": f"Seated rush {uuid.uuid4().hex[:8]}", "venue": "Bench Hall",
                        "starts_at": utc_now() + timedelta(days=30), "seat_map_id": seat_map.id,
                        "prices": {name: price for name, _, _, price in CATEGORIES},
                        "max_per_customer": max_per_customer,
                        **({"waiting_room": waiting_room} if waiting_room else {})})
    return show.id


def seated_show(bench: BenchStack, seats: int, max_per_customer: int | None, waiting_room: dict | None = None) -> str:
    with bench.app.app_context():
        return add_seated_show(seats, max_per_customer, bench.options.seed, waiting_room)


def seated_rush(bench: BenchStack, show_id: str, requests: int, customers: int, pollers: int,
                max_per_customer: int | None, workdir: Path) -> dict:
    """The seated on-sale rush on a reserved show nobody has booked yet; its figures and checks."""
    tokens = bench.seed_customers(customers)
    items = seated_items(show_id, requests, customers, random.Random(bench.options.seed))
    log.info("seated rush: %d requests (%d picks) from %d customers at %d connections, %d page pollers",
             requests, sum("pick" in body for _, body in items), customers, bench.options.concurrency, pollers)
    result, figures = drive(bench, show_id, tokens, items, workdir, seed=bench.options.seed,
                            seat_page={"path": f"/shows/{show_id}/seats", "pollers": pollers})
    page = result["seat_page"]
    elapsed = result["elapsed_s"]
    figures.update(requests=requests, customers=customers, page_pollers=pollers, max_per_customer=max_per_customer,
                   picks_not_sent=result["statuses"].get("0", 0), picks_short=page["picks_short"],
                   seat_page_requests=len(page["latencies_ms"]), seat_page_statuses=page["statuses"],
                   seat_page_rps=len(page["latencies_ms"]) / elapsed if elapsed else 0.0,
                   seat_page_full_rps=page["statuses"].get("200", 0) / elapsed if elapsed else 0.0,
                   seat_page_p50_ms=percentile(page["latencies_ms"], 50),
                   seat_page_p99_ms=percentile(page["latencies_ms"], 99))
    checked = check_show(bench, show_id, result, reserved=True)
    rows = checked.pop("bookings")
    figures.update(checked)
    figures.update(check_seats(bench, show_id, rows))
    return figures


def check_seats(bench: BenchStack, show_id: str, rows: list[dict]) -> dict:
    """The seat checks after settle: seats held twice (seat_holds against the bookings, and the
    final page against seat_holds), customers over the limit, single seats stranded on the page."""
    with psycopg.connect(bench.db_url) as connection:
        seats, max_per_customer = connection.execute(
            "SELECT capacity, max_per_customer FROM shows WHERE id = %s", (show_id,)).fetchone()
        holds = connection.execute(
            "SELECT seat_id, booking_id FROM seat_holds WHERE show_id = %s", (show_id,)).fetchall()
    page = json.loads(fetch_page(bench, show_id))["seats"]
    holding = [row for row in rows if row["seats_held"]]
    reasons: dict[str, int] = {}
    for row in rows:
        if row["reject_reason"]:
            reasons[row["reject_reason"]] = reasons.get(row["reject_reason"], 0) + 1
    return {
        "seats": seats,
        "seat_conflicts": reasons.get("seat_taken", 0),
        "reject_reasons": reasons,
        "double_held": checks.double_held(holding, holds),
        "seat_page_mismatches": checks.page_mismatches(
            page, [seat for seat, booking in holds if booking], [seat for seat, booking in holds if not booking]),
        "limit_violations": checks.limit_violations(holding, max_per_customer),
        "stranded_single_seats": checks.stranded_single_seats(page),
        "seats_available_at_end": sum(seat["status"] == "AVAILABLE" for seat in page),
    }


def baseline_bare_json(bench: BenchStack, page: bytes, requests: int, workdir: Path) -> dict:
    """GET of a bare Flask endpoint answering a body of the seat page's size from memory, under
    the API's gunicorn settings (bench/bare_app.py)."""
    page_path = workdir / "bare-page.json"
    page_path.write_bytes(page)
    port = free_port()
    env = bench.api_env(BIND=f"127.0.0.1:{port}", BENCH_PAGE_PATH=str(page_path))
    argv = [str(Path(sys.executable).parent / "gunicorn"), "--config", "web/gunicorn_conf.py", "bench.bare_app:app"]
    with _child(argv, env, bench.data_dir / "bare-json.log"):
        _wait_http(f"http://127.0.0.1:{port}/healthz", 60)
        load = load_summary(run_load(f"http://127.0.0.1:{port}", "/page", [], [[-1, None]] * requests,
                                     bench.options.concurrency, workdir, method="GET"), "200")
    return {"bare_json_rps": load["accepted_rps"], "bare_json_p50_ms": load["p50_ms"],
            "bare_json_p99_ms": load["p99_ms"], "bare_json_bytes": len(page),
            "bare_json_loadgen_cpu_pct": load["loadgen_cpu_pct"]}


def seat_page_alone(bench: BenchStack, show_id: str, requests: int, workdir: Path) -> dict:
    """The API's own seat page on the idle stack, the same GETs as the bare JSON baseline (no
    If-None-Match): what the page costs without a rush around it."""
    load = load_summary(run_load(bench.stack.urls["api"], f"/shows/{show_id}/seats", [], [[-1, None]] * requests,
                                 bench.options.concurrency, workdir, method="GET"), "200")
    return {"seat_page_alone_rps": load["accepted_rps"], "seat_page_alone_p99_ms": load["p99_ms"]}


# -- baselines --------------------------------------------------------------------------------

@contextlib.contextmanager
def bare_insert_app(bench: BenchStack):
    """bench/bare_app.py under the API's gunicorn settings and environment, ready: its base URL
    (POST /insert), stopped on exit."""
    from bench.bare_app import TABLE_DDL
    with psycopg.connect(bench.db_url, autocommit=True) as connection:
        connection.execute(TABLE_DDL)
    port = free_port()
    env = bench.api_env(BIND=f"127.0.0.1:{port}")
    argv = [str(Path(sys.executable).parent / "gunicorn"), "--config", "web/gunicorn_conf.py", "bench.bare_app:app"]
    with _child(argv, env, bench.data_dir / "bare-insert.log"):
        _wait_http(f"http://127.0.0.1:{port}/healthz", 60)
        yield f"http://127.0.0.1:{port}"


def baseline_bare_insert(bench: BenchStack, requests: int, customers: int, workdir: Path) -> dict:
    """(c) POST to a bare Flask endpoint doing one INSERT, under the API's gunicorn settings."""
    tokens = bench.seed_customers(customers)
    rng = random.Random(bench.options.seed)
    items = [[rng.randrange(customers), {"show_id": "bench", "qty": rng.randint(1, 4), "payment_method": "tok_ok"}]
             for _ in range(requests)]
    with bare_insert_app(bench) as base_url:
        load = load_summary(run_load(base_url, "/insert", tokens, items, bench.options.concurrency, workdir))
    return {"bare_insert_rps": load["accepted_rps"], "bare_insert_p50_ms": load["p50_ms"],
            "bare_insert_p99_ms": load["p99_ms"], "bare_insert_statuses": load["statuses"],
            "bare_insert_loadgen_cpu_pct": load["loadgen_cpu_pct"]}


def baseline_pg_hot_row(bench: BenchStack, seconds: float, workdir: Path) -> dict:
    """(b) UPDATE … SET remaining = remaining - 1 WHERE id = … AND remaining >= 1 on one row."""
    result_path = workdir / f"hotrow-{uuid.uuid4().hex[:8]}.json"
    subprocess.run([sys.executable, "-m", "bench.hotrow", bench.db_url, str(bench.options.concurrency),
                    str(seconds), str(result_path)], cwd=REPO_ROOT, check=True)
    result = json.loads(result_path.read_text())
    result_path.unlink()
    return {"pg_hot_row_tps": result["updates"] / result["elapsed_s"],
            "pg_hot_row_client_cpu_pct": 100 * result["cpu_s"] / result["elapsed_s"]}


def baseline_celery_noop(bench: BenchStack, tasks: int) -> dict:
    """(a) No-op tasks through the stack's broker, run by a worker with the booking worker's
    command line and settings (only the app module and queue differ)."""
    import redis
    from bench.celery_noop import QUEUE
    spec = bench.spec("worker-booking")
    argv = list(spec.executable_argv())
    argv[argv.index("wsgi.celery")] = "bench.celery_noop.celery"
    argv[argv.index("-Q") + 1] = QUEUE
    argv[argv.index("-n") + 1] = "bench@%h"
    env = bench._env_of("worker-booking", {})
    client = redis.Redis.from_url(bench.stack.redis_url)
    celery_app = bench.app.extensions["celery"]
    key = f"bench:noop:{uuid.uuid4().hex}"

    def wait_count(target: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while int(client.get(key) or 0) < target:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no-op tasks: {int(client.get(key) or 0)} of {target} ran in {timeout:.0f}s")
            time.sleep(0.01)

    with _child(argv, env, bench.data_dir / "bench-noop-worker.log"):
        celery_app.send_task("bench.noop", args=[key], queue=QUEUE)  # warm-up: the worker is ready
        wait_count(1, 120)
        client.delete(key)
        started = time.perf_counter()
        for _ in range(tasks):
            celery_app.send_task("bench.noop", args=[key], queue=QUEUE)
        published_s = time.perf_counter() - started
        wait_count(tasks, max(120.0, tasks / 20))
        elapsed = time.perf_counter() - started
    return {"celery_noop_per_s": tasks / elapsed, "celery_noop_publish_per_s": tasks / published_s,
            "celery_noop_tasks": tasks}


class _child:
    """A helper process in its own session, killed with everything it forked on exit."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path):
        self.argv, self.env, self.log_path = argv, env, log_path

    def __enter__(self):
        with open(self.log_path, "ab") as logfile:
            self.popen = subprocess.Popen(self.argv, cwd=REPO_ROOT, env=self.env, stdin=subprocess.DEVNULL,
                                          stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True)
        return self.popen

    def __exit__(self, *exc):
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(30)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            pass
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait()


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


def baselines(bench: BenchStack, requests: int, customers: int, noop_tasks: int, hot_row_s: float,
              workdir: Path) -> dict:
    figures = {}
    log.info("baseline (c): bare insert, %d requests", requests)
    figures.update(baseline_bare_insert(bench, requests, customers, workdir))
    log.info("baseline (b): PostgreSQL hot row, %.0fs", hot_row_s)
    figures.update(baseline_pg_hot_row(bench, hot_row_s, workdir))
    log.info("baseline (a): Celery no-op, %d tasks", noop_tasks)
    figures.update(baseline_celery_noop(bench, noop_tasks))
    return figures


def ratios(figures: dict) -> dict:
    def ratio(a, b):
        return figures[a] / figures[b] if figures.get(a) is not None and figures.get(b) else None
    return {
        "ratio_settled_vs_celery_noop": ratio("settled_per_s", "celery_noop_per_s"),
        "ratio_reservations_vs_pg_hot_row": ratio("reservations_per_s", "pg_hot_row_tps"),
        "ratio_accepted_vs_bare_insert": ratio("accepted_rps", "bare_insert_rps"),
    }


def seated_ratios(figures: dict) -> dict:
    """The seated rush's own ratios, beside ratios(): against the general rush of the same run
    (if it ran) and the bare JSON page."""
    def ratio(a, b):
        return figures[a] / figures[b] if figures.get(a) is not None and figures.get(b) else None
    return {
        "ratio_settled_seated_vs_general": ratio("settled_per_s", "general_settled_per_s"),
        "ratio_seat_page_vs_bare_json": ratio("seat_page_rps", "bare_json_rps"),
        "ratio_seat_page_alone_vs_bare_json": ratio("seat_page_alone_rps", "bare_json_rps"),
    }


def median(values):
    return statistics.median(values) if values else 0.0


# -- the waiting room (SPEC §9) -----------------------------------------------------------------

# The joins one client IP may make: the load generator is one IP for every customer.
QUEUE_ENV = {"RATE_LIMIT_QUEUE_JOINS": "100000000/minute"}
INTENDED_POLL_INTERVAL_S = 5.0  # how often a waiting customer's page is meant to ask


def queued_show(bench: BenchStack, seats: int, admit_per_minute: int, session_minutes: int,
                on_sale_in: timedelta) -> str:
    """A general show with a waiting room, on sale in on_sale_in (negative: already on sale)."""
    from models.database import utc_now
    from services.shows import create_show
    now = utc_now()
    with bench.app.app_context():
        show = create_show({"title": f"Queued rush {uuid.uuid4().hex[:8]}", "venue": "Bench Hall",
                            "starts_at": now + timedelta(days=30), "on_sale_at": now + on_sale_in,
                            "price": 1500, "capacity": seats,
                            "waiting_room": {"admit_per_minute": admit_per_minute,
                                             "session_minutes": session_minutes}})
        return show.id


def open_sale(bench: BenchStack, show_id: str) -> float:
    """Move the show's on_sale_at to now (the draw follows); returns that time (epoch seconds)."""
    from models.database import utc_now
    from services.shows import change_show
    now = utc_now()
    with bench.app.app_context():
        change_show(show_id, {"on_sale_at": now})
    return now.timestamp()


def entry_sample() -> bytes:
    """A queue entry's answer as GET /queue/{id} gives it while waiting: the bare JSON baseline's body."""
    return json.dumps({"id": str(uuid.uuid4()), "show_id": str(uuid.uuid4()), "state": "WAITING",
                       "position": 51_234, "ahead": 51_233, "estimated_wait_s": 513, "admission_token": None,
                       "admitted_until": None}).encode()


def queue_state(bench: BenchStack, show_id: str) -> tuple[list[dict], int, int]:
    """The show's queue entries, the admissions its room counted and the slots its schedule has
    made due, from one snapshot (the admission job runs on meanwhile). Each entry has its place
    (1.. in the queue order, draw_rank NULLS LAST then arrival_seq; None for an early joiner not
    drawn yet), admission_seq, and admitted_at, admitted_until, left_at as epoch seconds."""
    with psycopg.connect(bench.db_url) as connection:
        connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursor = connection.execute("""
            SELECT id, CASE WHEN draw_rank IS NOT NULL OR NOT early
                            THEN row_number() OVER (ORDER BY draw_rank NULLS LAST, arrival_seq) END AS place,
                   state, admission_seq, extract(epoch FROM admitted_at)::float8 AS admitted_at,
                   extract(epoch FROM admitted_until)::float8 AS admitted_until,
                   extract(epoch FROM left_at)::float8 AS left_at
            FROM queue_entries WHERE show_id = %s""", (show_id,))
        columns = [c.name for c in cursor.description]
        entries = [dict(zip(columns, row)) for row in cursor.fetchall()]
        # Slots due by a clock read after the snapshot: never fewer than the snapshot's admissions had.
        recorded, slots_due = connection.execute("""
            SELECT admitted, schedule_base + CASE WHEN schedule_from IS NULL THEN 0 ELSE
                   floor(admit_per_minute * extract(epoch FROM clock_timestamp() - schedule_from) / 60)::bigint END
            FROM waiting_rooms WHERE show_id = %s""", (show_id,)).fetchone()
    return entries, recorded, slots_due


def _epoch_of(value: str | None) -> float | None:
    from datetime import datetime
    return None if value is None else datetime.fromisoformat(value).timestamp()


def queue_checks(bench: BenchStack, show_id: str, admitted_seen: dict[str, list]) -> dict:
    """admitted_twice and out_of_order from PostgreSQL (and the turns polls showed)."""
    entries, recorded_admitted, slots_due = queue_state(bench, show_id)
    seen = {entry_id: [_epoch_of(until) for until in untils if until is not None]
            for entry_id, untils in admitted_seen.items()}
    admissions = sum(entry["admission_seq"] is not None for entry in entries)
    return {
        # the room's count and its entries disagree: an admission given outside the schedule
        "admitted_twice": checks.admitted_twice(entries, seen, slots_due) + abs(admissions - recorded_admitted),
        "admitted_recorded": recorded_admitted,
        "out_of_order": checks.out_of_order(entries),
        "admitted_total": admissions,
        "entries": entries,  # for the rate figures; not reported
    }


def _wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)


def _first_admission(bench: BenchStack, show_id: str) -> float | None:
    with psycopg.connect(bench.db_url) as connection:
        return connection.execute("SELECT extract(epoch FROM min(admitted_at))::float8 FROM queue_entries "
                                  "WHERE show_id = %s", (show_id,)).fetchone()[0]


def _caught_up(bench: BenchStack, show_id: str) -> float | None:
    """The time (epoch seconds) if the room's schedule owes no more than one tick can admit."""
    from models.waiting_room import CATCH_UP_S
    with psycopg.connect(bench.db_url) as connection:
        row = connection.execute("""
            SELECT schedule_base + floor(admit_per_minute * extract(epoch FROM clock_timestamp() - schedule_from) / 60)
                   - slots_used, admit_per_minute, extract(epoch FROM clock_timestamp())::float8
            FROM waiting_rooms WHERE show_id = %s AND schedule_from IS NOT NULL""", (show_id,)).fetchone()
    if row is None:
        return None
    owed, rate, now = row
    return now if owed <= max(1, math.ceil(rate * CATCH_UP_S / 60)) else None


def queue_bench(bench: BenchStack, joins: int, admit_per_minute: int, session_minutes: int, window_s: float,
                warmup_s: float, workdir: Path) -> dict:
    """`bench queue`: `joins` customers join one show's waiting room before its sale opens (at
    `concurrency` connections), then the sale opens, the early joiners are drawn, and the waiting
    customers poll their entries round-robin as fast as the connections go while the admission
    job admits them; the admission rate is judged over window_s seconds from warmup_s after the
    admissions caught up with the schedule (the draw's own seconds leave a backlog, admitted
    faster than the rate). Returns its figures and checks."""
    options = bench.options
    tokens = bench.seed_customers(joins)
    show_id = queued_show(bench, joins, admit_per_minute, session_minutes, on_sale_in=timedelta(days=1))
    log.info("queue: %d joins at %d connections", joins, options.concurrency)
    joined = run_load(bench.stack.urls["api"], f"/shows/{show_id}/queue", tokens, [[i, None] for i in range(joins)],
                      options.concurrency, workdir, id_statuses=[200, 201])
    join = load_summary(joined, "201")
    entries = [[i, entry_id] for i, entry_id in enumerate(joined["ids"]) if entry_id]
    if not entries:
        raise RuntimeError(f"no join succeeded: {joined['statuses']} {joined['errors']}")
    opened_at = open_sale(bench, show_id)
    window: dict = {}

    def until_window_ends(process) -> None:
        first = _wait_for(lambda: process.poll() is not None or _first_admission(bench, show_id), 600,
                          "the first admission")
        if first is True:
            return  # the generator ended by itself
        window["first"] = first
        # The slots that came due while the draw ran are admitted first, faster than the rate (a
        # tick catches up at most CATCH_UP_S worth): the window starts once that backlog is gone.
        caught_up = _wait_for(lambda: process.poll() is not None or _caught_up(bench, show_id), 600,
                              "admissions catching up with the schedule")
        if caught_up is True:
            return
        window["caught_up"] = caught_up
        window["start"] = math.ceil(caught_up + warmup_s)  # whole seconds: the per-second counts line up
        end = window["start"] + window_s + 0.5
        while time.time() < end and process.poll() is None:
            time.sleep(0.2)

    log.info("queue: sale open, %d entries polling at %d connections", len(entries), options.concurrency)
    polled = run_load(bench.stack.urls["api"], "/queue", tokens, [], options.concurrency, workdir,
                      stop_when=until_window_ends, poll={"entries": entries})
    if "start" not in window:
        raise RuntimeError(f"the polls ended before any admission: {polled['statuses']} {polled['errors']}")
    poll = load_summary(polled, "200")
    checked = queue_checks(bench, show_id, polled["admitted_seen"])
    entries_rows = checked.pop("entries")
    admitted_at = sorted(entry["admitted_at"] for entry in entries_rows if entry["admitted_at"] is not None)
    rate = checks.admission_rate(admitted_at, admit_per_minute, window["start"], window_s)
    overall = checks.admission_rate(admitted_at, admit_per_minute, math.floor(window["first"]),
                                    admitted_at[-1] - math.floor(window["first"]) + 1)
    # The window must end before the queue ran dry, or it measured a short queue, not the rate.
    last_waiting_gone = len(admitted_at) >= len(entries)
    return {
        "queue": True, "joins": joins, "admit_per_minute": admit_per_minute, "session_minutes": session_minutes,
        "join_rps": join["accepted_rps"], "join_p50_ms": join["p50_ms"], "join_p99_ms": join["p99_ms"],
        "join_statuses": join["statuses"], "join_errors": join["errors"], "join_s": join["elapsed_s"],
        "join_loadgen_cpu_pct": join["loadgen_cpu_pct"],
        "poll_requests": sum(polled["statuses"].values()), "poll_rps": poll["accepted_rps"],
        "poll_p50_ms": poll["p50_ms"], "poll_p99_ms": poll["p99_ms"], "poll_statuses": poll["statuses"],
        "poll_errors": poll["errors"], "poll_states": polled["states"], "poll_s": poll["elapsed_s"],
        "poll_loadgen_cpu_pct": poll["loadgen_cpu_pct"],
        "poll_rps_intended": len(entries) / INTENDED_POLL_INTERVAL_S,
        "poll_coverage_pct": 100 * poll["accepted_rps"] * INTENDED_POLL_INTERVAL_S / len(entries),
        "draw_s": window["first"] - opened_at,
        "catch_up_s": window["caught_up"] - window["first"],
        "admission_window_s": window_s, "admission_warmup_s": warmup_s,
        **rate,
        "admit_per_second": admit_per_minute / 60,
        "max_admitted_in_a_second_overall": overall["max_admitted_in_a_second"],
        "queue_ran_dry": last_waiting_gone,
        **checked,
    }


def queue_ratios(figures: dict) -> dict:
    def ratio(a, b):
        return figures[a] / figures[b] if figures.get(a) is not None and figures.get(b) else None
    return {
        "ratio_join_vs_bare_json": ratio("join_rps", "bare_json_rps"),
        "ratio_poll_vs_bare_json": ratio("poll_rps", "bare_json_rps"),
        "ratio_max_second_vs_rate": ratio("max_admitted_in_a_second", "admit_per_second"),
    }


def served_ms(bench: BenchStack, method: str, endpoint: str, status: int, since: float) -> list[float]:
    """The API's own durations (its request log, `duration_ms`) of the requests to one endpoint
    answered with `status` since `since` (epoch seconds): the time inside the app, without the
    wait for a gunicorn thread that the client's latency includes."""
    from datetime import datetime
    durations = []
    with open(bench.data_dir / "var" / "logs" / "api.log") as log_file:
        for line in log_file:
            if not line.startswith("{") or '"boxoffice.http"' not in line:
                continue
            record = json.loads(line)
            if (record.get("method"), record.get("endpoint"), record.get("status")) == (method, endpoint, status) \
                    and datetime.fromisoformat(record["timestamp"]).timestamp() >= since:
                durations.append(record["duration_ms"])
    return durations


def queued_rush(bench: BenchStack, show_id: str, customers: int, admit_per_minute: int, poll_interval_s: float,
                workdir: Path, seated: bool = False) -> dict:
    """The rush behind the waiting room: every customer joins the show's queue (on sale already),
    polls every poll_interval_s until admitted, then books once with the Admission-Token. Stops
    once the show sold out (then nobody more is admitted) or every customer booked. Its figures:
    the rush's (the booking requests are the admitted customers'), its checks, and the queue's."""
    tokens = bench.seed_customers(customers)
    rng = random.Random(bench.options.seed)
    if seated:
        items = [[i, body] for i, (_, body) in enumerate(seated_items(show_id, customers, customers, rng))]
    else:
        items = [[i, {"show_id": show_id, "qty": rng.randint(1, 4), "payment_method": "tok_ok"}]
                 for i in range(customers)]
    log.info("queued rush: %d customers at %d+%d connections, admitted %d a minute",
             customers, bench.options.concurrency, bench.options.concurrency, admit_per_minute)

    def until_sold_out(process) -> None:
        with psycopg.connect(bench.db_url, autocommit=True) as connection:
            while process.poll() is None:
                if connection.execute("SELECT remaining FROM shows WHERE id = %s", (show_id,)).fetchone()[0] == 0:
                    time.sleep(2.0)  # the admitted customers' bookings in flight are answered
                    return
                time.sleep(0.2)

    plan = {"queue": {"join_path": f"/shows/{show_id}/queue", "poll_interval_s": poll_interval_s},
            "seed": bench.options.seed}
    if seated:
        plan["seat_page"] = {"path": f"/shows/{show_id}/seats", "pollers": 0}
    result, figures = drive(bench, show_id, tokens, items, workdir, stop_when=until_sold_out, **plan)
    queue = result["queue"]
    statuses = result["statuses"]
    waited = queue["waited_s"]
    # The bookings sent once every join was answered: behind the queue, without the joins' burst.
    after_joins = [ms for ms, at in zip(result["latencies_ms"], result["sent_s"])
                   if ms >= 0 and at >= queue["joins_done_s"]]
    figures.update(requests=sum(1 for ms in result["latencies_ms"] if ms >= 0), customers=customers,
                   queued=True, admit_per_minute=admit_per_minute, poll_interval_s=poll_interval_s,
                   admitted_booking_p99_ms=figures["api_p99_ms"],
                   joins_s=queue["joins_done_s"], bookings_after_joins=len(after_joins),
                   booking_p99_after_joins_ms=percentile(after_joins, 99) if after_joins else None,
                   customers_admitted=len(waited), customers_not_admitted=statuses.get("-3", 0),
                   joins_refused=statuses.get("-2", 0), join_statuses=queue["join_statuses"],
                   queue_poll_requests=sum(queue["poll_statuses"].values()), queue_poll_statuses=queue["poll_statuses"],
                   queue_poll_p99_ms=percentile(queue["poll_latencies_ms"], 99),
                   waited_p50_s=percentile(waited, 50), waited_max_s=max(waited, default=0.0))
    served = served_ms(bench, "POST", "/bookings", 202, result["started_at"])
    figures.update(booking_served_p99_ms=percentile(served, 99) if served else None)
    if seated:
        page = result["seat_page"]
        figures.update(picks_not_sent=statuses.get("0", 0), picks_short=page["picks_short"],
                       seat_page_requests=len(page["latencies_ms"]), seat_page_statuses=page["statuses"],
                       seat_page_p99_ms=percentile(page["latencies_ms"], 99))
    checked = check_show(bench, show_id, result, reserved=seated)
    rows = checked.pop("bookings", None)
    figures.update(checked)
    if seated:
        figures.update(check_seats(bench, show_id, rows))
    queued = queue_checks(bench, show_id, queue["admitted_seen"])
    queued.pop("entries")
    figures.update(queued)
    with psycopg.connect(bench.db_url) as connection:
        figures["bookings_without_admission"] = connection.execute(
            "SELECT count(*) FROM bookings WHERE show_id = %s AND admission_id IS NULL", (show_id,)).fetchone()[0]
        figures["admissions_booked_twice"] = connection.execute(
            "SELECT count(*) FROM (SELECT admission_id FROM bookings WHERE show_id = %s "
            "AND status NOT IN ('REJECTED', 'PAYMENT_FAILED', 'EXPIRED') GROUP BY admission_id "
            "HAVING count(*) > 1) AS twice", (show_id,)).fetchone()[0]
    return figures
