"""Check-in at the door (SPEC §10): who a scanned ticket lets in, online and from an offline gate.

Online (POST /checkins) a ticket is admitted once: the caller holds the booking's row lock, so of
gates racing on one ticket the first to get the lock moves it ISSUED -> CHECKED_IN and every
other one finds it CHECKED_IN (ALREADY_CHECKED_IN). A cancel takes the same lock: it runs before
(the ticket is VOID) or after (it is refused: a used ticket cannot be cancelled), never both.

Offline gates admit without asking and upload their scans later (POST /checkins/batch). The
record keeps the earliest scan of a ticket: scans are ordered by (scanned_at, gate), the first one
is ADMITTED and every later one a DUPLICATE; a scan earlier than the record (a gate that uploads
late) becomes the record. The same scan uploaded again finds itself on record and is ADMITTED
again, so replaying a batch changes nothing.
"""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from models.errors import Conflict
from models.lifecycles import BookingStatus, PaymentStatus, TicketStatus


class Result(StrEnum):
    ADMITTED = "ADMITTED"
    ALREADY_CHECKED_IN = "ALREADY_CHECKED_IN"  # online: admitted before
    DUPLICATE = "DUPLICATE"                    # offline: an earlier scan of the ticket was admitted
    VOID = "VOID"                              # cancelled or refunded, or a ticket replaced since
    WRONG_SHOW = "WRONG_SHOW"                  # a ticket of another show than the gate's
    INVALID = "INVALID"                        # not a ticket we signed (models/checkin_keys.py)


class CheckinRefused(Conflict):
    """A readable ticket that does not get in (409), with the answer's fields in `details`."""

    def __init__(self, result: Result, message: str, **details):
        super().__init__(message)
        self.details = {"result": result.value,
                        **{key: value.isoformat() if isinstance(value, datetime) else value
                           for key, value in details.items()}}


def wrong_show(claims: dict, show_id: str) -> CheckinRefused:
    return CheckinRefused(Result.WRONG_SHOW, f"this ticket is for another show than {show_id}",
                          show_id=claims["sid"])


def is_live(booking, claims: dict) -> bool:
    """The booking is paid and its ticket is the one the QR names, issued or checked in."""
    ticket = booking.ticket
    return (ticket.tid == claims["tid"] and ticket.code == claims["code"]
            and booking.status == BookingStatus.PAID and booking.payment.status == PaymentStatus.PAID
            and ticket.status in (TicketStatus.ISSUED, TicketStatus.CHECKED_IN))


def admitted(booking) -> dict:
    return {"result": Result.ADMITTED.value, "tid": booking.ticket.tid, "booking_id": booking.id,
            "show_id": booking.show_id, "qty": booking.qty, "seats": list(booking.seats or []),
            "checked_in_at": booking.ticket.checked_in_at}


def _on_record(ticket) -> dict:
    return {"tid": ticket.tid, "first_checked_in_at": ticket.checked_in_at, "gate": ticket.checkin_gate}


def check_in_online(booking, claims: dict, now: datetime, gate: str | None) -> dict:
    """Admit the ticket now (the caller holds the booking's lock); CheckinRefused otherwise."""
    if booking is None or not is_live(booking, claims):
        raise CheckinRefused(Result.VOID, "this ticket is void (cancelled or refunded)", tid=claims["tid"])
    if booking.ticket.status == TicketStatus.CHECKED_IN:
        raise CheckinRefused(Result.ALREADY_CHECKED_IN, "this ticket was checked in already",
                             **_on_record(booking.ticket))
    booking.ticket.check_in(now, gate)
    return admitted(booking)


def scan_order(scanned_at: datetime, gate: str | None) -> tuple:
    """Which of two scans of one ticket came first: the earlier time; at the same time, by gate."""
    return scanned_at, gate or ""


def check_in_offline(booking, claims: dict, scanned_at: datetime, gate: str | None) -> dict:
    """Judge one uploaded scan against the record (the caller holds the booking's lock and
    gives a ticket's scans in scan_order). Returns the scan's answer."""
    if booking is None or not is_live(booking, claims):
        return {"result": Result.VOID.value, "tid": claims["tid"], "message": "this ticket is void"}
    ticket = booking.ticket
    if ticket.status == TicketStatus.ISSUED:
        ticket.check_in(scanned_at, gate)
        return admitted(booking)
    scan, record = scan_order(scanned_at, gate), scan_order(ticket.checked_in_at, ticket.checkin_gate)
    if scan < record:  # this gate scanned it first, and uploads only now
        ticket.move_check_in_earlier(scanned_at, gate)
    elif scan > record:
        return {"result": Result.DUPLICATE.value, **_on_record(ticket)}
    return admitted(booking)  # the scan on record: admitted (again, for a replayed batch)
