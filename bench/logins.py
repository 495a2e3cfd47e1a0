"""python -m bench.logins: the API's memory and throughput under a login rush.

Starts the stack the way the run command does (bench.harness.BenchStack: gunicorn with
web/gunicorn_conf.py, its workers and threads), registers --parallel customers, then has
--parallel threads log in at once, --rounds times each (POST /auth/token). A sampler reads the
resident memory (RSS) of the API's gunicorn master and workers every 10 ms from psutil, before
and during the rush. Prints a table and writes bench-results/logins-TIMESTAMP.json.

    python -m bench.logins                      # 32 parallel logins x 4 rounds
    python -m bench.logins --old-hashes         # customers whose hashes have argon2-cffi's default
                                                # parameters (m=64 MiB, t=3, p=4), as stored before
                                                # issue 10: every first login verifies and rehashes them
    python -m bench.logins --env PASSWORD_HASH_CONCURRENCY=8

Rate limits on /auth/* are lifted for the run (all logins come from 127.0.0.1).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import statistics
import sys
import threading
import time
from pathlib import Path

import psutil
import requests

from bench.harness import BenchStack, Options, percentile

RESULTS_DIR = Path("bench-results")
PASSWORD = "bench-login-password"
log = logging.getLogger("bench.logins")


class RssSampler(threading.Thread):
    """Peak and idle RSS of a process and its children (the gunicorn master and its workers)."""

    def __init__(self, pid: int, interval: float = 0.01):
        super().__init__(name="rss-sampler", daemon=True)
        self.root, self.interval = psutil.Process(pid), interval
        self.stop = threading.Event()
        self.peak_total = 0
        self.peak_by_pid: dict[int, int] = {}
        self.samples = 0

    def read(self) -> dict[int, int]:
        rss = {}
        for process in [self.root, *self.root.children(recursive=True)]:
            try:
                rss[process.pid] = process.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return rss

    def run(self) -> None:
        while not self.stop.is_set():
            rss = self.read()
            self.peak_total = max(self.peak_total, sum(rss.values()))
            for pid, value in rss.items():
                self.peak_by_pid[pid] = max(self.peak_by_pid.get(pid, 0), value)
            self.samples += 1
            self.stop.wait(self.interval)


def seed_customers(bench: BenchStack, count: int, old_hashes: bool) -> list[str]:
    """Customers to log in: registered through the API (hashed by the API's own settings), or
    with --old-hashes straight into the database with argon2-cffi's default parameters."""
    emails = [f"login-{i}-{secrets.token_hex(3)}@example.test" for i in range(count)]
    if old_hashes:
        from argon2 import PasswordHasher
        from sqlalchemy import insert

        from models import db
        from models.database import new_id
        from models.users import Role, User
        legacy = PasswordHasher()  # the library's defaults: what models/users.py used before
        rows = [{"id": new_id(), "email": email, "name": "Login bench", "password_hash": legacy.hash(PASSWORD),
                 "role": str(Role.CUSTOMER)} for email in emails]
        with bench.app.app_context():
            db.session.execute(insert(User), rows)
            db.session.commit()
        return emails
    url = bench.stack.urls["api"] + "/auth/register"
    for email in emails:
        response = requests.post(url, json={"email": email, "password": PASSWORD, "name": "Login bench"}, timeout=60)
        response.raise_for_status()
    return emails


def hash_parameters(bench: BenchStack, emails: list[str]) -> dict[str, int]:
    """How many of these customers' stored hashes have which (m, t, p)."""
    from argon2 import extract_parameters
    from sqlalchemy import select

    from models import db
    from models.users import User
    with bench.app.app_context():
        hashes = db.session.scalars(select(User.password_hash).where(User.email.in_(emails))).all()
        db.session.remove()
    counts: dict[str, int] = {}
    for value in hashes:
        p = extract_parameters(value)
        key = f"m={p.memory_cost // 1024}MiB,t={p.time_cost},p={p.parallelism}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def login_rush(url: str, emails: list[str], rounds: int) -> dict:
    """Every customer's thread logs in `rounds` times; all threads start together."""
    start = threading.Barrier(len(emails) + 1)
    latencies: list[list[float]] = [[] for _ in emails]
    statuses: dict[str, int] = {}
    lock = threading.Lock()

    def customer(index: int, email: str) -> None:
        session = requests.Session()
        start.wait()
        for _ in range(rounds):
            began = time.perf_counter()
            try:
                status = str(session.post(url, json={"email": email, "password": PASSWORD}, timeout=120).status_code)
            except requests.RequestException as error:
                status = type(error).__name__
            latencies[index].append((time.perf_counter() - began) * 1000)
            with lock:
                statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=customer, args=(i, e), daemon=True) for i, e in enumerate(emails)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    flat = [value for per_thread in latencies for value in per_thread]
    first = [per_thread[0] for per_thread in latencies if per_thread]
    return {"elapsed_s": elapsed, "logins": len(flat), "statuses": statuses,
            "logins_per_s": statuses.get("200", 0) / elapsed if elapsed else 0.0,
            "p50_ms": percentile(flat, 50), "p99_ms": percentile(flat, 99),
            "first_round_p50_ms": percentile(first, 50)}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.logins", description=__doc__.splitlines()[0])
    parser.add_argument("--parallel", type=int, default=32, help="customers logging in at once")
    parser.add_argument("--rounds", type=int, default=4, help="logins per customer")
    parser.add_argument("--web-concurrency", type=int, default=2, help="gunicorn workers (deploy/api.yaml: 2)")
    parser.add_argument("--old-hashes", action="store_true", help="customers with the pre-issue-10 hash parameters")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the stack (e.g. PASSWORD_HASH_CONCURRENCY=4)")
    parser.add_argument("--label", default="", help="a name for this run in the result file")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    extra = dict(item.split("=", 1) for item in args.env)
    extra.setdefault("RATE_LIMIT_AUTH", "1000000/minute")
    extra.setdefault("RATE_LIMIT_AUTH_FAILURES", "1000000/minute")
    options = Options(workers=1, web_concurrency=args.web_concurrency, flower=False, extra_env=extra)
    with BenchStack(options) as bench:
        emails = seed_customers(bench, args.parallel, args.old_hashes)
        before = hash_parameters(bench, emails)
        api_pid = bench.stack.process("api").pid
        sampler = RssSampler(api_pid)
        idle = [sum(sampler.read().values()) for _ in range(20) if not time.sleep(0.05)]
        processes = len(sampler.read())
        sampler.start()
        result = login_rush(bench.stack.urls["api"] + "/auth/token", emails, args.rounds)
        sampler.stop.set()
        sampler.join()
        after = hash_parameters(bench, emails)
    mib = 1024 * 1024
    figures = {
        "label": args.label, "parallel": args.parallel, "rounds": args.rounds,
        "web_concurrency": args.web_concurrency, "old_hashes": args.old_hashes, "env": {
            k: v for k, v in extra.items() if not k.startswith("RATE_LIMIT")},
        "cores": os.cpu_count(), "loadavg_1m": os.getloadavg()[0],
        "api_processes": processes,
        "idle_rss_mib": statistics.mean(idle) / mib,
        "peak_rss_mib": sampler.peak_total / mib,
        "peak_rss_by_process_mib": sorted((round(v / mib, 1) for v in sampler.peak_by_pid.values()), reverse=True),
        "rss_samples": sampler.samples,
        **result,
        "hashes_before": before, "hashes_after": after,
    }
    rows = [("API processes (master + workers)", processes), ("idle RSS, all (MiB)", figures["idle_rss_mib"]),
            ("peak RSS, all (MiB)", figures["peak_rss_mib"]),
            ("peak RSS per process (MiB)", figures["peak_rss_by_process_mib"]),
            ("logins", result["logins"]), ("statuses", result["statuses"]),
            ("logins/s", result["logins_per_s"]), ("latency p50 / p99 (ms)", f"{result['p50_ms']:.0f} / {result['p99_ms']:.0f}"),
            ("first login p50 (ms)", result["first_round_p50_ms"]),
            ("stored hashes before", before), ("stored hashes after", after)]
    for name, value in rows:
        print(f"{name:36} {value:.1f}" if isinstance(value, float) else f"{name:36} {value}")
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"logins-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(figures, indent=2))
    print(f"written to {path}")
    return 0 if set(result["statuses"]) == {"200"} else 1


if __name__ == "__main__":
    sys.exit(main())
