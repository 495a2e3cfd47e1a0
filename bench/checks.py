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


# -- reserved seating (SPEC §8) ---------------------------------------------------------------

def double_held(holding_bookings: list[dict], seat_holds: list[tuple[str, str | None]]) -> int:
    """Seats held twice, judged from both records of a hold: seats that two or more live
    bookings list (a booking's `seats`, for those with seats_held), plus seats whose seat_holds
    row names another holder than the one booking that lists it, or no booking lists at all
    (a blocked seat, booking None, is listed by none). `seat_holds` is (seat id, booking id)."""
    claims: dict[str, list[str]] = {}
    for booking in holding_bookings:
        for seat_id in booking["seats"] or ():
            claims.setdefault(seat_id, []).append(booking["id"])
    twice = sum(1 for holders in claims.values() if len(holders) > 1)
    astray = 0
    for seat_id, booking_id in seat_holds:
        holders = claims.get(seat_id, [])
        if booking_id is None:
            astray += bool(holders)
        elif booking_id not in holders:
            astray += 1
    return twice + astray


def page_mismatches(page_seats: list[dict], held_seat_ids, blocked_seat_ids=()) -> int:
    """Seats the seat page shows otherwise than the holds say: a held seat not HELD or SOLD, a
    blocked one not BLOCKED, or any other not AVAILABLE."""
    held, blocked = set(held_seat_ids), set(blocked_seat_ids)
    expected = {seat_id: "BLOCKED" for seat_id in blocked}
    wrong = 0
    for seat in page_seats:
        if seat["id"] in held:
            wrong += seat["status"] not in ("HELD", "SOLD")
        else:
            wrong += seat["status"] != expected.get(seat["id"], "AVAILABLE")
    return wrong


def limit_violations(holding_bookings: list[dict], max_per_customer: int | None) -> int:
    """Customers holding more than max_per_customer seats of the show (invariant 9)."""
    if max_per_customer is None:
        return 0
    seats: dict[str, int] = {}
    for booking in holding_bookings:
        seats[booking["customer_id"]] = seats.get(booking["customer_id"], 0) + booking["qty"]
    return sum(1 for count in seats.values() if count > max_per_customer)


def stranded_single_seats(page_seats: list[dict]) -> int:
    """Free seats whose two neighbours in the row (numbers one below and one above) both exist
    and are not free: a single seat no block of two can use. A row's end seat has one neighbour
    and is not counted, nor is a seat beside a gap in the numbering."""
    status = {(seat["section"], seat["row"], seat["number"]): seat["status"] for seat in page_seats}
    stranded = 0
    for (section, row, number), state in status.items():
        if state != "AVAILABLE":
            continue
        left, right = status.get((section, row, number - 1)), status.get((section, row, number + 1))
        stranded += left is not None and right is not None and left != "AVAILABLE" and right != "AVAILABLE"
    return stranded


NO_BLOCK = ("no_adjacent_seats", "sold_out")


def fairness_violations_best_available(bookings: list[dict]) -> int:
    """SPEC §8 invariant 10 for best available, by real time: fairness_violations_realtime within
    each category's best-available bookings. A REJECTED booking counts only if it was refused for
    want of a block (not for the purchase limit or closed sales: reasons of its own); a later
    booking holding qty or more adjacent seats of the category had a block the earlier could have
    had, as nothing is released during a rush of good cards. Picks are not judged: a pick refused
    because one of its seats was taken had no claim on any other seat."""
    by_category: dict[str, list[dict]] = {}
    for booking in bookings:
        if booking["category"] is None:
            continue
        if booking["status"] == "REJECTED" and booking["reject_reason"] not in NO_BLOCK:
            continue
        by_category.setdefault(booking["category"], []).append(booking)
    return sum(fairness_violations_realtime(group) for group in by_category.values())
