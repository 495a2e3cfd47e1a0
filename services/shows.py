"""Shows: an admin creates and changes them (POST and PATCH /shows).

A general admission show has a capacity and a price; a reserved one a seat map and a price for
each of its categories (SPEC §8), its capacity the map's seat count. Blocking seats takes them out
of sale (not while a booking holds them)."""
from __future__ import annotations

from models import db
from models.errors import Conflict, InvalidInput, NotFound
from models.mypage import refresh_show
from models.seats import BLOCKED, hold_seats, load_seat_map, open_seats, release_seats
from models.shows import Seating, Show, ShowCategory, normalize_policy
from models.seats import SeatHold
from models.database import utc_now
from services import waiting_room
from services.unit_of_work import UnitOfWork

GENERAL_ONLY = ("capacity", "price")
RESERVED_ONLY = ("blocked_seats",)


def _policy(fields: dict) -> None:
    """The cancellation policy as stored (rules in descending hours_before; [] is none)."""
    if "cancellation_policy" in fields:
        try:
            fields["cancellation_policy"] = normalize_policy(fields["cancellation_policy"])
        except ValueError as error:
            raise InvalidInput("invalid cancellation policy", {"cancellation_policy": [str(error)]}) from None


def create_show(fields: dict) -> Show:
    fields = dict(fields)
    room = fields.pop("waiting_room", None)
    _policy(fields)
    with UnitOfWork() as uow:
        if fields.get("seat_map_id") is not None:
            show = _reserved_show(fields)
        else:
            missing = {name: ["required for a general admission show (or give seat_map_id and prices)"]
                       for name in ("capacity", "price") if fields.get(name) is None}
            if missing or "prices" in fields:
                raise InvalidInput("a show has a capacity and a price, or a seat map and prices",
                                   missing or {"prices": ["only with seat_map_id"]})
            show = Show(**fields, seating=Seating.GENERAL)
            db.session.add(show)
        if room is not None:
            waiting_room.configure(show, room, utc_now())
        uow.commit()
    return show


def _reserved_show(fields: dict) -> Show:
    seat_map_id, prices = fields.pop("seat_map_id"), fields.pop("prices", None)
    for name in GENERAL_ONLY:
        if fields.pop(name, None) is not None:
            raise InvalidInput("a reserved show is priced by category", {name: ["not with seat_map_id"]})
    try:
        seat_map = load_seat_map(seat_map_id)
    except NotFound:
        raise InvalidInput("no such seat map", {"seat_map_id": ["unknown seat map"]}) from None
    names = [category.name for category in seat_map.categories]
    if not isinstance(prices, dict) or set(prices) != set(names):
        missing, extra = sorted(set(names) - set(prices or {})), sorted(set(prices or {}) - set(names))
        raise InvalidInput("every category of the map needs a price, and no other", {"prices": [
            *(f"missing a price for {name}" for name in missing), *(f"{name} is no category of the map" for name in extra)]})
    show = Show(**fields, seating=Seating.RESERVED, seat_map_id=seat_map_id, price=None,
                capacity=seat_map.seat_count, remaining=seat_map.seat_count)
    show.categories = [ShowCategory(name=category.name, position=position, price=prices[category.name],
                                    capacity=category.seats, remaining=category.seats)
                       for position, category in enumerate(seat_map.categories)]
    db.session.add(show)
    db.session.flush()
    open_seats(show.id, seat_map)
    return show


def change_show(show_id: str, changes: dict) -> Show:
    """Change a show; capacity cannot drop below the seats held, and a held or sold seat cannot be
    blocked. A new cancellation policy applies to cancels asked for from now on (a fee already
    decided stays). The my page's copy of the title, venue and start time changes in the same transaction."""
    changes = dict(changes)
    room = changes.pop("waiting_room", None)
    _policy(changes)
    with UnitOfWork() as uow:
        show = uow.lock_shows([show_id])[show_id]
        if show.cancelled:
            raise Conflict("the show was cancelled: it does not change any more")
        waiting_room.check_sale_change(show, changes)
        if room is not None:
            waiting_room.configure(show, room, utc_now())
        wrong = [name for name in (GENERAL_ONLY if show.reserved else RESERVED_ONLY) if name in changes]
        if wrong:
            raise InvalidInput(f"not for a {show.seating} show", {name: [f"not for a {show.seating} show"] for name in wrong})
        capacity = changes.pop("capacity", None)
        if capacity is not None:
            show.change_capacity(capacity)
        if "blocked_seats" in changes:
            _block(show, changes.pop("blocked_seats"))
        for field, value in changes.items():
            setattr(show, field, value)
        if changes.keys() & {"title", "venue", "starts_at"}:
            refresh_show(show.id)
        uow.commit()
    return show


def blocked_seats(show: Show) -> list[str]:
    return list(db.session.scalars(db.select(SeatHold.seat_id).where(
        SeatHold.show_id == show.id, SeatHold.booking_id.is_(None)).order_by(SeatHold.seat_id)))


def _block(show: Show, seat_ids: list[str]) -> None:
    """Make these the show's blocked seats: newly named ones blocked, the others unblocked."""
    seat_map = load_seat_map(show.seat_map_id)
    unknown = [seat_id for seat_id in seat_ids if seat_id not in seat_map]
    if unknown:
        raise InvalidInput("not seats of this show", {"blocked_seats": [f"unknown seat {seat_id!r}" for seat_id in unknown[:20]]})
    wanted, now_blocked = set(seat_ids), set(blocked_seats(show))
    to_block, to_unblock = sorted(wanted - now_blocked), sorted(now_blocked - wanted)
    held = list(db.session.scalars(db.select(SeatHold.seat_id).where(
        SeatHold.show_id == show.id, SeatHold.seat_id.in_(to_block), SeatHold.booking_id.is_not(None))))
    if held:
        raise Conflict(f"{len(held)} of these seats are held or sold: {', '.join(sorted(held)[:10])}")
    release_seats(show.id, seat_map, None, to_unblock)
    hold_seats(show.id, seat_map, {None: tuple(to_block)}, BLOCKED)
    for seat_ids_, sign in ((to_block, 1), (to_unblock, -1)):
        for seat_id in seat_ids_:
            category = show.category(seat_map.seat(seat_id).category)
            category.take(1) if sign > 0 else category.give_back(1)
    change = len(to_block) - len(to_unblock)
    if change > 0 and not show.hold(change):
        raise Conflict("not enough seats left to block")
    if change < 0:
        show.release(-change)
