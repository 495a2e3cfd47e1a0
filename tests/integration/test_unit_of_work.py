"""The unit of work and the set-based moves, on the real database: locks in the one order, the my
page projected by the commit (not by the caller), the version up once per transaction, and the
reservation's single UPDATE refusing any move the booking lifecycle does not allow."""
from datetime import timedelta

import pytest
from sqlalchemy import select

from models import db
from models.bookings import Booking, Decision, apply_reservations, record_booking
from models.database import utc_now
from models.lifecycles import BookingStatus, IllegalMove
from models.mypage import MyPageEntry
from models.shows import SeatsUnlocked, get_show
from services.unit_of_work import LockOrderError, UnitOfWork


@pytest.fixture
def pending(app, customer, make_show):
    """A show of 5 seats and a PENDING booking of 2, recorded without asking for its reservation.
    Each test leaves the show's seat count agreeing with its bookings (the consistency report of
    later tests reads every show)."""
    show = make_show(capacity=5)
    with app.app_context():
        booking, _ = record_booking(customer["id"], show["id"], 2, "tok_ok")
        db.session.commit()
        db.session.remove()
    return show["id"], booking.id


def _row(booking_id):
    booking = db.session.get(Booking, booking_id, populate_existing=True)
    entry = db.session.get(MyPageEntry, booking_id, populate_existing=True)
    return booking.status, booking.version, entry.status, entry.version


def test_the_reservation_update_refuses_a_move_the_lifecycle_does_not_allow(app, pending):
    show_id, booking_id = pending
    now = utc_now()
    with app.app_context():
        for illegal in (BookingStatus.PAID, BookingStatus.CANCELLED, BookingStatus.PENDING):
            with UnitOfWork() as uow:
                uow.lock_shows([show_id])
                uow.lock_pending(show_id, 10)
                with pytest.raises(IllegalMove, match="1 of 1"):
                    apply_reservations([Decision(booking_id, illegal, None)], now + timedelta(minutes=5), now)
            assert _row(booking_id)[:2] == (BookingStatus.PENDING, 1)  # rolled back: nothing moved

        with UnitOfWork() as uow:  # the legal move, so the refusals above could have been otherwise
            assert uow.lock_shows([show_id])[show_id].hold(2)
            uow.lock_pending(show_id, 10)
            apply_reservations([Decision(booking_id, BookingStatus.CONFIRMED, None)], now + timedelta(minutes=5), now)
            uow.commit()
        assert _row(booking_id) == (BookingStatus.CONFIRMED, 2, BookingStatus.CONFIRMED, 2)  # projected by the commit

        with UnitOfWork() as uow:  # a CONFIRMED booking cannot be decided again, not even to CONFIRMED
            uow.lock_shows([show_id])
            with pytest.raises(IllegalMove):
                apply_reservations([Decision(booking_id, BookingStatus.CONFIRMED, None)], now, now)
        assert _row(booking_id)[:2] == (BookingStatus.CONFIRMED, 2)
        db.session.remove()


def test_locks_are_taken_shows_first_and_seats_change_only_under_the_show_lock(app, pending):
    show_id, booking_id = pending
    with app.app_context():
        with UnitOfWork() as uow:
            uow.lock_bookings([booking_id])
            with pytest.raises(LockOrderError, match="before bookings"):
                uow.lock_shows([show_id])
        with UnitOfWork() as uow:
            with pytest.raises(LockOrderError, match="under the show's lock"):
                uow.lock_pending(show_id, 10)
        with UnitOfWork():
            show = get_show(show_id)  # read, not locked
            with pytest.raises(SeatsUnlocked):
                show.hold(1)
        with UnitOfWork() as uow:  # locked: the same change is allowed (and rolled back)
            assert uow.lock_shows([show_id])[show_id].hold(1)
        with UnitOfWork() as uow:
            uow.lock_shows([show_id])
            uow.commit()
        with UnitOfWork():  # the lock ended with its transaction, and so did the permission
            with pytest.raises(SeatsUnlocked):
                get_show(show_id).hold(1)
        assert get_show(show_id).remaining == 5
        db.session.remove()


def test_the_commit_projects_what_changed_and_a_rollback_forgets_it(app, pending):
    _, booking_id = pending
    with app.app_context():
        with UnitOfWork() as uow:
            booking = uow.lock_booking(booking_id)
            booking.request_cancel()
            booking.ticket.void()  # two moves in one transaction: the version goes up once
        assert _row(booking_id) == (BookingStatus.PENDING, 1, BookingStatus.PENDING, 1)  # left without commit

        with UnitOfWork() as uow:
            booking = uow.lock_booking(booking_id)
            booking.request_cancel()
            booking.ticket.void()
            uow.commit()  # no project() anywhere: the unit of work does it
        assert _row(booking_id) == (BookingStatus.CANCELLED, 2, BookingStatus.CANCELLED, 2)
        entry = db.session.scalar(select(MyPageEntry).where(MyPageEntry.booking_id == booking_id))
        assert entry.ticket_status == "VOID"
        db.session.remove()
