"""SPEC §11 rules on plain objects: what a part of a booking costs and leaves, what a booking keeps
of its charge, what a cancelled show does to each live booking, and the money check's view."""
from datetime import timedelta

import pytest

from models.bookings import BookingStatus
from models.consistency import expected_balance, fee_agrees, refund_shown
from models.errors import Conflict, InvalidInput
from models.lifecycles import BOOKING, IllegalMove, PaymentStatus, TicketStatus
from models.payments import Payment, may_keep, settle_part_refund
from tests.unit.test_booking_rules import NOW, a_booking, a_show

KOREAN = [{"hours_before": 168, "fee_percent": 0}, {"hours_before": 72, "fee_percent": 10},
          {"hours_before": 24, "fee_percent": 20}, {"hours_before": 0, "fee_percent": 30}]


def paid(qty=4, policy=KOREAN, starts_in=timedelta(hours=50), ticket=TicketStatus.ISSUED):
    show = a_show(capacity=10, starts_in=starts_in)
    show.cancellation_policy = policy
    show.hold(qty)
    booking = a_booking(status=BookingStatus.PAID, qty=qty, show=show, payment_status=PaymentStatus.PAID,
                        ticket_status=ticket, seats_held=True)
    return booking


def test_a_part_goes_back_with_its_fee_and_the_booking_stays_paid_for_the_rest():
    booking = paid(qty=4)  # 4,000; 50 hours before: 20%
    old_ticket = booking.ticket
    owed = booking.cancel_part(qty=1, now=NOW)
    assert (booking.status, booking.qty, booking.amount, booking.cancellation_fee) == (BookingStatus.PAID, 3, 3000, 200)
    assert owed == 800 == booking.refund_owed and booking.keeps == 3200
    assert booking.show.remaining == 7
    assert old_ticket.status == TicketStatus.VOID and old_ticket.superseded_at == NOW
    assert booking.ticket is not old_ticket and booking.ticket.status == TicketStatus.ISSUABLE
    # The refund went through: the booking shows it, and owes nothing more.
    settle_part_refund(booking, booking.keeps)
    assert (booking.refunded_amount, booking.refund_owed) == (800, 0)
    # A second part adds its own fee; the whole rest after that adds the rest's.
    assert booking.cancel_part(qty=2, now=NOW) == 1600
    assert booking.request_cancel(NOW) and booking.cancellation_fee == 200 + 400 + 200


@pytest.mark.parametrize("qty", [0, 4, 5, -1])
def test_a_part_that_is_none_or_all_of_the_booking_is_refused_and_changes_nothing(qty):
    booking = paid(qty=4)
    with pytest.raises(InvalidInput):
        booking.cancel_part(qty=qty, now=NOW)
    assert (booking.qty, booking.amount, booking.cancellation_fee, booking.show.remaining) == (4, 4000, 0, 6)
    assert booking.ticket.status == TicketStatus.ISSUED


def test_seats_are_not_a_part_of_a_general_booking():
    with pytest.raises(InvalidInput):
        paid().cancel_part(seats=["1-1-1"], now=NOW)


@pytest.mark.parametrize("status", [s for s in BookingStatus if s != BookingStatus.PAID])
def test_only_a_paid_booking_has_a_part_to_give_back(status):
    assert not BOOKING.allows("cancel_part", status)
    booking = a_booking(status=status, qty=3, show=a_show(), seats_held=status in ("CONFIRMED", "CANCELLING"))
    with pytest.raises(IllegalMove):
        booking.cancel_part(qty=1, now=NOW)


def test_a_checked_in_ticket_or_a_started_show_gives_nothing_back():
    with pytest.raises(Conflict, match="checked in"):
        booking = paid(ticket=TicketStatus.CHECKED_IN)
        booking.ticket.checked_in_at = NOW
        booking.cancel_part(qty=1, now=NOW)
    with pytest.raises(Conflict, match="started"):
        paid(starts_in=timedelta(hours=-1)).cancel_part(qty=1, now=NOW)


@pytest.mark.parametrize("status,withdrawn", [(BookingStatus.PENDING, True), (BookingStatus.CONFIRMED, False),
                                              (BookingStatus.PAID, False)])
def test_a_cancelled_show_cancels_each_live_booking_in_full_without_a_fee(status, withdrawn):
    show = a_show(capacity=10)
    show.cancellation_policy = KOREAN
    show.cancelled_at = NOW
    booking = a_booking(status=status, show=show, seats_held=status != BookingStatus.PENDING,
                        payment_status=PaymentStatus.PAID if status == BookingStatus.PAID else PaymentStatus.NONE,
                        ticket_status=TicketStatus.CHECKED_IN if status == BookingStatus.PAID else TicketStatus.NOT_ISSUABLE)
    assert booking.cancel_with_show() is not withdrawn
    assert booking.status == (BookingStatus.CANCELLED if withdrawn else BookingStatus.CANCELLING)
    assert booking.cancelled_with_show and booking.ticket.status == TicketStatus.VOID
    assert booking.cancellation_fee == 0 and show.cancellation_fee(1000, NOW) == 0
    assert not show.sales_open(NOW) and show.status == "CANCELLED"


@pytest.mark.parametrize("status", [BookingStatus.CANCELLING, BookingStatus.CANCELLED, BookingStatus.REJECTED,
                                    BookingStatus.EXPIRED, BookingStatus.PAYMENT_FAILED])
def test_a_cancelled_show_leaves_a_booking_that_is_not_live_as_it_is(status):
    booking = a_booking(status=status, show=a_show(), seats_held=status == BookingStatus.CANCELLING)
    booking.cancellation_fee = 300 if status != BookingStatus.REJECTED else 0
    fee = booking.cancellation_fee
    assert booking.cancel_with_show() is False
    assert booking.status == status and booking.cancellation_fee == fee and not booking.cancelled_with_show


def test_a_paid_booking_whose_part_went_back_keeps_its_amount_and_fees_of_its_own_charge():
    assert may_keep(BookingStatus.PAID, "ch", "ch", 4000, 200, 3000) == 3200
    assert may_keep(BookingStatus.PAID, "ch", "other", 4000, 200, 3000) == 0
    assert expected_balance(BookingStatus.PAID, 3000, 200) == 3200


def test_a_fee_may_exceed_what_is_left_but_never_what_was_charged():
    assert fee_agrees(BookingStatus.PAID, 4000, 3000)  # three of four seats back at 100%
    assert not fee_agrees(BookingStatus.PAID, 4000, 4001)


def test_a_booking_shows_what_its_refunds_gave_back():
    assert refund_shown(BookingStatus.PAID, PaymentStatus.PAID, 4000, 3000, 200, 800)
    assert not refund_shown(BookingStatus.PAID, PaymentStatus.PAID, 4000, 3000, 200, 0)  # the part's refund is due
    assert refund_shown(BookingStatus.PAID, PaymentStatus.PAID, 4000, 4000, 0, 0)
    assert refund_shown(BookingStatus.CANCELLED, PaymentStatus.REFUNDED, 4000, 1000, 800, 3200)
    assert not refund_shown(BookingStatus.CANCELLED, PaymentStatus.REFUNDED, 4000, 1000, 800, 200)


def test_each_target_of_a_refund_has_its_own_key():
    assert Payment.refund_key("ch_1") == Payment.refund_key("ch_1", 0) == "refund:ch_1"
    assert len({Payment.refund_key("ch_1", keep) for keep in (0, 200, 3200)}) == 3
