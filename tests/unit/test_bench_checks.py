"""bench/checks.py's money check, as the harness feeds it (bench/harness.py check_show): the
whole gateway ledger narrowed by show_ledger, so a charge for no booking at all is counted."""
from bench import checks

ROWS = [{"id": "a", "qty": 3, "status": "PAID", "seats_held": True, "amount": 30},
        {"id": "b", "qty": 1, "status": "CANCELLED", "seats_held": False, "amount": 10}]
LEDGER = {"a": {"captured": 30, "refunded": 0}, "b": {"captured": 10, "refunded": 10},
          "other-show": {"captured": 50, "refunded": 0}}  # a PAID booking of another show


def mismatches(ledger, other_bookings=("other-show",)):
    return checks.ledger_mismatches(ROWS, checks.show_ledger(ledger, {r["id"] for r in ROWS}, set(other_bookings)))


def test_a_consistent_ledger_has_no_mismatch_and_other_shows_are_theirs_to_check():
    assert mismatches(LEDGER) == 0
    # Whatever another show's booking holds is that show's check's business, not this one's.
    assert mismatches({**LEDGER, "other-show": {"captured": 999, "refunded": 0}}) == 0


def test_a_stray_charge_for_no_booking_is_counted():
    assert mismatches({**LEDGER, "no-such-booking": {"captured": 5, "refunded": 0}}) == 1
    assert mismatches({**LEDGER, "x": {"captured": 5, "refunded": 0}, "y": {"captured": 7, "refunded": 0}}) == 2


def test_money_kept_by_a_booking_that_should_hold_none_is_counted():
    assert mismatches({**LEDGER, "b": {"captured": 10, "refunded": 0}}) == 1
    assert mismatches({k: v for k, v in LEDGER.items() if k != "a"}) == 1  # a PAID booking with no charge


# -- the seated rush's checks (SPEC §8) ---------------------------------------------------------

def seat(row, number, status, section="S1"):
    return {"id": f"{section}-{row}-{number}", "section": section, "row": row, "number": number, "status": status}


def test_double_held_counts_a_seat_two_bookings_list_and_a_hold_naming_another_holder():
    bookings = [{"id": "a", "seats": ["1-1-1", "1-1-2"]}, {"id": "b", "seats": ["1-1-3"]}]
    holds = [("1-1-1", "a"), ("1-1-2", "a"), ("1-1-3", "b"), ("1-1-9", None)]  # 1-1-9 blocked
    assert checks.double_held(bookings, holds) == 0
    assert checks.double_held([*bookings, {"id": "c", "seats": ["1-1-2"]}], holds) == 1  # listed twice
    assert checks.double_held(bookings, [*holds[:2], ("1-1-3", "a"), holds[3]]) == 1  # held for another
    assert checks.double_held(bookings, [*holds, ("1-1-5", "b")]) == 1  # held, listed by nobody
    assert checks.double_held([*bookings, {"id": "d", "seats": ["1-1-9"]}], holds) == 1  # blocked, yet sold


def test_the_page_must_show_held_seats_taken_blocked_ones_blocked_and_the_rest_available():
    page = [seat("A", 1, "SOLD"), seat("A", 2, "HELD"), seat("A", 3, "BLOCKED"), seat("A", 4, "AVAILABLE")]
    held, blocked = ["S1-A-1", "S1-A-2"], ["S1-A-3"]
    assert checks.page_mismatches(page, held, blocked) == 0
    assert checks.page_mismatches(page, held[:1], blocked) == 1  # shows HELD what nobody holds
    assert checks.page_mismatches(page, [*held, "S1-A-4"], blocked) == 1  # held, shown AVAILABLE
    assert checks.page_mismatches(page, held) == 1  # BLOCKED without a block


def test_limit_violations_count_customers_holding_more_than_the_limit():
    holding = [{"customer_id": "x", "qty": 4}, {"customer_id": "x", "qty": 4}, {"customer_id": "y", "qty": 3},
               {"customer_id": "y", "qty": 3}, {"customer_id": "y", "qty": 3}]
    assert checks.limit_violations(holding, 8) == 1  # y holds 9
    assert checks.limit_violations(holding, 9) == 0
    assert checks.limit_violations(holding, None) == 0


def test_a_stranded_seat_is_free_between_two_seats_that_are_not():
    row = [seat("A", n, s) for n, s in enumerate(["AVAILABLE", "SOLD", "AVAILABLE", "HELD", "AVAILABLE",
                                                  "AVAILABLE", "BLOCKED", "AVAILABLE"], start=1)]
    # Seat 3 is the one: 1 and 8 are row ends, 5 and 6 are a pair.
    assert checks.stranded_single_seats(row) == 1
    other_row = [seat("B", 2, "SOLD"), seat("B", 3, "AVAILABLE"), seat("B", 5, "SOLD")]  # no seat 4: a gap
    assert checks.stranded_single_seats(row + other_row) == 1
    other_section = [seat("A", 2, "SOLD", "S2"), seat("A", 3, "AVAILABLE", "S2"), seat("A", 4, "SOLD", "S2")]
    assert checks.stranded_single_seats(row + other_section) == 2


def test_best_available_fairness_is_judged_per_category_and_only_for_want_of_a_block():
    def row(category, qty, status, sent, reason=None):
        return {"category": category, "qty": qty, "status": status, "sent": sent, "answered": sent + 0.5,
                "reject_reason": reason}
    refused = row("R", 2, "REJECTED", 0.0, "no_adjacent_seats")
    assert checks.fairness_violations_best_available([refused, row("R", 2, "PAID", 1.0)]) == 1
    assert checks.fairness_violations_best_available([refused, row("S", 2, "PAID", 1.0)]) == 0  # another category
    over_limit = row("R", 2, "REJECTED", 0.0, "limit_exceeded")
    assert checks.fairness_violations_best_available([over_limit, row("R", 2, "PAID", 1.0)]) == 0
    pick = {**row(None, 2, "REJECTED", 0.0, "seat_taken")}
    assert checks.fairness_violations_best_available([pick, row("R", 2, "PAID", 1.0)]) == 0
