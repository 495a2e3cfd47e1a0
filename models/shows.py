"""Shows and their seats: capacity, remaining seats, and the rules for holding and releasing them.

A show is general admission (a count of seats at one price) or reserved (SPEC §8: the seats of a
seat map, priced by category; its capacity and remaining are the sums of its categories'). Either
may cap the seats one customer holds (max_per_customer) and open its sale at on_sale_at, and
may carry a cancellation policy (SPEC §11): the fee a cancel costs, by how long before the show.
"""
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Integer, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, object_session, relationship

from models.database import LOCKED_SHOWS, db, new_id, note_seats_back, utc_now
from models.errors import Conflict, NotFound


class SeatsUnlocked(RuntimeError):
    """A bug: seats changed without the show's row lock (two workers could hand out one seat).
    A unit of work takes that lock (services/unit_of_work.py), shows before bookings."""


class ShowStatus(StrEnum):
    SCHEDULED = "SCHEDULED"
    CANCELLED = "CANCELLED"


class Seating(StrEnum):
    GENERAL = "general"
    RESERVED = "reserved"


class Show(db.Model):
    __tablename__ = "shows"
    __table_args__ = (
        # No oversell, enforced by the database itself: remaining can never go below zero.
        CheckConstraint("remaining >= 0", name="remaining_not_negative"),
        CheckConstraint("remaining <= capacity", name="remaining_within_capacity"),
        CheckConstraint("capacity >= 0", name="capacity_not_negative"),
        CheckConstraint("price >= 0", name="price_not_negative"),
        CheckConstraint("seating IN ('general', 'reserved')", name="seating_known"),
        CheckConstraint("(seating = 'general' AND price IS NOT NULL AND seat_map_id IS NULL) OR "
                        "(seating = 'reserved' AND seat_map_id IS NOT NULL)", name="seating_fields"),
        CheckConstraint("max_per_customer IS NULL OR max_per_customer >= 1", name="limit_positive"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    title: Mapped[str] = mapped_column(String(200))
    venue: Mapped[str] = mapped_column(String(200))
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    price: Mapped[int | None] = mapped_column(BigInteger)  # general admission; reserved: by category
    capacity: Mapped[int] = mapped_column(Integer)
    remaining: Mapped[int] = mapped_column(Integer)
    seating: Mapped[str] = mapped_column(String(16), default=Seating.GENERAL, server_default=Seating.GENERAL.value)
    seat_map_id: Mapped[str | None] = mapped_column(ForeignKey("seat_maps.id"))
    # Seats one customer may hold across their live bookings of the show (None: no limit).
    max_per_customer: Mapped[int | None] = mapped_column(Integer)
    # Before it, POST /bookings is refused (None: on sale from the start).
    on_sale_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # SPEC §11: [{hours_before, fee_percent}] in descending hours_before (None: cancelling is free).
    cancellation_policy: Mapped[list | None] = mapped_column(JSONB)
    # SPEC §11: cancelled by an admin. No booking or queue join is taken from then on, and every
    # live booking is cancelled and refunded in full in the background (services/show_cancel.py).
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now, onupdate=utc_now)

    categories: Mapped[list["ShowCategory"]] = relationship(
        back_populates="show", order_by="ShowCategory.position", lazy="select", cascade="all, delete-orphan")
    # SPEC §9: with one, POST /bookings needs an Admission-Token (models/waiting_room.py).
    waiting_room: Mapped["WaitingRoom | None"] = relationship(lazy="select", cascade="all, delete-orphan")

    def __init__(self, **fields):
        super().__init__(**fields)
        if self.remaining is None:
            self.remaining = self.capacity

    @property
    def held(self) -> int:
        return self.capacity - self.remaining

    @property
    def reserved(self) -> bool:
        return self.seating == Seating.RESERVED

    def on_sale(self, now: datetime | None = None) -> bool:
        return self.on_sale_at is None or (now or utc_now()) >= self.on_sale_at

    @property
    def cancelled(self) -> bool:
        return self.cancelled_at is not None

    @property
    def status(self) -> str:
        return ShowStatus.CANCELLED if self.cancelled else ShowStatus.SCHEDULED

    def started(self, now: datetime | None = None) -> bool:
        return (now or utc_now()) >= self.starts_at

    def sales_open(self, now: datetime | None = None) -> bool:
        return not self.cancelled and not self.started(now)

    def cancellation_fee(self, amount: int, now: datetime | None = None) -> int:
        """What cancelling `amount` at `now` costs under the policy in force (SPEC §11); nothing
        once the show itself is cancelled."""
        if self.cancelled:
            return 0
        return cancellation_fee(self.cancellation_policy, self.starts_at, amount, now or utc_now())

    def cancel(self, now: datetime) -> bool:
        """Cancel the show (its lock is held). Returns False if it was cancelled already."""
        self._check_locked()
        if self.cancelled:
            return False
        self.cancelled_at = now
        return True

    def category(self, name: str) -> "ShowCategory | None":
        return next((category for category in self.categories if category.name == name), None)

    def _check_locked(self) -> None:
        session = object_session(self)
        if session is not None and self.id not in session.info.get(LOCKED_SHOWS, ()):
            raise SeatsUnlocked(f"the seats of show {self.id} changed without its row lock")

    def hold(self, qty: int) -> bool:
        """Take qty seats if that many remain. Returns whether they were taken."""
        self._check_locked()
        if qty <= 0 or qty > self.remaining:
            return False
        self.remaining -= qty
        return True

    def release(self, qty: int) -> None:
        self._check_locked()
        if self.remaining + qty > self.capacity:
            raise Conflict("cannot release more seats than are held")
        self.remaining += qty
        if qty > 0:
            note_seats_back(object_session(self), self.id)

    def change_capacity(self, capacity: int) -> None:
        self._check_locked()
        if capacity < self.held:
            raise Conflict(f"capacity {capacity} is below the {self.held} seats already held")
        if capacity > self.capacity:
            note_seats_back(object_session(self), self.id)
        self.remaining = capacity - self.held
        self.capacity = capacity


MAX_POLICY_RULES = 20


def normalize_policy(rules: list[dict] | None) -> list[dict] | None:
    """A cancellation policy as stored: its rules in descending hours_before; none (or an empty
    list) is no policy. Raises ValueError naming what is wrong (the web layer checks the shapes)."""
    if not rules:
        return None
    if len(rules) > MAX_POLICY_RULES:
        raise ValueError(f"at most {MAX_POLICY_RULES} rules")
    hours = [rule["hours_before"] for rule in rules]
    if len(set(hours)) != len(hours):
        raise ValueError("each rule needs its own hours_before")
    return sorted(({"hours_before": rule["hours_before"], "fee_percent": rule["fee_percent"]} for rule in rules),
                  key=lambda rule: rule["hours_before"], reverse=True)


def cancellation_fee(policy: list[dict] | None, starts_at: datetime, amount: int, now: datetime) -> int:
    """The fee of cancelling `amount` at `now`: `fee_percent` of it by the first rule, in descending
    hours_before, whose hours_before is at most the time left before `starts_at`; no rule
    matching (or no policy): free. Rounded down to the currency unit (integer arithmetic)."""
    left = starts_at - now
    for rule in sorted(policy or (), key=lambda rule: rule["hours_before"], reverse=True):
        if left >= timedelta(hours=rule["hours_before"]):
            return amount * rule["fee_percent"] // 100
    return 0


class ShowCategory(db.Model):
    """A price category of a reserved show: its price and its seats (capacity, remaining)."""
    __tablename__ = "show_categories"
    __table_args__ = (
        CheckConstraint("price >= 0", name="price_not_negative"),
        CheckConstraint("remaining >= 0", name="remaining_not_negative"),
        CheckConstraint("remaining <= capacity", name="remaining_within_capacity"),
    )

    show_id: Mapped[str] = mapped_column(ForeignKey("shows.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, default=0)  # the map's order of categories
    price: Mapped[int] = mapped_column(BigInteger)
    capacity: Mapped[int] = mapped_column(Integer)
    remaining: Mapped[int] = mapped_column(Integer)

    show: Mapped[Show] = relationship(back_populates="categories")

    def take(self, seats: int) -> None:
        """Seats of this category taken (held or blocked); the show's lock is held (Show.hold)."""
        if seats > self.remaining:
            raise Conflict(f"category {self.name} has {self.remaining} seats left, not {seats}")
        self.remaining -= seats

    def give_back(self, seats: int) -> None:
        if self.remaining + seats > self.capacity:
            raise Conflict(f"category {self.name}: cannot give back more seats than are taken")
        self.remaining += seats
        if seats > 0:
            note_seats_back(object_session(self), self.show_id)


def get_show(show_id: str, *, for_update: bool = False) -> Show:
    # populate_existing: a locked read must refresh a copy already in the session, or we would
    # decide on stale seat counts and lose updates.
    # FOR NO KEY UPDATE, not FOR UPDATE: a new booking's foreign key check takes KEY SHARE on its
    # show, which FOR UPDATE would block, so every POST /bookings for the show would wait out each
    # reservation batch. Nothing here changes a show's key.
    show = db.session.get(Show, show_id, with_for_update={"key_share": True} if for_update else None,
                          populate_existing=for_update)
    if show is None:
        raise NotFound("show not found")
    if for_update:
        db.session.info.setdefault(LOCKED_SHOWS, set()).add(show.id)
    return show

