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


# -- the waiting room's checks (SPEC §9) ---------------------------------------------------------

def entry(id_, place, seq=None, at=None, left=None, until=None):
    return {"id": id_, "place": place, "admission_seq": seq, "admitted_at": at, "left_at": left,
            "admitted_until": until if until is not None else (at + 600 if at is not None else None)}


def test_admissions_in_queue_order_are_not_out_of_order():
    entries = [entry("a", 1, 1, 10.0), entry("b", 2, 2, 10.0), entry("c", 3, 3, 10.2), entry("d", 4), entry("e", 5)]
    assert checks.out_of_order(entries) == checks.out_of_order_reference(entries) == 0


def test_an_entry_admitted_past_one_still_waiting_ahead_is_out_of_order():
    skipped = [entry("a", 1, 1, 10.0), entry("b", 2), entry("c", 3, 2, 10.2), entry("d", 4, 3, 10.4)]
    # b waits ahead of c and d, both admitted: two admitted out of order.
    assert checks.out_of_order(skipped) == checks.out_of_order_reference(skipped) == 2
    swapped = [entry("a", 1, 2, 10.0), entry("b", 2, 1, 10.0)]  # one tick, b numbered first
    assert checks.out_of_order(swapped) == checks.out_of_order_reference(swapped) == 1


def test_an_entry_that_left_blocks_only_the_admissions_before_it_left():
    entries = [entry("a", 1, left=10.3), entry("b", 2, 1, 10.2), entry("c", 3, 2, 10.4)]
    # b was admitted while a still waited ahead of it; c after a had left.
    assert checks.out_of_order(entries) == checks.out_of_order_reference(entries) == 1
    gone = [entry("a", 1, left=10.0), entry("b", 2, 1, 10.2)]
    assert checks.out_of_order(gone) == checks.out_of_order_reference(gone) == 0
    # One that was admitted and left afterwards blocked nobody behind it.
    admitted_then_left = [entry("a", 1, 1, 10.0, left=10.1), entry("b", 2, 2, 10.2)]
    assert checks.out_of_order(admitted_then_left) == 0


def test_early_joiners_not_drawn_yet_have_no_place_and_are_left_out():
    entries = [entry("a", None), entry("b", 1, 1, 10.0)]
    assert checks.out_of_order(entries) == checks.out_of_order_reference(entries) == 0


def test_the_fast_out_of_order_count_agrees_with_the_definition():
    import random
    rng = random.Random(9)
    for _ in range(300):
        n = rng.randint(0, 30)
        order = list(range(1, n + 1))
        rng.shuffle(order)  # the admissions go in queue order, mostly: some swaps, some skipped
        admitted = sorted(order[:rng.randint(0, n)])
        for _ in range(rng.randint(0, 3)):
            if len(admitted) > 1:
                i, j = rng.sample(range(len(admitted)), 2)
                admitted[i], admitted[j] = admitted[j], admitted[i]
        seq_of = {place: seq for seq, place in enumerate(admitted, start=1)}
        entries = []
        for place in range(1, n + 1):
            seq = seq_of.get(place)
            at = 10 + (seq // 3) * 0.2 if seq else None  # three a tick: ties in admitted_at
            left = rng.choice([None, None, 10 + rng.randint(0, 12) * 0.1]) if seq is None else None
            entries.append(entry(str(place), place, seq, at, left))
        assert checks.out_of_order(entries) == checks.out_of_order_reference(entries), entries


def test_admitted_twice_counts_a_shared_seq_a_second_turn_and_admissions_beyond_the_slots():
    entries = [entry("a", 1, 1, 10.0), entry("b", 2, 2, 10.2), entry("c", 3)]
    polled = {"a": [610.0, 610.0004], "b": [610.2]}  # the API's copy rounds a little otherwise
    assert checks.admitted_twice(entries, polled, slots_due=2) == 0
    assert checks.admitted_twice([*entries[:2], entry("c", 3, 2, 10.2)], polled, slots_due=3) == 1
    assert checks.admitted_twice(entries, {**polled, "a": [610.0, 612.0]}) == 1  # two turns seen
    assert checks.admitted_twice(entries, {**polled, "b": [700.0]}) == 1  # a turn PostgreSQL does not hold
    assert checks.admitted_twice(entries, {"c": [620.0]}) == 1  # polled ADMITTED, never admitted
    assert checks.admitted_twice(entries, polled, slots_due=1) == 1  # one more than the schedule gave


def test_the_admission_rate_is_counted_in_the_window_and_its_busiest_second():
    # 10 a second (600 a minute), two a tick every 0.2 s, from t = 100 for 20 s; a burst of 5 at 105.5.
    times = [100 + tick * 0.2 for tick in range(100) for _ in range(2)] + [105.5] * 5
    rate = checks.admission_rate(times, 600, start=102, window_s=15)
    assert rate["admitted_in_window"] == 155 and rate["expected_in_window"] == 150
    assert abs(rate["admission_rate_error_pct"] - 100 * 5 / 150) < 1e-9
    assert rate["max_admitted_in_a_second"] == 15  # the second [105, 106)
    steady = checks.admission_rate(times, 600, start=107, window_s=10)
    assert steady["admission_rate_error_pct"] == 0 and steady["max_admitted_in_a_second"] == 10
