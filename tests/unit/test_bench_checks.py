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
