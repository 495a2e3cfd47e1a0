"""`python -m bench show-cancel`: a cancelled show refunded (SPEC §11), with workers SIGKILLed once.

On the bench's stack (the run command's processes, restarted by the supervisor when they die):
- a show of --cancel-bookings PAID bookings of one seat, each with its charge captured at the
  gateway sandbox (charged through the gateway's API, then seeded straight into the database as
  the charge step records them, with their tickets and my page rows);
- POST /shows/{id}/cancel, then GET /shows/{id} polled: the time until every live booking is
  cancelled (the fan-out) and until `refunds.pending` is 0 (every refund settled);
- once a third of the refunds are done, worker-payments and worker-maintenance (its process
  group: the pool children too) are SIGKILLed; the supervisor restarts them, and the broker, the
  outbox and the re-drive job bring back what they held;
- then each booking is checked against the gateway's ledger (captured = refunded: refunded in
  full, once), and the consistency report must be clean;
- the baseline, same run: the gateway calls a refund makes (void the charge key, list the
  booking's charges, refund), for --baseline-refunds other captured charges, from as many threads
  as the payments worker has processes: what the gateway alone allows at that concurrency.
  refund_rate_vs_gateway_alone = refunds/s of the show ÷ that: near 1, the gateway bounds it.
"""
from __future__ import annotations

import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import requests

from bench import door, harness

PRICE = 3_000
CHARGE_THREADS = 16


def charge_all(gateway, booking_ids: list[str]) -> dict[str, str]:
    """Capture a charge for each booking at the sandbox (as the charge step would): booking -> charge id."""
    def one(booking_id):
        charge = gateway.charge(reference=booking_id, amount=PRICE, payment_method="tok_ok",
                                idempotency_key=f"charge:{booking_id}")
        assert charge.captured, charge
        return booking_id, charge.id
    with ThreadPoolExecutor(CHARGE_THREADS) as pool:
        return dict(pool.map(one, booking_ids))


def seed_paid_show(bench: harness.BenchStack, count: int) -> tuple[str, list[str]]:
    """A show with `count` PAID bookings of one seat, their charges captured at the gateway."""
    from sqlalchemy import insert, select

    from models import db
    from models.bookings import Booking
    from models.database import new_id, utc_now
    from models.mypage import project_ids
    from models.payments import Payment
    from models.shows import Show
    from models.tickets import Ticket
    from models.users import Role, User

    booking_ids = [new_id() for _ in range(count)]
    began = time.perf_counter()
    charges = charge_all(gateway_of(bench), booking_ids)
    harness.log.info("show-cancel: %d charges captured in %.1fs", count, time.perf_counter() - began)
    with bench.app.app_context():
        show = Show(title=f"Cancelled {uuid.uuid4().hex[:8]}", venue="Bench Hall",
                    starts_at=utc_now() + timedelta(days=3), price=PRICE, capacity=count)
        show.remaining = 0
        db.session.add(show)
        customers = list(db.session.scalars(select(User.id).where(User.role == Role.CUSTOMER).limit(1000)))
        db.session.commit()
        show_id, now = show.id, utc_now()
        for start in range(0, count, 2000):
            chunk = booking_ids[start:start + 2000]
            db.session.execute(insert(Booking), [
                {"id": booking_id, "customer_id": customers[n % len(customers)], "show_id": show_id, "qty": 1,
                 "amount": PRICE, "payment_method": "tok_ok", "status": "PAID", "seats_held": True, "version": 1,
                 "created_at": now, "updated_at": now} for n, booking_id in enumerate(chunk)])
            db.session.execute(insert(Payment), [
                {"booking_id": booking_id, "amount": PRICE, "status": "PAID", "charge_id": charges[booking_id],
                 "charge_requested_at": now, "updated_at": now} for booking_id in chunk])
            db.session.execute(insert(Ticket), [{"booking_id": booking_id, "status": "ISSUABLE"} for booking_id in chunk])
            project_ids(chunk)
            db.session.commit()
    return show_id, booking_ids


def gateway_alone(bench: harness.BenchStack, count: int, threads: int) -> dict:
    """The refund step's gateway calls for `count` captured charges, from `threads` threads."""
    gateway = gateway_of(bench)
    booking_ids = [f"bench-refund-{uuid.uuid4().hex}" for _ in range(count)]
    charges = charge_all(gateway, booking_ids)

    def refund(booking_id):
        gateway.void_charge(idempotency_key=f"charge:{booking_id}")
        for charge in gateway.find_charges(booking_id):
            gateway.refund(charge_id=charge.id, amount=charge.amount, idempotency_key=f"refund:{charge.id}")
        return charges[booking_id]
    began = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(refund, booking_ids))
    elapsed = time.perf_counter() - began
    return {"gateway_alone_refunds": count, "gateway_alone_threads": threads,
            "gateway_alone_refunds_per_s": count / elapsed}


def gateway_of(bench: harness.BenchStack):
    from gateway.client import GatewayClient
    return GatewayClient(bench.stack.urls["gateway"], timeout=60)


def admin_headers(bench: harness.BenchStack) -> dict:
    from models.users import Role
    return {"Authorization": f"Bearer {door.user_token(bench, Role.ADMIN, 'Bench admin')}"}


def consistency_counts(bench: harness.BenchStack) -> dict:
    """The consistency report's counts of problems, for the whole stack (after the refunds)."""
    from models import db
    from models.consistency import check
    with bench.app.app_context():
        try:
            counts = check(gateway_of(bench)).counts()
        finally:
            db.session.remove()
    return {f"consistency_{key}": value for key, value in counts.items() if key not in ("bookings", "final_states")}


def _refunds(api: str, show_id: str) -> dict:
    return requests.get(f"{api}/shows/{show_id}", timeout=30).json()["refunds"] or {}


def _live(bench, show_id: str) -> int:
    from sqlalchemy import func, select

    from models import db
    from models.bookings import Booking
    with bench.app.app_context():
        try:
            return db.session.scalar(select(func.count()).where(
                Booking.show_id == show_id, Booking.status.in_(["PENDING", "CONFIRMED", "PAID"])))
        finally:
            db.session.remove()


def kill(bench: harness.BenchStack, name: str) -> None:
    os.killpg(bench.stack.process(name).pid, signal.SIGKILL)


def run(bench: harness.BenchStack, count: int, baseline_refunds: int, workers: int, kill_at: float = 1 / 3) -> dict:
    api = bench.stack.urls["api"]
    show_id, booking_ids = seed_paid_show(bench, count)
    admin = admin_headers(bench)
    figures: dict = {"show_cancel": True, "cancel_bookings": count}
    began = time.perf_counter()
    answer = requests.post(f"{api}/shows/{show_id}/cancel", headers=admin, timeout=60)
    if answer.status_code != 202:
        raise RuntimeError(f"cancel answered {answer.status_code}: {answer.text[:300]}")
    killed_at = fanned_out = None
    while True:
        refunds = _refunds(api, show_id)
        now = time.perf_counter() - began
        if fanned_out is None and _live(bench, show_id) == 0:
            fanned_out = now
        if killed_at is None and refunds.get("done", 0) >= count * kill_at:
            killed_at = {"seconds": round(now, 1), **refunds}
            kill(bench, "worker-payments")
            kill(bench, "worker-maintenance")
            harness.log.info("show-cancel: SIGKILLed worker-payments and worker-maintenance at %s", killed_at)
        if refunds.get("pending") == 0 and refunds.get("total") == count:
            break
        if now > bench.options.settle_timeout:
            raise RuntimeError(f"refunds not done after {now:.0f}s: {refunds}")
        time.sleep(0.5)
    elapsed = time.perf_counter() - began
    ledger = gateway_of(bench).ledger()["by_reference"]
    not_in_full = sum(1 for booking_id in booking_ids
                      if (ledger.get(booking_id) or {}).get("captured") != PRICE
                      or (ledger.get(booking_id) or {}).get("refunded") != PRICE)
    before = killed_at["done"] / killed_at["seconds"] if killed_at and killed_at["seconds"] else None
    figures.update(refund_s=elapsed, fan_out_s=fanned_out, refunds_per_s=count / elapsed, killed_at=killed_at,
                   refunds_per_s_before_kill=before,
                   after_kill_s=elapsed - killed_at["seconds"] if killed_at else None,
                   refunded_not_in_full=not_in_full, **consistency_counts(bench))
    figures.update(gateway_alone(bench, baseline_refunds, workers))
    alone = figures["gateway_alone_refunds_per_s"]
    figures["refund_rate_vs_gateway_alone"] = figures["refunds_per_s"] / alone
    figures["refund_rate_before_kill_vs_gateway_alone"] = before / alone if before else None
    return figures
