"""Correctness checks shared by the benchmark harness and the concurrency tests.

Each takes plain rows (dicts), so the same definition serves a test and a 20,000-booking rush.
"""
from __future__ import annotations

HOLDING = ("CONFIRMED", "PAID")


def fairness_violations(bookings: list[dict]) -> int:
    """SPEC §4.6: a later booking never gets seats while an earlier one for the same or fewer
    seats was rejected. `bookings` are one show's rows (seq, qty, status) in seq order."""
    violations = 0
    for i, earlier in enumerate(bookings):
        if earlier["status"] != "REJECTED":
            continue
        violations += sum(1 for later in bookings[i + 1:]
                          if later["qty"] >= earlier["qty"] and later["status"] in HOLDING)
    return violations


def fairness_violations_fast(bookings: list[dict]) -> int:
    """The same count as fairness_violations in O(n · max qty), for large runs.

    Walks the bookings from the last one back, keeping how many later holding bookings asked for
    at least q seats, for every q seen."""
    counts: dict[int, int] = {}
    violations = 0
    for booking in reversed(bookings):
        qty = booking["qty"]
        if booking["status"] == "REJECTED":
            violations += sum(n for q, n in counts.items() if q >= qty)
        elif booking["status"] in HOLDING:
            counts[qty] = counts.get(qty, 0) + 1
    return violations


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
