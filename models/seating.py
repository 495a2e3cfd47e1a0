"""Reserved seating, the pure core: seat maps, the seats of a show that are free, and the rules
that decide which seats a booking gets (SPEC §8). No database and no web here: plain objects,
so the reservation step, the API and the tests all call the same rules.

  parse_seat_map(body)  -> SeatMap      the body of POST /seat-maps, validated and in quality order
  SeatState(seat_map, taken)            which seats are free; take() and release() move seats
  decide_seats_in_seq_order(...)        one batch of PENDING bookings, in seq order -> SeatDecision
  check_pick, check_best_available      what POST /bookings refuses (422) before recording a booking

Seat ids are "<section>-<row>-<number>": the 1-based position of the seat's section in the map,
of its row in that section, and the seat number, e.g. "1-3-12" (first section, third row, seat
12). A seat map never changes once created, so an id names the same seat for ever; ids stay short
(a 100,000-seat map is listed in every GET /shows/{id}/seats) and need no escaping whatever the
section and row names hold. The API shows section, row and number beside the id; customers send
the id back.

Adjacency means consecutive seat numbers in one row: seats 7 and 9 of a row without a seat 8 are
not adjacent, and an absent seat counts as taken when looking for stranded seats.
"""
import re
from enum import StrEnum
from functools import lru_cache
from typing import Iterable, NamedTuple

from models.errors import Conflict, InvalidInput
from models.lifecycles import BookingStatus

MAX_SEATS = 100_000
MAX_SEAT_NUMBER = 1_000_000
MAX_NAME = 100
MAX_CATEGORY = 32
# The most seats one booking takes; equal to models.bookings.MAX_QTY (not imported: that module
# brings the database layer with it, and this one stays pure). A test holds the two together.
MAX_SEATS_PER_BOOKING = 10
# An invalid map answers with at most this many field errors; a body of 100,000 bad seats gets
# a readable answer, and stops being read once it is full.
MAX_ERRORS = 20

_GAP = -1  # a slot of a row where the numbering skips a number: no seat there


class RejectReason(StrEnum):
    SALES_CLOSED = "sales_closed"
    LIMIT_EXCEEDED = "limit_exceeded"
    SEAT_TAKEN = "seat_taken"
    NO_ADJACENT_SEATS = "no_adjacent_seats"
    SOLD_OUT = "sold_out"


class Seat(NamedTuple):
    id: str
    section: str
    row: str
    number: int
    category: str
    index: int  # position in the map's quality order
    row_index: int  # position of its row in SeatMap.rows


class Row(NamedTuple):
    index: int
    section: str
    name: str
    first: int  # SeatMap.seats[first:first + size] are this row's seats, number ascending
    size: int


class Category(NamedTuple):
    name: str
    seats: int


class SeatMap:
    """A validated seat map: its seats in quality order (sections as listed, then rows as listed,
    then seat number ascending), its rows, and its categories in order of first appearance."""

    def __init__(self, name: str, seats: list[Seat], rows: list[Row]):
        self.name = name
        self.seats = tuple(seats)
        self.rows = tuple(rows)
        self._by_id = {seat.id: seat for seat in seats}
        counts: dict[str, int] = {}
        for seat in seats:
            counts[seat.category] = counts.get(seat.category, 0) + 1
        self.categories = tuple(Category(name, count) for name, count in counts.items())
        self._layout = _RowLayout(self)

    @property
    def seat_count(self) -> int:
        return len(self.seats)

    def seat(self, seat_id: str) -> Seat | None:
        return self._by_id.get(seat_id)

    def __contains__(self, seat_id: str) -> bool:
        return seat_id in self._by_id


# ---- parsing and validation of POST /seat-maps -------------------------------------------------

class _Errors(dict):
    """{field path: [reasons]}; full after MAX_ERRORS reasons, when reading stops."""

    def add(self, path: str, reason: str) -> None:
        self.setdefault(path, []).append(reason)
        if sum(len(reasons) for reasons in self.values()) >= MAX_ERRORS:
            raise _Full()


class _Full(Exception):
    """The error list is full: stop reading the body."""


class _TooLarge(Exception):
    """The map has more than MAX_SEATS seats: stop reading before building them."""


def _name_problem(value, longest: int) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    if not 1 <= len(value) <= longest:
        return f"must be 1 to {longest} characters"
    # isprintable() refuses control characters, NUL and lone surrogates: nothing unstorable.
    if not value.isprintable() or value.strip() != value:
        return "must be printable characters, without leading or trailing spaces"
    return None


def _fields(errors: _Errors, path: str, value, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> bool:
    """Check value is an object with these fields and no others. Returns whether it is usable."""
    if not isinstance(value, dict):
        errors.add(path or "_schema", "must be an object")
        return False
    prefix = f"{path}." if path else ""
    for key in value:
        if key not in required and key not in optional:
            errors.add(prefix + str(key), "Unknown field.")
    missing = [key for key in required if key not in value]
    for key in missing:
        errors.add(prefix + key, "Missing data for required field.")
    return not missing


def _list(errors: _Errors, path: str, value) -> bool:
    if not isinstance(value, list):
        errors.add(path, "must be a list")
        return False
    if not value:
        errors.add(path, "must not be empty")
        return False
    return True


def _number_problem(value) -> str | None:
    # type() and not isinstance(): True is an int to Python, not a seat number to anyone.
    if type(value) is not int:
        return "must be an integer"
    if not 1 <= value <= MAX_SEAT_NUMBER:
        return f"must be between 1 and {MAX_SEAT_NUMBER}"
    return None


def _row_seats(errors: _Errors, path: str, seats, category: str | None, room: int) -> list[tuple[int, str]]:
    """The row's (number, category) pairs, number ascending; room is how many seats the map may
    still take (the caller reports the map as too large when this row does not fit)."""
    if type(seats) is int:
        if not 1 <= seats <= MAX_SEATS:
            errors.add(path, f"must be between 1 and {MAX_SEATS}")
            return []
        if seats > room:
            raise _TooLarge()
        return [(number, category) for number in range(1, seats + 1)]
    if not isinstance(seats, list):
        errors.add(path, "must be a seat count or a list of seat numbers")
        return []
    if not seats:
        errors.add(path, "must not be empty")
        return []
    if len(seats) > room:
        raise _TooLarge()
    pairs, seen = [], set()
    for position, item in enumerate(seats):
        number, seat_category = item, category
        if type(item) is dict:
            if not _fields(errors, f"{path}.{position}", item, ("number",), ("category",)):
                continue
            number, seat_category = item["number"], item.get("category", category)
            if "category" in item:
                problem = _name_problem(seat_category, MAX_CATEGORY)
                if problem:
                    errors.add(f"{path}.{position}.category", problem)
                    continue
            problem = _number_problem(number)
            if problem:
                errors.add(f"{path}.{position}.number", problem)
                continue
        else:
            problem = _number_problem(number)
            if problem:
                errors.add(f"{path}.{position}", problem)
                continue
        if number in seen:
            errors.add(path, f"duplicate seat number {number}")
            continue
        seen.add(number)
        pairs.append((number, seat_category))
    if pairs and not all(pairs[i][0] < pairs[i + 1][0] for i in range(len(pairs) - 1)):
        pairs.sort()
    return pairs


def parse_seat_map(body) -> SeatMap:
    """The seat map a POST /seat-maps body describes. Raises InvalidInput naming each bad field
    by its path ("sections.0.rows.1.seats"), as the API answers it (422)."""
    errors = _Errors()
    try:
        seat_map = _parse(errors, body)
    except _Full:
        seat_map = None
    except _TooLarge:
        errors.clear()
        errors["sections"] = [f"a seat map has at most {MAX_SEATS} seats"]
        seat_map = None
    if errors or seat_map is None:
        raise InvalidInput("invalid seat map", dict(errors))
    return seat_map


def _parse(errors: _Errors, body) -> SeatMap | None:
    if not _fields(errors, "", body, ("name", "sections")):
        return None
    problem = _name_problem(body["name"], MAX_NAME)
    if problem:
        errors.add("name", problem)
    sections = body["sections"]
    if not _list(errors, "sections", sections):
        return None
    seats: list[Seat] = []
    counted = 0  # seats read so far, built or not (a map with errors is not built)
    rows: list[Row] = []
    section_names: set[str] = set()
    for s, section in enumerate(sections):
        path = f"sections.{s}"
        if not _fields(errors, path, section, ("name", "rows")):
            continue
        section_name = section["name"]
        problem = _name_problem(section_name, MAX_NAME)
        if problem is None and section_name in section_names:
            problem = f"duplicate section name {section_name!r}"
        if problem:
            errors.add(f"{path}.name", problem)
        else:
            section_names.add(section_name)
        if not _list(errors, f"{path}.rows", section["rows"]):
            continue
        row_names: set[str] = set()
        for r, row in enumerate(section["rows"]):
            row_path = f"{path}.rows.{r}"
            if not _fields(errors, row_path, row, ("name", "seats", "category")):
                continue
            row_name, category = row["name"], row["category"]
            problem = _name_problem(row_name, MAX_NAME)
            if problem is None and row_name in row_names:
                problem = f"duplicate row name {row_name!r} in this section"
            if problem:
                errors.add(f"{row_path}.name", problem)
            else:
                row_names.add(row_name)
            problem = _name_problem(category, MAX_CATEGORY)
            if problem:
                errors.add(f"{row_path}.category", problem)
            pairs = _row_seats(errors, f"{row_path}.seats", row["seats"], category, MAX_SEATS - counted)
            counted += len(pairs)
            if errors or not pairs:
                continue  # a map with errors is never built; reading on only finds more of them
            row_index, first, prefix = len(rows), len(seats), f"{s + 1}-{r + 1}-"
            seats.extend(Seat(f"{prefix}{number}", section_name, row_name, number, seat_category,
                              first + i, row_index)
                         for i, (number, seat_category) in enumerate(pairs))
            rows.append(Row(row_index, section_name, row_name, first, len(pairs)))
    if errors:
        return None
    return SeatMap(body["name"], seats, rows)


# ---- the state of a show's seats ----------------------------------------------------------------

# A row as each category's search sees it: one byte per slot. A run of _HERE bytes is a block of
# adjacent free seats of the category; _OTHER is a free seat of another category (a free
# neighbour, never part of the block); _NOT_FREE is a taken seat, or no seat at all.
_NOT_FREE, _OTHER, _HERE = 0, 1, 2


class _RowLayout:
    """How each row lies as slots: one slot per seat in number order, and one empty slot wherever
    the numbering skips, so "adjacent" is "next slot" and a block is a run of bytes that
    bytes.find and re find at C speed. Computed once per map; every SeatState copies its bytes."""

    def __init__(self, seat_map: SeatMap):
        self.slot_of: list[int] = [0] * seat_map.seat_count  # seat index -> slot in its row
        self.seat_at: list[list[int]] = []  # row index -> slot -> seat index, or _GAP
        self.categories_of: list[tuple[str, ...]] = []  # row index -> the categories of its seats
        self.codes: dict[str, dict[int, bytes]] = {}  # category -> row index -> the row, all free
        seats = seat_map.seats
        for row in seat_map.rows:
            slots: list[int] = []
            previous = None
            for index in range(row.first, row.first + row.size):
                number = seats[index].number
                if previous is not None and number != previous + 1:
                    slots.append(_GAP)
                self.slot_of[index] = len(slots)
                slots.append(index)
                previous = number
            self.seat_at.append(slots)
            in_row = tuple(dict.fromkeys(seats[index].category for index in range(row.first, row.first + row.size)))
            self.categories_of.append(in_row)
            for category in in_row:
                self.codes.setdefault(category, {})[row.index] = bytes(
                    _NOT_FREE if index == _GAP else _HERE if seats[index].category == category else _OTHER
                    for index in slots)


class SeatState:
    """Which seats of one show are free (AVAILABLE) and which are not (held, sold or blocked: the
    rules here need no difference between them). Built per reservation run from the map and the
    seats that are not free; take() and release() change it as the run decides.

    Per category and row, a bytearray of the row's slots as that category sees them (_HERE,
    _OTHER, _NOT_FREE), with free counts per category and per row to skip full rows.
    """

    def __init__(self, seat_map: SeatMap, taken: Iterable[str] = ()):
        self.seat_map = seat_map
        self._layout = layout = seat_map._layout
        self._codes = {category: {row: bytearray(codes) for row, codes in rows.items()}
                       for category, rows in layout.codes.items()}
        # Rows of each category in quality order (dicts keep insertion order, rows were added so).
        self._rows_of = {category: list(rows) for category, rows in layout.codes.items()}
        self._row_count = {category: {row: codes.count(_HERE) for row, codes in rows.items()}
                           for category, rows in layout.codes.items()}
        self._category_count = {category.name: category.seats for category in seat_map.categories}
        self.take(taken)

    def is_free(self, seat_id: str) -> bool:
        seat = self.seat_map.seat(seat_id)
        return seat is not None and self._is_free(seat)

    def free_count(self, category: str) -> int:
        return self._category_count.get(category, 0)

    def free_seat_ids(self) -> list[str]:
        """Every free seat, in quality order (slow: for tests and checks, not for a run)."""
        return [seat.id for seat in self.seat_map.seats if self._is_free(seat)]

    def _is_free(self, seat: Seat) -> bool:
        return self._codes[seat.category][seat.row_index][self._layout.slot_of[seat.index]] == _HERE

    def _mark(self, seat: Seat, free: bool) -> None:
        slot, row = self._layout.slot_of[seat.index], seat.row_index
        for category in self._layout.categories_of[row]:
            mine = category == seat.category
            self._codes[category][row][slot] = (_HERE if mine else _OTHER) if free else _NOT_FREE
        change = 1 if free else -1
        self._row_count[seat.category][row] += change
        self._category_count[seat.category] += change

    def _seats(self, seat_ids: Iterable[str]) -> list[Seat]:
        seats = []
        for seat_id in seat_ids:
            seat = self.seat_map.seat(seat_id)
            if seat is None:
                raise Conflict(f"seat {seat_id} is not a seat of this map")
            seats.append(seat)
        return seats

    def take(self, seat_ids: Iterable[str]) -> None:
        """Mark these seats not free (held, sold or blocked). Taking a seat that is not free is
        refused (Conflict) and changes nothing: a seat is never held twice."""
        seats = self._seats(seat_ids)
        if len({seat.index for seat in seats}) != len(seats) or not all(self._is_free(s) for s in seats):
            raise Conflict("a seat to take is not free")
        for seat in seats:
            self._mark(seat, False)

    def release(self, seat_ids: Iterable[str]) -> None:
        """Give seats back (expiry, declined payment, cancel, partial cancel, unblocking).
        Releasing a seat that is already free is refused (Conflict) and changes nothing: it
        would mean two bookings thought they held it."""
        seats = self._seats(seat_ids)
        if len({seat.index for seat in seats}) != len(seats) or any(self._is_free(s) for s in seats):
            raise Conflict("a seat to release is not taken")
        for seat in seats:
            self._mark(seat, True)

    def take_if_all_free(self, seat_ids: Iterable[str]) -> bool:
        """Take exactly these seats if every one is free; otherwise take none. Returns whether taken."""
        seats = [self.seat_map.seat(seat_id) for seat_id in seat_ids]
        if not seats or None in seats or len({seat.index for seat in seats}) != len(seats):
            return False
        if not all(self._is_free(seat) for seat in seats):
            return False
        for seat in seats:
            self._mark(seat, False)
        return True

    def take_best_available(self, qty: int, category: str) -> list[str] | None:
        """Find qty adjacent free seats of the category (_find_best_block) and take them.
        Returns their ids, or None (nothing taken)."""
        block = self._find_best_block(qty, category)
        if block is None:
            return None
        row, start = block
        seats = self.seat_map.seats
        chosen = [seats[index] for index in self._layout.seat_at[row][start:start + qty]]
        for seat in chosen:
            self._mark(seat, False)
        return [seat.id for seat in chosen]

    def _find_best_block(self, qty: int, category: str) -> tuple[int, int] | None:
        """(row index, first slot) of the block best available gives, or None: the best row
        (quality order) with qty adjacent free seats of the category; in it, the block that
        strands the fewest free seats (a free seat left with no free neighbour on either side),
        lowest seat numbers among equals."""
        if qty < 1 or self.free_count(category) < qty:
            return None
        block = bytes([_HERE]) * qty
        counts, rows = self._row_count[category], self._codes[category]
        for row in self._rows_of[category]:
            if counts[row] < qty:
                continue
            codes = rows[row]
            start = codes.find(block)
            if start < 0:
                continue
            if _strands_nothing(codes, start, qty):
                return row, start  # the usual case, and the lowest numbers: no search needed
            strands_none, strands_one = _block_patterns(qty)
            found = strands_none.search(codes) or strands_one.search(codes)
            return row, found.start() if found else start
        return None


def _strands_nothing(codes: bytearray, start: int, qty: int) -> bool:
    """Whether taking slots [start, start + qty) leaves both neighbours of the block with a free
    neighbour of their own, or not free anyway (the rule _block_patterns spells as patterns)."""
    before, after = start - 1, start + qty
    left_clean = before < 0 or not codes[before] or (before > 0 and codes[before - 1] != _NOT_FREE)
    right_clean = (after >= len(codes) or not codes[after]
                   or (after + 1 < len(codes) and codes[after + 1] != _NOT_FREE))
    return left_clean and right_clean


@lru_cache(maxsize=None)
def _block_patterns(qty: int) -> tuple[re.Pattern, re.Pattern]:
    """Patterns of qty free seats of the category that strand no seat, and that strand at most one.

    Taking a block can strand only the seat just before it or just after it, and that seat is
    stranded when it is free and the seat beyond it is not (or does not exist). So one side is
    clean when the byte next to the block is not free (or the row ends), or it and the next one
    both are. Searched with re, which finds the leftmost match at C speed: lowest numbers first.
    """
    free = b"[" + bytes([_OTHER, _HERE]) + b"]"  # raw bytes 1 and 2: not special to re
    left = b"(?:(?<!" + free + b")|(?<=" + free + free + b"))"
    right = b"(?:(?!" + free + b")|(?=" + free + free + b"))"
    block = bytes([_HERE]) + b"{%d}" % qty
    return re.compile(left + block + right), re.compile(b"(?:" + left + block + b"|" + block + right + b")")


# ---- the decision of one batch ----------------------------------------------------------------

class SeatRequest(NamedTuple):
    """A PENDING booking of a reserved show as the reservation step reads it: either a pick
    (seats: the ids the customer chose, all or nothing) or best available (qty, category)."""
    id: str
    customer_id: str
    seats: tuple[str, ...] | None = None
    qty: int | None = None
    category: str | None = None

    @classmethod
    def pick(cls, booking_id: str, customer_id: str, seat_ids: Iterable[str]) -> "SeatRequest":
        return cls(booking_id, customer_id, seats=tuple(seat_ids))

    @classmethod
    def best_available(cls, booking_id: str, customer_id: str, qty: int, category: str) -> "SeatRequest":
        return cls(booking_id, customer_id, qty=qty, category=category)

    @property
    def size(self) -> int:
        return len(self.seats) if self.seats is not None else self.qty


class SeatDecision(NamedTuple):
    """What the reservation decided for one PENDING booking: CONFIRMED with the seats it now
    holds (in quality order for best available, as asked for a pick), or REJECTED with a reason."""
    id: str
    status: str
    reject_reason: str | None = None
    seats: tuple[str, ...] = ()

    @property
    def holds_seats(self) -> bool:
        return self.status == BookingStatus.CONFIRMED


def _rejected(request: SeatRequest, reason: RejectReason) -> SeatDecision:
    return SeatDecision(request.id, BookingStatus.REJECTED, reason)


def decide_seats_in_seq_order(state: SeatState, pending: Iterable[SeatRequest], *, sales_open: bool,
                              held_by_customer: dict[str, int] | None = None,
                              max_per_customer: int | None = None) -> list[SeatDecision]:
    """Decide bookings of one reserved show, given in seq order, taking seats from state as it goes.

    held_by_customer: seats each customer already holds in live bookings of the show (not changed).
    Checks, in order: sales closed; the limit (this booking's seats plus the customer's held
    seats, counting the ones confirmed earlier in this batch, above max_per_customer); the seats.
    A pick gets its seats only if every one is free (else seat_taken; so is a pick that is not
    distinct seats of the map, which check_pick keeps out: one bad booking must not fail the
    batch). Best available gets the
    best block (SeatState.take_best_available): sold_out when the category has fewer free seats than
    qty, no_adjacent_seats when it has enough but no qty of them adjacent in one row.

    First come, first served follows from the order: the state only loses seats during a batch,
    so seats a later booking gets were free for every earlier one, which was refused only when
    the seats it asked for (a pick, or any block of qty in its category) were not all free.
    """
    held = dict(held_by_customer or {})
    decisions = []
    for request in pending:
        if not sales_open:
            decisions.append(_rejected(request, RejectReason.SALES_CLOSED))
            continue
        size = request.size
        if max_per_customer is not None and held.get(request.customer_id, 0) + size > max_per_customer:
            decisions.append(_rejected(request, RejectReason.LIMIT_EXCEEDED))
            continue
        if request.seats is not None:
            seats = tuple(request.seats) if state.take_if_all_free(request.seats) else None
            reason = RejectReason.SEAT_TAKEN
        elif state.free_count(request.category) < size:
            seats, reason = None, RejectReason.SOLD_OUT
        else:
            taken = state.take_best_available(size, request.category)
            seats, reason = (tuple(taken) if taken else None), RejectReason.NO_ADJACENT_SEATS
        if seats is None:
            decisions.append(_rejected(request, reason))
            continue
        held[request.customer_id] = held.get(request.customer_id, 0) + size
        decisions.append(SeatDecision(request.id, BookingStatus.CONFIRMED, None, seats))
    return decisions


# ---- what the API checks before a booking is recorded --------------------------------------------

def check_pick(seat_map: SeatMap, seat_ids) -> None:
    """Refuse (InvalidInput, field "seats") a pick that is not 1..10 distinct seats of the map."""
    if not isinstance(seat_ids, list) or not 1 <= len(seat_ids) <= MAX_SEATS_PER_BOOKING:
        raise InvalidInput("invalid seats", {"seats": [f"must be a list of 1 to {MAX_SEATS_PER_BOOKING} seat ids"]})
    unknown = [seat_id for seat_id in seat_ids if not isinstance(seat_id, str) or seat_id not in seat_map]
    if unknown:
        raise InvalidInput("invalid seats", {"seats": [f"not a seat of this show: {seat_id!r}" for seat_id in unknown]})
    if len(set(seat_ids)) != len(seat_ids):
        raise InvalidInput("invalid seats", {"seats": ["a seat is listed twice"]})


def check_best_available(seat_map: SeatMap, qty, category) -> None:
    """Refuse (InvalidInput, fields "qty" / "category") a best-available request the map cannot mean."""
    errors = {}
    if type(qty) is not int or not 1 <= qty <= MAX_SEATS_PER_BOOKING:
        errors["qty"] = [f"must be between 1 and {MAX_SEATS_PER_BOOKING}"]
    if not isinstance(category, str) or category not in {c.name for c in seat_map.categories}:
        errors["category"] = ["not a category of this show"]
    if errors:
        raise InvalidInput("invalid best-available request", errors)
