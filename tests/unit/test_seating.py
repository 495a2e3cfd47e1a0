"""Reserved seating rules with no I/O (models/seating.py): seat map validation, the seats a
booking gets (pick, best available, limits, sales closed), and giving seats back.

The examples pin each rule; the hypothesis properties check the rules together on random maps
and random batches against a plain model of free seats written here, not against SeatState.
"""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.bookings import MAX_QTY
from models.errors import Conflict, InvalidInput
from models.seating import (
    MAX_ERRORS, MAX_SEATS, MAX_SEATS_PER_BOOKING, RejectReason, SeatRequest, SeatState, check_best_available,
    check_pick, decide_seats_in_seq_order, parse_seat_map,
)
from models.lifecycles import BookingStatus

PROPERTIES = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                      suppress_health_check=[HealthCheck.too_slow])


def a_map_body(*sections, name="Hall"):
    """a_map_body(("Floor", [("A", 10, "VIP"), ("B", [1, 2, 3], "R")]), ...)"""
    return {"name": name, "sections": [
        {"name": section, "rows": [{"name": row, "seats": seats, "category": category}
                                   for row, seats, category in rows]}
        for section, rows in sections]}


def a_hall(*rows, taken=()):
    """One section "S" with these (row name, seats, category) rows, and its state."""
    seat_map = parse_seat_map(a_map_body(("S", list(rows))))
    return seat_map, SeatState(seat_map, taken)


def ids(seat_map, row, *numbers):
    row_position = [r.name for r in seat_map.rows].index(row) + 1
    return [f"1-{row_position}-{number}" for number in numbers]


def numbers_of(seat_map, seat_ids):
    return [(seat_map.seat(seat_id).row, seat_map.seat(seat_id).number) for seat_id in seat_ids]


def decide(state, *requests, sales_open=True, held=None, limit=None):
    return decide_seats_in_seq_order(state, list(requests), sales_open=sales_open, held_by_customer=held,
                                     max_per_customer=limit)


def best(booking_id, qty, category, customer="c1"):
    return SeatRequest.best_available(booking_id, customer, qty, category)


def pick(booking_id, seat_ids, customer="c1"):
    return SeatRequest.pick(booking_id, customer, seat_ids)


def errors_of(body) -> dict:
    with pytest.raises(InvalidInput) as refused:
        parse_seat_map(body)
    return refused.value.errors


# ---- the seat map ------------------------------------------------------------------------------

def test_a_seat_map_lists_its_seats_in_quality_order_with_stable_ids():
    seat_map = parse_seat_map(a_map_body(
        ("Floor", [("A", 3, "VIP"), ("B", [5, 2, {"number": 4, "category": "S"}], "R")]),
        ("Balcony", [("A", [1, 2], "S")])))
    assert [(s.id, s.section, s.row, s.number, s.category) for s in seat_map.seats] == [
        ("1-1-1", "Floor", "A", 1, "VIP"), ("1-1-2", "Floor", "A", 2, "VIP"), ("1-1-3", "Floor", "A", 3, "VIP"),
        ("1-2-2", "Floor", "B", 2, "R"), ("1-2-4", "Floor", "B", 4, "S"), ("1-2-5", "Floor", "B", 5, "R"),
        ("2-1-1", "Balcony", "A", 1, "S"), ("2-1-2", "Balcony", "A", 2, "S")]
    assert seat_map.name == "Hall" and seat_map.seat_count == 8
    assert [(c.name, c.seats) for c in seat_map.categories] == [("VIP", 3), ("R", 2), ("S", 3)]
    assert seat_map.seat("1-2-4").category == "S" and seat_map.seat("1-2-3") is None
    assert parse_seat_map(a_map_body(("Floor", [("A", 3, "VIP")]))).seat("1-1-3").id == "1-1-3"


def test_the_longest_names_and_category_are_accepted():
    seat_map = parse_seat_map(a_map_body(("s" * 100, [("r" * 100, 1, "c" * 32)]), name="n" * 100))
    assert seat_map.categories[0].name == "c" * 32


def test_a_map_of_the_largest_size_is_accepted():
    seat_map = parse_seat_map(a_map_body(("S", [("A", MAX_SEATS // 2, "R"), ("B", MAX_SEATS // 2, "R")])))
    assert seat_map.seat_count == MAX_SEATS


def test_a_duplicate_seat_number_is_named_by_its_row():
    body = a_map_body(("S", [("A", 3, "R"), ("B", [1, 7, {"number": 7, "category": "A"}], "R")]))
    assert errors_of(body) == {"sections.0.rows.1.seats": ["duplicate seat number 7"]}


def _with(path, value, base=None):
    """The valid map below, with the value at this path replaced (value None: removed)."""
    body = base or a_map_body(("S", [("A", 2, "R"), ("B", [1, 2], "R")]), ("T", [("A", 1, "S")]))
    *parents, last = path
    node = body
    for key in parents:
        node = node[key]
    if value is _REMOVE:
        del node[last]
    else:
        node[last] = value
    return body


_REMOVE = object()
_LONG = "x" * 101


@pytest.mark.parametrize("path, value, field, reason", [
    (("name",), "", "name", "1 to 100 characters"),
    (("name",), _LONG, "name", "1 to 100 characters"),
    (("name",), 7, "name", "must be a string"),
    (("name",), "Hall\x00", "name", "printable"),
    (("name",), " Hall", "name", "printable"),
    (("name",), _REMOVE, "name", "Missing data"),
    (("colour",), "red", "colour", "Unknown field."),
    (("sections",), [], "sections", "must not be empty"),
    (("sections",), {}, "sections", "must be a list"),
    (("sections", 0), "S", "sections.0", "must be an object"),
    (("sections", 0, "rows"), [], "sections.0.rows", "must not be empty"),
    (("sections", 0, "hidden"), True, "sections.0.hidden", "Unknown field."),
    (("sections", 1, "name"), "S", "sections.1.name", "duplicate section name 'S'"),
    (("sections", 1, "name"), "", "sections.1.name", "1 to 100 characters"),
    (("sections", 0, "rows", 1, "name"), "A", "sections.0.rows.1.name", "duplicate row name 'A'"),
    (("sections", 0, "rows", 1, "name"), _LONG, "sections.0.rows.1.name", "1 to 100 characters"),
    (("sections", 0, "rows", 1, "name"), "\ud800", "sections.0.rows.1.name", "printable"),
    (("sections", 0, "rows", 0, "colour"), "red", "sections.0.rows.0.colour", "Unknown field."),
    (("sections", 0, "rows", 0, "category"), _REMOVE, "sections.0.rows.0.category", "Missing data"),
    (("sections", 0, "rows", 0, "category"), "", "sections.0.rows.0.category", "1 to 32 characters"),
    (("sections", 0, "rows", 0, "category"), "c" * 33, "sections.0.rows.0.category", "1 to 32 characters"),
    (("sections", 0, "rows", 0, "category"), "V\tIP", "sections.0.rows.0.category", "printable"),
    (("sections", 0, "rows", 0, "seats"), 0, "sections.0.rows.0.seats", "between 1 and 100000"),
    (("sections", 0, "rows", 0, "seats"), -3, "sections.0.rows.0.seats", "between 1 and 100000"),
    (("sections", 0, "rows", 0, "seats"), MAX_SEATS + 1, "sections.0.rows.0.seats", "between 1 and 100000"),
    (("sections", 0, "rows", 0, "seats"), True, "sections.0.rows.0.seats", "a seat count or a list"),
    (("sections", 0, "rows", 0, "seats"), 2.0, "sections.0.rows.0.seats", "a seat count or a list"),
    (("sections", 0, "rows", 0, "seats"), [], "sections.0.rows.0.seats", "must not be empty"),
    (("sections", 0, "rows", 1, "seats", 1), 0, "sections.0.rows.1.seats.1", "between 1 and"),
    (("sections", 0, "rows", 1, "seats", 1), -2, "sections.0.rows.1.seats.1", "between 1 and"),
    (("sections", 0, "rows", 1, "seats", 1), 2.5, "sections.0.rows.1.seats.1", "must be an integer"),
    (("sections", 0, "rows", 1, "seats", 1), "2", "sections.0.rows.1.seats.1", "must be an integer"),
    (("sections", 0, "rows", 1, "seats", 1), True, "sections.0.rows.1.seats.1", "must be an integer"),
    (("sections", 0, "rows", 1, "seats", 1), {"number": True}, "sections.0.rows.1.seats.1.number",
     "must be an integer"),
    (("sections", 0, "rows", 1, "seats", 1), {"category": "A"}, "sections.0.rows.1.seats.1.number",
     "Missing data"),
    (("sections", 0, "rows", 1, "seats", 1), {"number": 2, "price": 1}, "sections.0.rows.1.seats.1.price",
     "Unknown field."),
    (("sections", 0, "rows", 1, "seats", 1), {"number": 2, "category": ""}, "sections.0.rows.1.seats.1.category",
     "1 to 32 characters"),
])
def test_an_invalid_map_is_refused_naming_the_field(path, value, field, reason):
    errors = errors_of(_with(path, value))
    assert field in errors, errors
    assert any(reason in message for message in errors[field]), errors


def test_the_same_row_name_in_two_sections_is_fine():
    assert parse_seat_map(a_map_body(("S", [("A", 1, "R")]), ("T", [("A", 1, "R")]))).seat_count == 2


@pytest.mark.parametrize("body", [None, [], "map", 3])
def test_a_body_that_is_not_an_object_is_refused(body):
    assert errors_of(body) == {"_schema": ["must be an object"]}


@pytest.mark.parametrize("rows", [
    [("A", MAX_SEATS // 2 + 1, "R"), ("B", MAX_SEATS // 2, "R")],
    [("A", MAX_SEATS // 2, "R"), ("B", list(range(1, MAX_SEATS // 2 + 2)), "R")],
])
def test_a_map_over_the_seat_limit_is_refused(rows):
    assert errors_of(a_map_body(("S", rows))) == {"sections": [f"a seat map has at most {MAX_SEATS} seats"]}


@pytest.mark.parametrize("seats", [[0] * 5000, [1] * 5000])
def test_a_map_with_many_bad_seats_answers_with_a_bounded_list_of_errors(seats):
    errors = errors_of(a_map_body(("S", [("A", seats, "R")])))
    assert sum(len(reasons) for reasons in errors.values()) == MAX_ERRORS


# ---- picks -------------------------------------------------------------------------------------

def test_a_pick_of_free_seats_gets_exactly_them():
    seat_map, state = a_hall(("A", 5, "R"))
    [decision] = decide(state, pick("b1", ids(seat_map, "A", 4, 2)))
    assert decision == (("b1", BookingStatus.CONFIRMED, None, tuple(ids(seat_map, "A", 4, 2))))
    assert decision.holds_seats
    assert not state.is_free(ids(seat_map, "A", 2)[0]) and state.is_free(ids(seat_map, "A", 3)[0])


@pytest.mark.parametrize("taken_by", ["an earlier booking", "the state (held, sold or blocked)"])
def test_a_pick_with_one_taken_seat_gets_none_of_them(taken_by):
    seat_map, state = a_hall(("A", 5, "R"), taken=ids(seat_map_of("A", 5), "A", 3) if "state" in taken_by else ())
    earlier = [pick("b0", ids(seat_map, "A", 3), customer="c0")] if "earlier" in taken_by else []
    decisions = decide(state, *earlier, pick("b1", ids(seat_map, "A", 2, 3, 4)))
    assert decisions[-1] == ("b1", BookingStatus.REJECTED, RejectReason.SEAT_TAKEN, ())
    assert state.is_free(ids(seat_map, "A", 2)[0]) and state.is_free(ids(seat_map, "A", 4)[0])


def seat_map_of(row, seats):
    return parse_seat_map(a_map_body(("S", [(row, seats, "R")])))


@pytest.mark.parametrize("seat_ids", [["1-1-1", "1-1-1"], ["1-1-1", "9-9-9"], []])
def test_a_pick_that_is_not_distinct_seats_of_the_map_is_refused_and_takes_nothing(seat_ids):
    seat_map, state = a_hall(("A", 3, "R"))
    [decision] = decide(state, pick("b1", seat_ids))
    assert decision.reject_reason == RejectReason.SEAT_TAKEN
    assert state.free_count("R") == 3


def test_the_api_refuses_a_pick_it_could_never_give():
    seat_map, _ = a_hall(("A", 12, "R"))
    check_pick(seat_map, ids(seat_map, "A", *range(1, 11)))
    for seat_ids in ([], ids(seat_map, "A", *range(1, 12)), ["1-1-1", "1-1-1"], ["1-1-13"], [7], "1-1-1"):
        with pytest.raises(InvalidInput) as refused:
            check_pick(seat_map, seat_ids)
        assert "seats" in refused.value.errors


def test_the_api_refuses_a_best_available_request_it_could_never_give():
    seat_map, _ = a_hall(("A", 12, "R"))
    check_best_available(seat_map, 10, "R")
    for qty, category, field in ((0, "R", "qty"), (11, "R", "qty"), (True, "R", "qty"), (2, "VIP", "category"),
                                 (2, ["R"], "category")):
        with pytest.raises(InvalidInput) as refused:
            check_best_available(seat_map, qty, category)
        assert field in refused.value.errors


def test_a_booking_takes_at_most_as_many_seats_as_a_general_admission_one():
    assert MAX_SEATS_PER_BOOKING == MAX_QTY


# ---- best available ----------------------------------------------------------------------------

def test_best_available_gives_adjacent_seats_in_the_best_row_that_has_a_block():
    # Row A has 4 free seats but no 3 together; row B is the best row with 3 together.
    seat_map, state = a_hall(("A", 7, "R"), ("B", 5, "R"), ("C", 5, "R"),
                             taken=ids(seat_map_of("A", 7), "A", 3, 6, 7))
    [decision] = decide(state, best("b1", 3, "R"))
    assert numbers_of(seat_map, decision.seats) == [("B", 1), ("B", 2), ("B", 3)]


def test_the_best_row_wins_even_when_its_block_strands_a_seat():
    seat_map, state = a_hall(("A", 3, "R"), ("B", 9, "R"))
    [decision] = decide(state, best("b1", 2, "R"))
    assert numbers_of(seat_map, decision.seats) == [("A", 1), ("A", 2)]


def test_best_available_avoids_stranding_a_single_seat_when_another_block_does_not():
    # Free: 2 3 4 _ 6 7 8 9 10. Seats 2-3 would strand 4, 3-4 would strand 2; 6-7 strands none.
    seat_map, state = a_hall(("A", 10, "R"), taken=ids(seat_map_of("A", 10), "A", 1, 5))
    [two, three] = decide(state, best("b1", 2, "R"), best("b2", 3, "R"))
    assert numbers_of(seat_map, two.seats) == [("A", 6), ("A", 7)]
    assert numbers_of(seat_map, three.seats) == [("A", 2), ("A", 3), ("A", 4)]  # fills the gap exactly


def test_a_missing_seat_number_counts_as_taken_for_stranding_and_breaks_adjacency():
    # Row 1 2 3 _ 5 6 7 8: seats 1-2 strand 3 (no seat 4); 2-3 strand 1; 5-6 strand none.
    seat_map, state = a_hall(("A", [1, 2, 3, 5, 6, 7, 8], "R"))
    [two, four] = decide(state, best("b1", 2, "R"), best("b2", 4, "R"))
    assert numbers_of(seat_map, two.seats) == [("A", 5), ("A", 6)]
    assert four.reject_reason == RejectReason.NO_ADJACENT_SEATS  # 1 2 3 and 7 8 are left, never 3-5


def test_among_equal_blocks_the_lowest_numbers_win():
    seat_map, state = a_hall(("A", 10, "R"))
    [decision] = decide(state, best("b1", 2, "R"))
    assert numbers_of(seat_map, decision.seats) == [("A", 1), ("A", 2)]


def test_when_every_block_strands_a_seat_the_lowest_is_taken():
    seat_map, state = a_hall(("A", 3, "R"))
    [decision] = decide(state, best("b1", 2, "R"))
    assert numbers_of(seat_map, decision.seats) == [("A", 1), ("A", 2)]


def test_best_available_stays_in_its_category_seat_by_seat():
    # Row A: seat 3 is a VIP seat in an R row, so A has no 3 R seats together; row B has.
    seat_map, state = a_hall(("A", [1, 2, {"number": 3, "category": "VIP"}, 4, 5], "R"), ("B", 3, "R"))
    [r_block, vip] = decide(state, best("b1", 3, "R"), best("b2", 1, "VIP"))
    assert numbers_of(seat_map, r_block.seats) == [("B", 1), ("B", 2), ("B", 3)]
    assert numbers_of(seat_map, vip.seats) == [("A", 3)]


def test_a_free_seat_of_another_category_is_a_free_neighbour():
    # Row A: VIP R R R R. Two R seats: 2-3 would strand the free VIP seat 1, 3-4 would strand R 5;
    # 4-5 strands nothing.
    seat_map, state = a_hall(("A", [{"number": 1, "category": "VIP"}, 2, 3, 4, 5], "R"))
    [decision] = decide(state, best("b1", 2, "R"))
    assert numbers_of(seat_map, decision.seats) == [("A", 4), ("A", 5)]


def test_when_every_block_strands_a_seat_one_stranding_a_single_seat_wins():
    # Row A: VIP R R VIP _ R R VIP, seat 5 taken. R 2-3 strands VIP 1 and VIP 4; R 6-7 strands
    # only VIP 8.
    row = [{"number": 1, "category": "VIP"}, 2, 3, {"number": 4, "category": "VIP"}, 5, 6, 7,
           {"number": 8, "category": "VIP"}]
    seat_map, state = a_hall(("A", row, "R"), taken=["1-1-5"])
    [decision] = decide(state, best("b1", 2, "R"))
    assert numbers_of(seat_map, decision.seats) == [("A", 6), ("A", 7)]


def test_enough_free_seats_but_none_together_is_no_adjacent_seats():
    seat_map, state = a_hall(("A", 5, "R"), taken=ids(seat_map_of("A", 5), "A", 2, 4))
    [decision] = decide(state, best("b1", 2, "R"))
    assert decision == ("b1", BookingStatus.REJECTED, RejectReason.NO_ADJACENT_SEATS, ())
    assert state.free_count("R") == 3


@pytest.mark.parametrize("category", ["R", "VIP"])
def test_fewer_free_seats_in_the_category_than_asked_is_sold_out(category):
    seat_map, state = a_hall(("A", 3, "R"), taken=ids(seat_map_of("A", 3), "A", 1))
    [decision] = decide(state, best("b1", 3, category))
    assert decision.reject_reason == RejectReason.SOLD_OUT


def test_a_later_smaller_booking_may_still_fit_after_a_larger_one_is_refused():
    seat_map, state = a_hall(("A", 4, "R"), taken=ids(seat_map_of("A", 4), "A", 3))
    decisions = decide(state, best("b1", 3, "R"), best("b2", 2, "R"), best("b3", 2, "R"))
    # Seats 1 2 _ 4: three together never; two fit; then one seat is left for the last two.
    assert [d.reject_reason for d in decisions] == [RejectReason.NO_ADJACENT_SEATS, None, RejectReason.SOLD_OUT]


# ---- sales closed and the purchase limit -------------------------------------------------------

def test_once_sales_close_every_booking_is_refused_and_no_seat_is_taken():
    seat_map, state = a_hall(("A", 5, "R"))
    decisions = decide(state, best("b1", 2, "R"), pick("b2", ids(seat_map, "A", 5)), sales_open=False,
                       held={"c1": 9}, limit=1)
    assert [d.reject_reason for d in decisions] == [RejectReason.SALES_CLOSED] * 2
    assert state.free_count("R") == 5


def test_the_limit_counts_seats_held_and_seats_confirmed_earlier_in_the_batch():
    seat_map, state = a_hall(("A", 10, "R"))
    held = {"c1": 1}
    decisions = decide(state, best("b1", 2, "R"), best("b2", 2, "R"), best("b3", 1, "R"),
                       best("b4", 4, "R", customer="c2"), held=held, limit=4)
    assert [d.reject_reason for d in decisions] == [None, RejectReason.LIMIT_EXCEEDED, None, None]
    assert held == {"c1": 1}  # the caller's counts are not changed


def test_the_limit_is_checked_before_the_seats():
    seat_map, state = a_hall(("A", 3, "R"), taken=ids(seat_map_of("A", 3), "A", 1))
    decisions = decide(state, pick("b1", ids(seat_map, "A", 1, 2)), best("b2", 3, "R"), limit=1)
    assert [d.reject_reason for d in decisions] == [RejectReason.LIMIT_EXCEEDED] * 2


def test_a_refused_booking_does_not_count_towards_the_limit():
    seat_map, state = a_hall(("A", 3, "R"), taken=ids(seat_map_of("A", 3), "A", 2))
    decisions = decide(state, best("b1", 2, "R"), best("b2", 2, "R"), best("b3", 1, "R"), limit=2)
    assert [d.reject_reason for d in decisions] == [RejectReason.NO_ADJACENT_SEATS,
                                                   RejectReason.NO_ADJACENT_SEATS, None]


def test_without_a_limit_a_customer_may_take_every_seat():
    seat_map, state = a_hall(("A", 30, "R"))
    decisions = decide(state, *(best(f"b{i}", 10, "R") for i in range(3)), held={"c1": 500})
    assert all(d.holds_seats for d in decisions) and state.free_count("R") == 0


# ---- taking and releasing ------------------------------------------------------------------------

def test_released_seats_are_given_again():
    seat_map, state = a_hall(("A", 4, "R"), ("B", 4, "R"))
    [first] = decide(state, best("b1", 4, "R"))
    state.release(first.seats)
    [again] = decide(state, best("b2", 4, "R"))
    assert again.seats == first.seats


def test_a_partial_release_gives_back_only_those_seats():
    seat_map, state = a_hall(("A", 4, "R"))
    [decision] = decide(state, best("b1", 4, "R"))
    state.release(decision.seats[:1])
    assert state.free_seat_ids() == [decision.seats[0]] and state.free_count("R") == 1


def test_releasing_a_free_seat_is_refused_and_changes_nothing():
    seat_map, state = a_hall(("A", 4, "R"), taken=ids(seat_map_of("A", 4), "A", 1))
    with pytest.raises(Conflict):
        state.release(ids(seat_map, "A", 1, 2))
    with pytest.raises(Conflict):
        state.release(ids(seat_map, "A", 1, 1))
    assert not state.is_free(ids(seat_map, "A", 1)[0]) and state.free_count("R") == 3


def test_taking_a_seat_that_is_not_free_is_refused_and_changes_nothing():
    seat_map, state = a_hall(("A", 4, "R"), taken=ids(seat_map_of("A", 4), "A", 1))
    for seat_ids in (ids(seat_map, "A", 2, 1), ids(seat_map, "A", 2, 2), ["1-1-9"]):
        with pytest.raises(Conflict):
            state.take(seat_ids)
    assert state.free_count("R") == 3 and state.is_free(ids(seat_map, "A", 2)[0])


def test_a_state_cannot_be_built_with_a_seat_taken_twice():
    seat_map = seat_map_of("A", 3)
    with pytest.raises(Conflict):
        SeatState(seat_map, ["1-1-1", "1-1-1"])


# ---- properties ----------------------------------------------------------------------------------

CATEGORIES = ["A", "B", "C"]


@st.composite
def seat_maps(draw):
    sections = []
    for s in range(draw(st.integers(1, 3))):
        rows = []
        for r in range(draw(st.integers(1, 4))):
            category = draw(st.sampled_from(CATEGORIES))
            if draw(st.booleans()):
                seats = draw(st.integers(1, 12))
            else:
                numbers = draw(st.lists(st.integers(1, 15), min_size=1, max_size=12, unique=True))
                seats = [{"number": n, "category": draw(st.sampled_from(CATEGORIES))} if draw(st.booleans()) else n
                         for n in numbers]
            rows.append({"name": f"r{r}", "seats": seats, "category": category})
        sections.append({"name": f"s{s}", "rows": rows})
    return parse_seat_map({"name": "Hall", "sections": sections})


@st.composite
def requests(draw, seat_map, count):
    all_ids = [seat.id for seat in seat_map.seats]
    made = []
    for i in range(count):
        customer = draw(st.sampled_from(["c1", "c2", "c3"]))
        if draw(st.booleans()):
            chosen = draw(st.lists(st.sampled_from(all_ids), min_size=1, max_size=min(4, len(all_ids)), unique=True))
            made.append(SeatRequest.pick(f"b{i}", customer, chosen))
        else:
            made.append(SeatRequest.best_available(f"b{i}", customer, draw(st.integers(1, 5)),
                                                   draw(st.sampled_from(CATEGORIES + ["D"]))))
    return made


@st.composite
def scenarios(draw):
    seat_map = draw(seat_maps())
    all_ids = [seat.id for seat in seat_map.seats]
    taken = draw(st.lists(st.sampled_from(all_ids), unique=True, max_size=len(all_ids)))
    pending = draw(requests(seat_map, draw(st.integers(1, 25))))
    held = draw(st.dictionaries(st.sampled_from(["c1", "c2", "c3"]), st.integers(0, 6)))
    limit = draw(st.one_of(st.none(), st.integers(1, 10)))
    return seat_map, taken, pending, held, limit


def _blocks(seat_map, free: set[str], qty: int, category: str):
    """Every block of qty adjacent free seats of the category, as (row index, seats), best row
    first; written as plainly as possible, to check SeatState's faster search against."""
    for row in seat_map.rows:
        seats = seat_map.seats[row.first:row.first + row.size]
        for i in range(len(seats) - qty + 1):
            block = seats[i:i + qty]
            if all(s.id in free and s.category == category for s in block) and \
                    all(b.number == a.number + 1 for a, b in zip(block, block[1:])):
                yield row.index, block


def _stranded_by(seat_map, free: set[str], block) -> int:
    """Free seats with no free neighbour after taking the block, that had one before."""
    row = seat_map.rows[block[0].row_index]
    by_number = {s.number: s for s in seat_map.seats[row.first:row.first + row.size]}
    after = free - {s.id for s in block}

    def alone(number, free_ids):
        seat = by_number.get(number)
        return seat is not None and seat.id in free_ids and not any(
            by_number.get(n) is not None and by_number[n].id in free_ids for n in (number - 1, number + 1))

    candidates = {block[0].number - 1, block[-1].number + 1}
    return sum(1 for n in candidates if alone(n, after) and not alone(n, free))


def _expected_block(seat_map, free, qty, category):
    blocks = list(_blocks(seat_map, free, qty, category))
    if not blocks:
        return None
    best_row = blocks[0][0]
    in_row = [block for row, block in blocks if row == best_row]
    return min(in_row, key=lambda block: (_stranded_by(seat_map, free, block), block[0].number))


@PROPERTIES
@given(scenarios(), st.booleans())
def test_every_decision_follows_the_rules_of_a_plain_model_of_free_seats(scenario, sales_open):
    """Replays the batch on a plain set of free seats and checks each decision at its turn:

    (a) a CONFIRMED booking holds distinct seats that were all free at its turn (none held twice,
        none that was held, sold or blocked);
    (b) a best-available booking holds qty seats of its category with consecutive numbers in one
        row: the best row with such a block, the least-stranding block of it, lowest first;
    (c) FIFO (SPEC §8 invariant 10): within a batch seats are only taken, never given back, so a
        booking that is REJECTED gives up nothing a later one may take. Precisely: a seat_taken
        pick had at least one of its seats not free at its turn (it could not have had them all);
        a no_adjacent_seats booking (qty q, category c) had no block of q adjacent free c seats at
        its turn, and no later CONFIRMED booking gets q adjacent c seats; a sold_out one had fewer
        than q free c seats, and no later booking gets q seats of c;
    (d) no customer ends above max_per_customer, and limit_exceeded only when the booking would
        have put its customer above it.
    """
    seat_map, taken, pending, held, limit = scenario
    state = SeatState(seat_map, taken)
    decisions = decide_seats_in_seq_order(state, pending, sales_open=sales_open, held_by_customer=held,
                                          max_per_customer=limit)
    assert [d.id for d in decisions] == [r.id for r in pending]
    free = {seat.id for seat in seat_map.seats} - set(taken)
    counts = dict(held)
    refused = []  # (qty, category, reason) of REJECTED best-available bookings so far
    gainers = set()  # customers that got seats in this batch
    for request, decision in zip(pending, decisions):
        before = set(free)
        if not sales_open:
            assert decision == (request.id, BookingStatus.REJECTED, RejectReason.SALES_CLOSED, ())
            continue
        over = limit is not None and counts.get(request.customer_id, 0) + request.size > limit
        assert (decision.reject_reason == RejectReason.LIMIT_EXCEEDED) == over  # (d)
        if over:
            continue
        if decision.holds_seats:
            seats = [seat_map.seat(seat_id) for seat_id in decision.seats]
            assert len(set(decision.seats)) == len(seats) and set(decision.seats) <= before  # (a)
            for qty, category, reason in refused:  # (c)
                if reason == RejectReason.NO_ADJACENT_SEATS:
                    assert not list(_blocks(seat_map, set(decision.seats), qty, category))
                else:
                    assert sum(1 for s in seats if s.category == category) < qty
            free -= set(decision.seats)
            counts[request.customer_id] = counts.get(request.customer_id, 0) + len(seats)
            gainers.add(request.customer_id)
            if request.seats is not None:
                assert decision.seats == request.seats
            else:  # (b)
                assert len(seats) == request.qty and {s.category for s in seats} == {request.category}
                assert len({s.row_index for s in seats}) == 1
                assert [s.number for s in seats] == list(range(seats[0].number, seats[0].number + request.qty))
                assert seats == list(_expected_block(seat_map, before, request.qty, request.category))
            continue
        assert decision.seats == ()
        if request.seats is not None:  # (c): it could not have had all its seats
            assert decision.reject_reason == RejectReason.SEAT_TAKEN
            assert not set(request.seats) <= before
            continue
        in_category = sum(1 for s in seat_map.seats if s.id in before and s.category == request.category)
        if in_category < request.qty:
            assert decision.reject_reason == RejectReason.SOLD_OUT
        else:
            assert decision.reject_reason == RejectReason.NO_ADJACENT_SEATS
            assert _expected_block(seat_map, before, request.qty, request.category) is None
        refused.append((request.qty, request.category, decision.reject_reason))
    if limit is not None:  # (d)
        assert all(counts[customer] <= limit for customer in gainers)
    assert set(state.free_seat_ids()) == free
    for category in CATEGORIES:
        assert state.free_count(category) == sum(1 for s in seat_map.seats if s.id in free and s.category == category)


@PROPERTIES
@given(scenarios(), st.data())
def test_releasing_seats_then_deciding_again_is_as_if_they_were_never_taken(scenario, data):
    """(e) Decide a batch, release the seats of some of its CONFIRMED bookings, decide a second
    batch: the decisions and the seats left free equal those of a state built fresh with only
    the seats still held taken."""
    seat_map, taken, pending, held, limit = scenario
    state = SeatState(seat_map, taken)
    first = decide_seats_in_seq_order(state, pending, sales_open=True)
    confirmed = [d for d in first if d.holds_seats]
    released = data.draw(st.lists(st.sampled_from(confirmed), unique=True) if confirmed else st.just([]))
    for decision in released:
        state.release(decision.seats)
    still_held = set(taken) | {s for d in confirmed if d not in released for s in d.seats}
    fresh = SeatState(seat_map, sorted(still_held))
    assert state.free_seat_ids() == fresh.free_seat_ids()
    second = data.draw(requests(seat_map, data.draw(st.integers(1, 15))))
    assert decide_seats_in_seq_order(state, second, sales_open=True, held_by_customer=held,
                                     max_per_customer=limit) == \
        decide_seats_in_seq_order(fresh, second, sales_open=True, held_by_customer=held, max_per_customer=limit)
    assert state.free_seat_ids() == fresh.free_seat_ids()
