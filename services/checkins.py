"""Check-in at the door (SPEC §10): POST /checkins admits one ticket now; POST /checkins/batch
takes what an offline gate scanned; GET /shows/{id}/checkin-list is what such a gate takes along.
The rules are in models/checkins.py; the QR is read in models/checkin_keys.py."""
from __future__ import annotations

import hashlib
import json

from sqlalchemy import select

from models import db
from models.bookings import Booking
from models.checkin_keys import InvalidTicket, read_qr
from models.checkins import Result, check_in_offline, check_in_online, scan_order, wrong_show
from models.database import utc_now
from models.shows import get_show
from models.tickets import Ticket, TicketStatus
from services.unit_of_work import UnitOfWork


def check_in(qr: str, gate: str | None = None, show_id: str | None = None) -> dict:
    """Admit the ticket this QR is, once: InvalidTicket (422) if it is none of ours,
    CheckinRefused (409) if it does not get in."""
    claims = read_qr(qr)
    if show_id is not None and claims["sid"] != show_id:
        raise wrong_show(claims, show_id)
    with UnitOfWork() as uow:
        booking = _locked(uow, [claims["bid"]]).get(claims["bid"])
        answer = check_in_online(booking, claims, utc_now(), gate)
        uow.commit()
    return answer


# Bookings per transaction of an upload: each holds its bookings' row locks, and an online scan
# of one of them waits for it (lock_timeout is 5 s).
BATCH_CHUNK = 1_000


def check_in_batch(scans: list[dict], show_id: str | None = None) -> list[dict]:
    """Judge an offline gate's scans ({qr, scanned_at, gate}), each ticket's in scan order, and
    answer them in the order given. A transaction per BATCH_CHUNK bookings, every scan of a
    ticket in the same one; if one fails after others committed, the gate sends the batch again,
    and what was committed answers as before (a replay changes nothing)."""
    answers: list[dict | None] = [None] * len(scans)
    readable = []
    for index, scan in enumerate(scans):
        try:
            claims = read_qr(scan["qr"])
        except InvalidTicket as error:
            answers[index] = {"result": Result.INVALID.value, "message": error.message}
            continue
        if show_id is not None and claims["sid"] != show_id:
            refused = wrong_show(claims, show_id)
            answers[index] = {**refused.details, "tid": claims["tid"], "message": refused.message}
            continue
        readable.append((scan_order(scan["scanned_at"], scan.get("gate")), index, claims, scan))
    readable.sort(key=lambda item: item[:2])
    chunk_of = {booking_id: n // BATCH_CHUNK
                for n, booking_id in enumerate(sorted({claims["bid"] for _, _, claims, _ in readable}))}
    chunks: list[list] = [[] for _ in range(-(-len(chunk_of) // BATCH_CHUNK))]
    for item in readable:  # in scan order still
        chunks[chunk_of[item[2]["bid"]]].append(item)
    for chunk in chunks:
        with UnitOfWork() as uow:
            bookings = _locked(uow, [claims["bid"] for _, _, claims, _ in chunk])
            for _, index, claims, scan in chunk:
                answers[index] = check_in_offline(bookings.get(claims["bid"]), claims, scan["scanned_at"],
                                                  scan.get("gate"))
            uow.commit()
    return answers


def _locked(uow: UnitOfWork, booking_ids: list[str]) -> dict[str, Booking]:
    return {booking.id: booking for booking in uow.lock_bookings(booking_ids)}


def checkin_list(show_id: str) -> dict:
    """Every ticket of the show an offline gate may meet, by its door id: valid (issued, not
    checked in), checked in, void; and a version that changes whenever any of the lists does."""
    get_show(show_id)
    rows = db.session.execute(
        select(Ticket.tid, Ticket.status).join(Booking, Booking.id == Ticket.booking_id)
        .where(Booking.show_id == show_id, Ticket.tid.is_not(None)).order_by(Ticket.tid)).all()
    lists = {"valid": [], "checked_in": [], "void": []}
    for tid, status in rows:
        kind = {TicketStatus.ISSUED: "valid", TicketStatus.CHECKED_IN: "checked_in"}.get(status, "void")
        lists[kind].append(tid)
    version = hashlib.sha256(json.dumps(lists, separators=(",", ":")).encode()).hexdigest()[:16]
    return {"show_id": show_id, "version": version, **lists}
