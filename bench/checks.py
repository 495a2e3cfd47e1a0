"""Correctness checks shared by the benchmark harness and the concurrency tests.

Each takes plain rows (dicts), so the same definition serves a test and a 20,000-booking rush.
"""
from __future__ import annotations

import bisect
import itertools

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


# -- the waiting room (SPEC §9) -----------------------------------------------------------------

def admitted_twice(entries: list[dict], polled_until: dict[str, list], slots_due: int | None = None,
                   tolerance_s: float = 0.01) -> int:
    """Admissions given twice, or beyond the room's slots. `entries` are one show's queue entries
    with admission_seq and admitted_until (epoch seconds; None if never admitted); `polled_until`
    the admitted_until values each entry's polls showed while ADMITTED. Counted: admission_seq
    values held by more than one entry (each extra holder), entries polled ADMITTED with two
    different turns, or with a turn PostgreSQL does not record (times within tolerance_s are the
    same: the API's and the index's copies round differently), and admissions beyond `slots_due`
    (the slots the room's schedule had made due when it was read)."""
    holders: dict[int, int] = {}
    for entry in entries:
        if entry["admission_seq"] is not None:
            holders[entry["admission_seq"]] = holders.get(entry["admission_seq"], 0) + 1
    twice = sum(count - 1 for count in holders.values())
    recorded = {entry["id"]: entry["admitted_until"] for entry in entries}
    for entry_id, seen in polled_until.items():
        if not seen:
            continue
        until = recorded.get(entry_id)
        twice += (max(seen) - min(seen) > tolerance_s
                  or until is None or any(abs(value - until) > tolerance_s for value in seen))
    admissions = sum(holders.values())
    if slots_due is not None:
        twice += max(0, admissions - slots_due)
    return twice


def out_of_order(entries: list[dict]) -> int:
    """Entries admitted while one ahead of them in queue order was still waiting: E admitted with
    admission_seq s at admitted_at t counts if some F with a smaller `place` (the queue order,
    draw_rank NULLS LAST then arrival_seq) was not admitted by then (no admission_seq, or a larger
    one) and had not left before t (left_at None, or later than t). Entries without a place (an
    early joiner before the draw) are left out.

    O(n log n): each F blocks the admissions numbered below a bound (its own admission_seq; for
    one that left unadmitted, the first admission at or after it left; for one still waiting,
    every admission), and entries are swept in queue order with the largest bound ahead of them."""
    placed = sorted((e for e in entries if e["place"] is not None), key=lambda e: e["place"])
    admissions = sorted((e["admission_seq"], e["admitted_at"]) for e in placed if e["admission_seq"] is not None)
    infinite = float("inf")
    # The latest admission time up to each admission: the first one at or after a time is found
    # by bisection (admitted_at grows with admission_seq: one tick at a time, under the room's lock).
    latest = list(itertools.accumulate((at for _, at in admissions), max))

    def bound(entry) -> float:
        if entry["admission_seq"] is not None:
            return entry["admission_seq"]
        if entry["left_at"] is None:
            return infinite
        # the first admission not before it left: admissions numbered below it blocked on it
        index = bisect.bisect_left(latest, entry["left_at"])
        return admissions[index][0] if index < len(admissions) else infinite

    wrong = 0
    ahead = -infinite
    for entry in placed:
        if entry["admission_seq"] is not None and entry["admission_seq"] < ahead:
            wrong += 1
        ahead = max(ahead, bound(entry))
    return wrong


def out_of_order_reference(entries: list[dict]) -> int:
    """The same count, entry by entry, word for word the definition (for the tests)."""
    placed = [e for e in entries if e["place"] is not None]
    return sum(1 for e in placed if e["admission_seq"] is not None and any(
        f["place"] < e["place"]
        and (f["admission_seq"] is None or f["admission_seq"] > e["admission_seq"])
        and (f["left_at"] is None or f["left_at"] > e["admitted_at"]) for f in placed))


def admission_rate(admitted_at: list[float], admit_per_minute: int, start: float, window_s: float) -> dict:
    """Admissions in the window [start, start + window_s) (epoch seconds) against the rate: how
    many, how many the rate says, the error in percent, and the most in any one whole second of it."""
    inside = [at for at in admitted_at if start <= at < start + window_s]
    expected = admit_per_minute * window_s / 60
    per_second: dict[int, int] = {}
    for at in inside:
        per_second[int(at - start)] = per_second.get(int(at - start), 0) + 1
    return {"admitted_in_window": len(inside), "expected_in_window": expected,
            "admission_rate_error_pct": abs(len(inside) - expected) / expected * 100 if expected else None,
            "max_admitted_in_a_second": max(per_second.values(), default=0)}
