"""`python -m bench checkins`: check-ins at the door (SPEC §10), online and from an offline gate.

On the bench's stack: one show with issued tickets (seeded straight into the database, each
signed with the show's key as the API signs them), a staff token, then
- online: every ticket scanned twice, in a shuffled order, through POST /checkins at the bench's
  concurrency: check-ins/s (answers, 200 and 409, per second), and double_admissions = 200s
  beyond one per ticket (must be 0);
- offline: one POST /checkins/batch of --batch-scans scans of other tickets (each ticket once),
  timed, then the same batch again (the replay): batch_mismatches = answers not ADMITTED the
  first time, or different the second (must be 0);
- the bare JSON baseline (bench/bare_app.py GET /page) with a body the size of a check-in answer,
  under the API's gunicorn settings: the ratios are against it.
"""
from __future__ import annotations

import json
import random
import time
import uuid
from datetime import timedelta
from pathlib import Path

import requests

from bench import harness

ANSWER_BYTES = 260  # about the size of a check-in's answer


def seed_tickets(bench: harness.BenchStack, count: int) -> tuple[str, list[str]]:
    """A show with `count` paid bookings of one seat, each with an issued, signed ticket and its
    my page row: (show id, their QRs). Straight into the database, in one transaction per 2,000
    (without the my page rows the convergence job would write them during the run)."""
    from sqlalchemy import insert, select

    from models import db
    from models.bookings import Booking
    from models.checkin_keys import signing_key
    from models.database import new_id, utc_now
    from models.mypage import project_ids
    from models.payments import Payment
    from models.shows import Show
    from models.tickets import Ticket
    from models.users import Role, User

    with bench.app.app_context():
        show = Show(title=f"Door {uuid.uuid4().hex[:8]}", venue="Bench Hall", starts_at=utc_now() + timedelta(days=1),
                    price=1500, capacity=count)
        show.remaining = 0
        db.session.add(show)
        db.session.flush()
        key = signing_key(show.id)
        customers = list(db.session.scalars(select(User.id).where(User.role == Role.CUSTOMER).limit(1000)))
        db.session.commit()
        qrs = []
        now = utc_now()
        for start in range(0, count, 2000):
            bookings, payments, tickets = [], [], []
            for i in range(start, min(count, start + 2000)):
                booking_id, tid, code = new_id(), new_id(), uuid.uuid4().hex[:16].upper()
                bookings.append({"id": booking_id, "customer_id": customers[i % len(customers)], "show_id": show.id,
                                 "qty": 1, "amount": 1500, "payment_method": "tok_ok", "status": "PAID",
                                 "seats_held": True, "version": 1, "created_at": now, "updated_at": now})
                payments.append({"booking_id": booking_id, "amount": 1500, "status": "PAID", "updated_at": now})
                qr = key.sign({"tid": tid, "code": code, "bid": booking_id, "sid": show.id, "qty": 1, "seats": []})
                tickets.append({"booking_id": booking_id, "status": "ISSUED", "code": code, "issued_at": now,
                                "tid": tid, "qr": qr})
                qrs.append(qr)
            db.session.execute(insert(Booking), bookings)
            db.session.execute(insert(Payment), payments)
            db.session.execute(insert(Ticket), tickets)
            project_ids([booking["id"] for booking in bookings])  # their my page rows, as the API writes them
            db.session.commit()
        return show.id, qrs


def user_token(bench: harness.BenchStack, role: str, name: str) -> str:
    """A new account of this role, straight into the database, and its access token."""
    from flask_jwt_extended import create_access_token

    from models import db
    from models.users import register
    with bench.app.app_context():
        user = register(f"bench-{role}-{uuid.uuid4().hex[:8]}@example.test", "bench-password", name, role=role)
        db.session.commit()
        with bench.app.test_request_context():
            return create_access_token(identity=user.id, additional_claims={"role": user.role})


def staff_token(bench: harness.BenchStack) -> str:
    from models.users import Role
    return user_token(bench, Role.STAFF, "Bench gate")


def online(bench: harness.BenchStack, token: str, qrs: list[str], workdir: Path) -> dict:
    """Every ticket scanned twice, shuffled, at the bench's concurrency."""
    items = [[0, {"qr": qr, "gate": f"gate-{n % 8}"}] for n, qr in enumerate(qrs + qrs)]
    random.Random(bench.options.seed).shuffle(items)
    result = harness.run_load(bench.stack.urls["api"], "/checkins", [token], items, bench.options.concurrency,
                              workdir)
    load = harness.load_summary(result, "200")
    answered = load["statuses"].get("200", 0) + load["statuses"].get("409", 0)
    return {"online_scans": len(items), "online_tickets": len(qrs), "online_statuses": load["statuses"],
            "online_errors": load["errors"],
            "checkins_per_s": answered / load["elapsed_s"] if load["elapsed_s"] else 0.0,
            "admitted_per_s": load["accepted_rps"], "checkin_p50_ms": load["p50_ms"],
            "checkin_p99_ms": load["p99_ms"], "double_admissions": max(0, load["accepted"] - len(qrs)),
            "missed_admissions": max(0, len(qrs) - load["accepted"]),
            "checkin_loadgen_cpu_pct": load["loadgen_cpu_pct"]}


def offline(bench: harness.BenchStack, token: str, qrs: list[str]) -> dict:
    """One batch of these tickets (once each), then the same batch again."""
    started = time.time() - 3600
    scans = [{"qr": qr, "scanned_at": _iso(started + n * 0.01), "gate": "bench-offline"} for n, qr in enumerate(qrs)]
    body = json.dumps({"scans": scans})
    url = bench.stack.urls["api"] + "/checkins/batch"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    timings, answers = [], []
    for _ in range(2):
        began = time.perf_counter()
        response = requests.post(url, data=body, headers=headers, timeout=600)
        timings.append(time.perf_counter() - began)
        if response.status_code != 200:
            raise RuntimeError(f"batch answered {response.status_code}: {response.text[:500]}")
        answers.append(response.json()["results"])
    first, replay = answers
    mismatches = sum(answer["result"] != "ADMITTED" for answer in first) + sum(a != b for a, b in zip(first, replay))
    return {"batch_scans": len(scans), "batch_bytes": len(body), "batch_s": timings[0], "batch_replay_s": timings[1],
            "batch_scans_per_s": len(scans) / timings[0], "batch_mismatches": mismatches}


def _iso(epoch: float) -> str:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat()


def run(bench: harness.BenchStack, tickets: int, batch_scans: int, page_requests: int, workdir: Path,
        baselines: bool = True) -> dict:
    harness.log.info("checkins: seeding %d tickets", tickets + batch_scans)
    show_id, qrs = seed_tickets(bench, tickets + batch_scans)
    token = staff_token(bench)
    figures: dict = {"checkins": True, "tickets": tickets}
    if baselines:
        figures.update(harness.baseline_bare_json(bench, b'{"result": "ADMITTED", "pad": "' + b"x" * ANSWER_BYTES
                                                  + b'"}', page_requests, workdir))
    harness.log.info("checkins: online, %d scans of %d tickets", 2 * tickets, tickets)
    figures.update(online(bench, token, qrs[:tickets], workdir))
    harness.log.info("checkins: one offline batch of %d scans, and its replay", batch_scans)
    figures.update(offline(bench, token, qrs[tickets:]))

    def ratio(a, b):
        return figures[a] / figures[b] if figures.get(a) is not None and figures.get(b) else None
    figures.update(ratio_checkins_vs_bare_json=ratio("checkins_per_s", "bare_json_rps"),
                   ratio_batch_scans_vs_bare_json=ratio("batch_scans_per_s", "bare_json_rps"))
    return figures
