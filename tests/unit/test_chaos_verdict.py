"""The chaos run's verdict: it passes only when every count is 0 (every count the consistency
report has, and the harness's own check of the seat pages), every booking asked for was accepted,
and every scheduled fault type fired at least once. Also the pure parts of the reserved workload:
the hall, the picks, and the seat page check."""
import random
from types import SimpleNamespace

from chaos.harness import (
    PICK_AMONG_BEST, RESERVED_PRICES, Chaos, chaos_hall, passed, pick_seats, report_counts, seat_page_disagreements,
)
from models.seating import parse_seat_map

ALL_ZERO = {
    "bookings": 10, "faults": 12, "faults_missed": [], "lost": 0, "stuck": 0, "oversold": 0,
    "double_charges": 0, "missing_refunds": 0, "money_mismatches": 0, "issued_on_refunded": 0,
    "mypage_mismatches": 0, "seat_page_mismatches": 0, "workload_errors": 0, "not_accepted": 0,
}


def chaos(fault_interval=4.0, hold_minutes=0.25):
    return Chaos(SimpleNamespace(seed=1, fault_interval=fault_interval, hold_minutes=hold_minutes))


def test_a_clean_run_passes():
    assert passed(ALL_ZERO)


def test_a_run_fails_when_a_fault_type_never_fired():
    assert not passed({**ALL_ZERO, "faults_missed": ["gateway outage"]})


def test_a_run_fails_when_bookings_were_not_accepted():
    assert not passed({**ALL_ZERO, "not_accepted": 3})
    assert not passed({**ALL_ZERO, "not_accepted": None})  # the workload never finished


def test_a_run_fails_on_any_count_or_an_error():
    for key in ("lost", "stuck", "missing_refunds", "workload_errors"):
        assert not passed({**ALL_ZERO, key: 1}), key
    assert not passed({**ALL_ZERO, "error": "RuntimeError()"})
    assert not passed({**ALL_ZERO, "faults": 0})


def test_repeats_of_one_fault_do_not_stand_in_for_another():
    run = chaos()
    names = [name for name, *_ in run.fault_schedule()]
    for name in names[1:]:
        run.faults[name] += 1
    run.faults[names[1]] += 20  # plenty of faults in all, but the first type never fired
    assert run.faults_missed() == [names[0]]


def test_the_schedule_has_a_gateway_slower_than_the_client_timeout_for_longer_than_a_hold():
    run = chaos(hold_minutes=0.25)
    lasting = {name: lasts for name, _, _, lasts in run.fault_schedule()}
    assert lasting["gateway slower than the client timeout"] > 0.25 * 60
    assert "gateway answers 408/409/5xx with no body" in lasting


def test_every_count_the_report_gains_is_in_the_verdict():
    # The consistency report adds counts over time (seat_double_held, limit_exceeded, ...): each
    # one fails the run when it is not 0, with no list in the harness to update.
    assert passed({**ALL_ZERO, "seat_double_held": 0, "limit_exceeded": 0, "category_mismatches": 0})
    for key in ("seat_double_held", "limit_exceeded", "category_mismatches", "some_later_count"):
        assert not passed({**ALL_ZERO, key: 2}), key
        assert not passed({**ALL_ZERO, key: None}), key  # a count that could not be made


def test_a_run_fails_on_a_seat_page_mismatch_or_without_that_check():
    assert not passed({**ALL_ZERO, "seat_page_mismatches": 1})
    assert not passed({key: value for key, value in ALL_ZERO.items() if key != "seat_page_mismatches"})


def test_totals_and_breakdowns_are_not_counts_of_problems():
    assert passed({**ALL_ZERO, "seconds": 300, "reserved_bookings": 90, "cancelled_while_gateway_slow": 4,
                   "final_states": {"PAID": 8}, "reserved_outcomes": {"pick": {"seat_taken": 3}}})


def test_the_report_counts_leave_out_its_totals():
    counts = {"bookings": 10, "final_states": {"PAID": 10}, "lost": 0, "seat_double_held": 1}
    assert report_counts(counts) == {"lost": 0, "seat_double_held": 1}


def test_the_chaos_hall_is_a_valid_map_of_a_few_hundred_seats_with_gaps():
    seat_map = parse_seat_map(chaos_hall())
    assert 200 <= seat_map.seat_count <= 500
    assert {c.name for c in seat_map.categories} == set(RESERVED_PRICES)
    assert len({seat.section for seat in seat_map.seats}) >= 2
    numbers = {}
    for seat in seat_map.seats:
        numbers.setdefault((seat.section, seat.row), []).append(seat.number)
    assert any(row != list(range(1, len(row) + 1)) for row in numbers.values())  # a gap in the numbering


def page(statuses: str, row_of=lambda i: "A", number_of=lambda i: i + 1):
    return [{"id": f"1-1-{number_of(i)}", "section": "Floor", "row": row_of(i), "number": number_of(i),
             "category": "VIP", "status": {"a": "AVAILABLE", "h": "HELD", "s": "SOLD", "b": "BLOCKED"}[c]}
            for i, c in enumerate(statuses)]


def test_a_pick_is_seats_side_by_side_that_were_available():
    seats = page("aaahaaaa")
    for seed in range(50):
        picked = pick_seats(seats, 3, random.Random(seed))
        numbers = [int(seat_id.split("-")[-1]) for seat_id in picked]
        assert 1 <= len(numbers) <= 3 and numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        assert 4 not in numbers  # the held seat
    gap = page("aaaa", number_of=lambda i: [1, 2, 5, 6][i])
    assert all(len(pick_seats(gap, 4, random.Random(seed))) <= 2 for seed in range(20))  # 2 and 5 are not adjacent
    assert len(pick_seats(page("hs"), 2, random.Random(1))) == 1  # nothing free: a pick that will be refused


def test_picks_go_for_the_best_seats_left():
    seats = page("h" * 5 + "a" * 100)
    starts = {int(pick_seats(seats, 1, random.Random(seed))[0].split("-")[-1]) for seed in range(200)}
    assert starts <= set(range(6, 6 + PICK_AMONG_BEST)) and len(starts) > 1


def booking(booking_id, status, seats, qty=None):
    return {"id": booking_id, "status": status, "qty": len(seats) if qty is None else qty,
            "seats": [{"id": seat_id} for seat_id in seats] or None}


def test_the_seat_page_agrees_with_the_seats_of_live_bookings():
    seats = page("ssha")
    bookings = [booking("b1", "PAID", ["1-1-1", "1-1-2"]), booking("b2", "CONFIRMED", ["1-1-3"]),
                booking("b3", "CANCELLED", ["1-1-4"]), booking("b4", "REJECTED", [], qty=2)]
    assert seat_page_disagreements(seats, bookings) == []


def test_the_seat_page_check_finds_each_kind_of_disagreement():
    seats = page("ssha")
    assert len(seat_page_disagreements(seats, [booking("b1", "PAID", ["1-1-1", "1-1-2"]),
                                               booking("b2", "PAID", ["1-1-2", "1-1-3"])])) == 2  # 1-1-2 twice; 1-1-3 HELD
    assert seat_page_disagreements(seats, [booking("b1", "PAID", ["1-1-1"])])  # 1-1-2, 1-1-3 taken by nobody
    assert seat_page_disagreements(seats, [booking("b1", "PAID", ["1-1-1", "1-1-2"]),
                                           booking("b2", "CONFIRMED", ["1-1-3", "1-1-4"])])  # 1-1-4 AVAILABLE
    assert seat_page_disagreements(seats, [booking("b1", "PAID", ["1-1-1", "1-1-2"], qty=3),
                                           booking("b2", "CONFIRMED", ["1-1-3"])])  # fewer seats than its qty
    assert seat_page_disagreements(seats, [booking("b1", "PAID", ["1-1-1", "1-1-2"]),
                                           booking("b2", "CONFIRMED", ["1-1-3"]),
                                           booking("b3", "PAID", ["9-9-9"])])  # a seat not on the page


def test_a_wrong_fee_fails_the_run_and_the_cancels_that_kept_one_are_no_problem():
    assert passed({**ALL_ZERO, "cancelled_with_fee": 7, "fee_mismatches": 0})
    assert not passed({**ALL_ZERO, "cancelled_with_fee": 7, "fee_mismatches": 1})


def test_the_general_shows_cancel_for_no_fee_ten_percent_and_everything():
    from datetime import datetime, timedelta, timezone

    from chaos.harness import FEE_PERCENT_NOW, FEE_POLICIES
    from models.shows import cancellation_fee

    now = datetime.now(timezone.utc)
    starts_at = now + timedelta(days=30)  # as the harness's shows
    assert [cancellation_fee(policy, starts_at, 1000, now) for policy in FEE_POLICIES] == [
        1000 * percent // 100 for percent in FEE_PERCENT_NOW] == [0, 100, 1000]
