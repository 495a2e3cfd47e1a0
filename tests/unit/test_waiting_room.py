"""The waiting room's pure rules (models/waiting_room.py): the draw is a uniform random order,
reproducible from its seed; the schedule admits at the rate, evenly, and saves up no burst."""
import hashlib
import itertools
import math
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from models.lifecycles import QUEUE, IllegalMove
from models.waiting_room import LATE, QueueEntry, WaitingRoom, draw_order, order_score, shown_state

T0 = datetime(2026, 12, 1, 20, 0, tzinfo=timezone.utc)


def seeds(count: int, salt: str = ""):
    return [hashlib.sha256(f"{salt}{n}".encode()).hexdigest() for n in range(count)]


def chi_square(observed: Counter, cells: list, total: int) -> float:
    expected = total / len(cells)
    return sum((observed[cell] - expected) ** 2 / expected for cell in cells)


def chi_square_critical(df: int, z: float = 3.09) -> float:
    """The chi-square value exceeded with probability ~0.001 (Wilson-Hilferty)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def permutation_counts(order_of, ids, draws: int) -> Counter:
    return Counter(tuple(order_of(seed, ids)) for seed in seeds(draws))


IDS = [f"entry-{n}" for n in range(5)]


def test_every_order_of_the_early_joiners_is_equally_likely():
    draws = 24_000  # 200 per permutation of five
    counts = permutation_counts(draw_order, IDS, draws)
    cells = list(itertools.permutations(IDS))
    assert set(counts) <= set(cells)
    assert chi_square(counts, cells, draws) < chi_square_critical(len(cells) - 1)


def test_each_joiner_is_equally_likely_at_each_place():
    draws = 10_000
    places = Counter()
    for seed in seeds(draws, "places"):
        for place, entry_id in enumerate(draw_order(seed, IDS)):
            places[(entry_id, place)] += 1
    for entry_id in IDS:
        row = Counter({place: places[(entry_id, place)] for place in range(len(IDS))})
        assert chi_square(row, list(range(len(IDS))), draws) < chi_square_critical(len(IDS) - 1)


def test_the_uniformity_check_catches_a_biased_draw():
    """The same check refuses a draw that favours the first joiner a little (1 in 10 draws keep
    the arrival order): the test above could fail."""
    def biased(seed, ids):
        return list(ids) if int(seed[:4], 16) % 10 == 0 else draw_order(seed, ids)
    draws = 24_000
    counts = permutation_counts(biased, IDS, draws)
    assert chi_square(counts, list(itertools.permutations(IDS)), draws) > chi_square_critical(119)


def test_the_draw_is_reproducible_from_its_seed_and_depends_on_it():
    ids = [f"e{n}" for n in range(50)]
    seed, other = seeds(2)
    assert draw_order(seed, ids) == draw_order(seed, list(reversed(ids)))  # not the arrival order
    assert draw_order(seed, ids) != draw_order(other, ids)
    assert sorted(draw_order(seed, ids)) == sorted(ids)


def test_the_queue_order_puts_drawn_joiners_first_then_arrivals():
    assert order_score(3, 100, early=True) == 3
    assert order_score(None, 100, early=True) is None  # before the draw
    assert order_score(None, 7, early=False) == LATE + 7
    assert order_score(10_000_000, 1, early=True) < order_score(None, 1, early=False)


def room(rate=600) -> WaitingRoom:
    room = WaitingRoom(admit_per_minute=rate, session_minutes=10, schedule_base=0, slots_used=0, admitted=0)
    room.start(T0)
    return room


def run(room, seconds: float, tick: float, waiting: int = 10**9, start: float = 0.0):
    """Tick the schedule; returns admissions per tick."""
    per_tick = []
    for n in range(1, int(seconds / tick) + 1):
        now = T0 + timedelta(seconds=start + n * tick)
        owed = room.admissions_due(now)
        admitted = min(owed, waiting)
        waiting -= admitted
        room.spend(admitted, owed=owed, now=now)
        per_tick.append(admitted)
    return per_tick


def test_a_minute_admits_the_rate_evenly():
    admitted = run(room(600), 60, 0.2)
    assert sum(admitted) == 600
    assert max(admitted) == 2  # 10 a second, never bunched
    per_second = [sum(admitted[n:n + 5]) for n in range(0, len(admitted), 5)]
    assert set(per_second) == {10}


def test_a_stall_is_caught_up_at_a_bounded_pace():
    r = room(600)
    run(r, 10, 0.2)
    now = T0 + timedelta(seconds=13)  # three seconds without a tick (a killed worker)
    owed = r.admissions_due(now)
    assert owed == 5  # half a second's worth, not the 30 owed
    r.spend(owed, owed=owed, now=now)
    caught_up = run(r, 5, 0.2, start=13)
    assert r.admitted == 600 * 18 // 60  # the minute's count is whole again
    assert max(caught_up) <= 5


def test_slots_that_find_nobody_waiting_are_forfeit():
    r = room(600)
    run(r, 30, 0.2, waiting=0)
    assert r.admitted == 0
    admitted = run(r, 1, 0.2, start=30)
    assert admitted == [2, 2, 2, 2, 2]  # no burst from the idle half minute


def test_a_new_rate_applies_from_its_moment_and_keeps_the_slots_due():
    r = room(60)
    run(r, 10, 0.2)
    assert r.admitted == 10
    r.change_rate(600, T0 + timedelta(seconds=10))
    run(r, 10, 0.2, start=10)
    assert r.admitted == 10 + 100
    r.forfeit(T0 + timedelta(seconds=25))
    assert r.admissions_due(T0 + timedelta(seconds=25)) == 0


def test_an_admitted_entry_reads_expired_once_its_session_is_over():
    until = T0 + timedelta(minutes=10)
    assert shown_state("ADMITTED", until, T0) == "ADMITTED"
    assert shown_state("ADMITTED", until, until) == "EXPIRED"
    assert shown_state("WAITING", None, until) == "WAITING"


def test_leaving_is_a_move_of_the_queue_lifecycle():
    entry = QueueEntry(state="WAITING")
    entry.leave(T0)
    assert entry.state == "LEFT" and entry.left_at == T0
    entry.leave(T0 + timedelta(seconds=1))
    assert entry.left_at == T0  # leaving twice changes nothing
    assert QUEUE.target("admit", "WAITING") == "ADMITTED"
    with pytest.raises(IllegalMove):
        QUEUE.target("admit", "LEFT")
