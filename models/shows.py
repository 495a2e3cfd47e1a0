"""Shows and their seats: capacity, remaining seats, and the rules for holding and releasing them."""
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column, object_session

from models.database import LOCKED_SHOWS, db, new_id, utc_now
from models.errors import Conflict, NotFound


class SeatsUnlocked(RuntimeError):
    """A bug: seats changed without the show's row lock (two workers could hand out one seat).
    A unit of work takes that lock (services/unit_of_work.py), shows before bookings."""


class Show(db.Model):
    __tablename__ = "shows"
    __table_args__ = (
        # No oversell, enforced by the database itself: remaining can never go below zero.
        CheckConstraint("remaining >= 0", name="remaining_not_negative"),
        CheckConstraint("remaining <= capacity", name="remaining_within_capacity"),
        CheckConstraint("capacity >= 0", name="capacity_not_negative"),
        CheckConstraint("price >= 0", name="price_not_negative"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    title: Mapped[str] = mapped_column(String(200))
    venue: Mapped[str] = mapped_column(String(200))
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    price: Mapped[int] = mapped_column(BigInteger)
    capacity: Mapped[int] = mapped_column(Integer)
    remaining: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now, onupdate=utc_now)

    def __init__(self, **fields):
        super().__init__(**fields)
        if self.remaining is None:
            self.remaining = self.capacity

    @property
    def held(self) -> int:
        return self.capacity - self.remaining

    def sales_open(self, now: datetime | None = None) -> bool:
        return (now or utc_now()) < self.starts_at

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

    def change_capacity(self, capacity: int) -> None:
        self._check_locked()
        if capacity < self.held:
            raise Conflict(f"capacity {capacity} is below the {self.held} seats already held")
        self.remaining = capacity - self.held
        self.capacity = capacity


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

