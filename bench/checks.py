"""Correctness checks shared by the benchmark harness and the concurrency tests.

Each takes plain rows (dicts), so the same definition serves a test and a 20,000-booking rush.
"""
from __future__ import annotations

HOLDING = ("CONFIRMED", "PAID")


def fairness_violations_realtime(bookings: list[dict]) -> int:
    """SPEC §4.6 by real time: pairs (A, B) where A's request was answered before B's was sent,
    A was REJECTED, B holds seats and asked for at least A's qty. Requests in flight together
    have no order between them. Rows are one show's bookings with qty, status, sent, answered.

    O(n log n + n · distinct qty): the rejected, by answered time, are counted per qty as the
    holding ones are swept by sent time."""
    rejected = sorted((b["answered"], b["qty"]) for b in bookings if b["status"] == "REJECTED")
    holding = sorted((b["sent"], b["qty"]) for b in bookings if b["status"] in HOLDING)
    counts: dict[int, int] = {}
    next_rejected = violations = 0
    for sent, qty in holding:
        while next_rejected < len(rejected) and rejected[next_rejected][0] < sent:
            rejected_qty = rejected[next_rejected][1]
            counts[rejected_qty] = counts.get(rejected_qty, 0) + 1
            next_rejected += 1
        violations += sum(n for q, n in counts.items() if q <= qty)
    return violations


def fairness_violations_realtime_reference(bookings: list[dict]) -> int:
    """The same count, pair by pair, word for word the definition (for the tests)."""
    return sum(1 for a in bookings for b in bookings
               if a["answered"] < b["sent"] and a["status"] == "REJECTED" and b["status"] in HOLDING
               and b["qty"] >= a["qty"])


def oversold(capacity: int, remaining: int, bookings: list[dict]) -> int:
    """Seats handed out beyond capacity: by the bookings holding seats, or by the show's counter."""
    held = sum(b["qty"] for b in bookings if b["seats_held"])
    holding = sum(b["qty"] for b in bookings if b["status"] in HOLDING)
    return max(0, held - capacity, holding - capacity, (capacity - remaining) - capacity, -remaining)


def ledger_mismatches(bookings: list[dict], ledger_by_reference: dict[str, dict]) -> int:
    """Bookings whose money at the gateway disagrees with their state, plus gateway charges for
    no booking of ours. A PAID booking has its amount captured and nothing refunded; any other
    booking has kept nothing (captured == refunded)."""
    mismatches = 0
    ids = set()
    for booking in bookings:
        ids.add(booking["id"])
        entry = ledger_by_reference.get(booking["id"], {"captured": 0, "refunded": 0})
        kept = (entry["captured"] or 0) - (entry["refunded"] or 0)
        expected = booking["amount"] if booking["status"] == "PAID" else 0
        if kept != expected:
            mismatches += 1
    mismatches += sum(1 for reference in ledger_by_reference if reference not in ids)
    return mismatches


def show_ledger(ledger_by_reference: dict[str, dict], show_booking_ids, other_booking_ids) -> dict[str, dict]:
    """The part of the gateway's whole ledger one show's check must see: its bookings' entries,
    and every entry whose reference is no booking at all (a stray charge, which ledger_mismatches
    counts). Entries of other shows' bookings are left to those shows' checks."""
    show_booking_ids, other_booking_ids = set(show_booking_ids), set(other_booking_ids)
    return {reference: entry for reference, entry in ledger_by_reference.items()
            if reference in show_booking_ids or reference not in other_booking_ids}
