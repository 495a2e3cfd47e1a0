"""Record a booking (POST /bookings): PENDING at once, with its payment, ticket and my page entry,
in one statement; its show's reservation is asked for after the commit.

A reserved show's booking is a pick (seats) or best available (qty in a category); it is checked
against the show's map and priced from its categories before it is recorded (SPEC §8)."""
from __future__ import annotations

from models.bookings import AcceptedBooking, Booking, find_by_idempotency_key, record_booking
from models.errors import InvalidInput, NotFound, SoldOut
from models.seating import check_best_available, check_pick
from models.seats import load_seat_map
from models.shows import get_show
from services import sold_out
from services.unit_of_work import UnitOfWork, reserve_soon
from services.waiting_room import verify_admission


def record(customer_id: str, show_id: str, qty: int | None, payment_method: str,
           idempotency_key: str | None = None, *, seats: list[str] | None = None,
           category: str | None = None, admission_token: str | None = None) -> tuple[Booking | AcceptedBooking, bool]:
    """Returns (booking, created). A request repeated with its Idempotency-Key returns the
    booking it made and changes nothing. A show with a waiting room needs the Admission-Token of
    the customer's turn, checked before anything is recorded (SPEC §9). What the show's sold-out
    fact refuses is refused at once (SoldOut), nothing recorded (services/sold_out.py)."""
    admission_id = verify_admission(admission_token, customer_id, show_id) if admission_token else None
    with UnitOfWork() as uow:
        amount = None
        if seats is not None or category is not None:
            qty, amount = _price_reserved(show_id, qty, seats, category)
        if not (idempotency_key and find_by_idempotency_key(customer_id, idempotency_key)):
            refuse_if_sold_out(show_id, seats, category, admitted=admission_id is not None)
        booking, created = record_booking(customer_id, show_id, qty, payment_method, idempotency_key,
                                          category=category, seats=seats, amount=amount,
                                          admission_id=admission_id)
        if created:
            # The committed PENDING booking is its own outbox entry: if this ask is lost, the
            # relay finds the booking and asks again (tasks/maintenance.py).
            uow.reserve_soon(booking.show_id)
            uow.commit()
    return booking, created


def refuse_if_sold_out(show_id: str, seats: list[str] | None, category: str | None, admitted: bool) -> None:
    """SoldOut if the show's fact refuses what the request asks for (services/sold_out.py);
    nothing is recorded either way. A refusal asks for a reservation run: it earns the fact
    again, or deletes it if seats came back."""
    if sold_out.refuses(show_id, _wanted(show_id, seats, category), admitted):
        if sold_out.renewal_due(show_id):
            reserve_soon(show_id)
        raise SoldOut(f"category {category} is sold out" if category is not None
                      else "this show is sold out" if seats is None else "a chosen seat's category is sold out")


def _wanted(show_id: str, seats: list[str] | None, category: str | None) -> set[str | None]:
    """What a request asks for, as sold-out facts name it: None (a general show's seats), its
    category (best available), or its seats' categories (a pick: any of them sold out fails it)."""
    if category is not None:
        return {category}
    if seats is None:
        return {None}
    seat_map = load_seat_map(_pricing_of(show_id)[0])
    return {seat_map.seat(seat_id).category for seat_id in seats}


# Show id -> (seat map id, price by category) of reserved shows, per process: neither changes once
# the show is created, and a rush would otherwise read the show and its categories per request.
_pricing: dict[str, tuple[str, dict[str, int]]] = {}
PRICINGS_KEPT = 256


def _pricing_of(show_id: str) -> tuple[str, dict[str, int]] | None:
    """The show's seat map and prices; None for a general admission show."""
    pricing = _pricing.get(show_id)
    if pricing is None:
        try:
            show = get_show(show_id)
        except NotFound:
            raise InvalidInput("show does not exist", {"show_id": ["unknown show"]}) from None
        if not show.reserved:
            return None
        if len(_pricing) >= PRICINGS_KEPT:
            _pricing.pop(next(iter(_pricing)), None)
        pricing = _pricing[show_id] = (show.seat_map_id, {each.name: each.price for each in show.categories})
    return pricing


def _price_reserved(show_id: str, qty: int | None, seats: list[str] | None, category: str | None) -> tuple[int, int]:
    """(qty, amount) of a pick or a best-available request, checked against the show's map."""
    pricing = _pricing_of(show_id)
    if pricing is None:
        field = "seats" if seats is not None else "category"
        raise InvalidInput("this show has general admission: book a qty", {field: ["not for a general admission show"]})
    seat_map_id, prices = pricing
    seat_map = load_seat_map(seat_map_id)
    if seats is not None:
        check_pick(seat_map, seats)
        return len(seats), sum(prices[seat_map.seat(seat_id).category] for seat_id in seats)
    check_best_available(seat_map, qty, category)
    return qty, prices[category] * qty


def booked_seats(booking) -> list[dict] | None:
    """A reserved booking's seats as its answer shows them, once it holds (or held) them."""
    seat_ids = getattr(booking, "seats", None)
    if not seat_ids or getattr(booking, "status", None) in ("PENDING", "REJECTED"):  # never held them
        return None
    show = booking.show
    seat_map = load_seat_map(show.seat_map_id)
    return [{"id": seat.id, "section": seat.section, "row": seat.row, "number": seat.number,
             "category": seat.category} for seat in map(seat_map.seat, seat_ids)]
