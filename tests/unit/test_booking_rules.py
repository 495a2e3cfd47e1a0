"""Domain rules of the booking lifecycle, with no I/O: plain objects, no database."""
from datetime import datetime, timedelta, timezone

import pytest

from models.bookings import MAX_QTY, Booking, BookingStatus, reserve_in_seq_order
from models.errors import Conflict
from models.payments import ChargeOutcome, Payment, PaymentStatus, settle_charge, settle_refund
from models.shows import Show
from models.tickets import Ticket, TicketStatus

NOW = datetime(2030, 1, 1, 12, tzinfo=timezone.utc)


def a_show(capacity=10, starts_in=timedelta(days=10)):
    return Show(title="T", venue="V", starts_at=NOW + starts_in, price=1000, capacity=capacity)


def a_booking(status=BookingStatus.PENDING, qty=2, show=None, payment_status=PaymentStatus.NONE,
              ticket_status=TicketStatus.NOT_ISSUABLE, seats_held=False):
    booking = Booking(id="b1", qty=qty, amount=qty * 1000, status=status, version=1, seats_held=seats_held,
                      payment_method="tok_ok")
    booking.show = show or a_show()
    booking.payment = Payment(booking_id="b1", amount=booking.amount, status=payment_status)
    booking.ticket = Ticket(booking_id="b1", status=ticket_status)
    return booking


def test_a_new_show_has_all_its_seats_remaining():
    assert a_show(capacity=7).remaining == 7


def test_holding_more_seats_than_remain_takes_none():
    show = a_show(capacity=3)
    assert not show.hold(4)
    assert show.remaining == 3
    assert show.hold(3) and show.remaining == 0
    assert not show.hold(1)


def test_releasing_more_than_held_is_refused():
    show = a_show(capacity=3)
    show.hold(1)
    with pytest.raises(Conflict):
        show.release(2)


def test_capacity_cannot_drop_below_seats_held():
    show = a_show(capacity=10)
    show.hold(6)
    with pytest.raises(Conflict):
        show.change_capacity(5)
    show.change_capacity(8)
    assert (show.capacity, show.remaining) == (8, 2)


def test_bookings_are_decided_in_seq_order_and_a_later_one_never_takes_refused_seats():
    show = a_show(capacity=5)
    decisions = reserve_in_seq_order(show, [("a", 2), ("b", 4), ("c", 3), ("d", 1)], NOW)
    assert [(d.id, d.status, d.holds_seats) for d in decisions] == [
        ("a", BookingStatus.CONFIRMED, True), ("b", BookingStatus.REJECTED, False),
        ("c", BookingStatus.CONFIRMED, True), ("d", BookingStatus.REJECTED, False)]
    assert decisions[1].reason == "not enough seats" and show.remaining == 0


def test_once_sales_close_every_pending_booking_is_refused_and_no_seat_is_taken():
    show = a_show(capacity=5, starts_in=timedelta(0))
    decisions = reserve_in_seq_order(show, [("a", 1), ("b", 1)], NOW)
    assert {d.status for d in decisions} == {BookingStatus.REJECTED} and show.remaining == 5
    assert decisions[0].reason == "sales for this show are closed"


@pytest.mark.parametrize("move", ["mark_paid", "fail_payment", "expire", "finish_cancel"])
def test_a_pending_booking_cannot_skip_ahead(move):
    with pytest.raises(Conflict):
        getattr(a_booking(), move)()


def test_cancelling_a_pending_booking_is_final_at_once():
    booking = a_booking()
    assert booking.request_cancel(NOW) is False
    assert booking.status == BookingStatus.CANCELLED


@pytest.mark.parametrize("status", [BookingStatus.CONFIRMED, BookingStatus.PAID])
def test_cancelling_a_booking_with_seats_needs_a_refund_and_release(status):
    booking = a_booking(status=status, seats_held=True)
    assert booking.request_cancel(NOW) is True
    assert booking.status == BookingStatus.CANCELLING and booking.seats_held


@pytest.mark.parametrize("status", [BookingStatus.CANCELLING, BookingStatus.CANCELLED])
def test_repeating_a_cancel_is_harmless(status):
    booking = a_booking(status=status)
    assert booking.request_cancel(NOW) is False
    assert booking.status == status and booking.version == 1


@pytest.mark.parametrize("status", [BookingStatus.REJECTED, BookingStatus.PAYMENT_FAILED, BookingStatus.EXPIRED])
def test_a_booking_that_never_got_seats_cannot_be_cancelled(status):
    with pytest.raises(Conflict):
        a_booking(status=status).request_cancel(NOW)


def test_nothing_can_be_cancelled_once_the_show_started():
    booking = a_booking(status=BookingStatus.PAID, show=a_show(starts_in=-timedelta(minutes=1)))
    with pytest.raises(Conflict):
        booking.request_cancel(NOW)


def test_max_qty_is_ten():
    assert MAX_QTY == 10


def test_a_ticket_is_issued_only_when_issuable_and_paid():
    ticket = Ticket(status=TicketStatus.NOT_ISSUABLE)
    with pytest.raises(Conflict):
        ticket.issue(payment_paid=True)
    assert ticket.make_issuable()
    with pytest.raises(Conflict):
        ticket.issue(payment_paid=False)
    assert ticket.issue(payment_paid=True)
    code = ticket.code
    assert ticket.issue(payment_paid=True) is False and ticket.code == code  # same ticket again


def test_a_void_ticket_never_becomes_issuable_again():
    ticket = Ticket(status=TicketStatus.ISSUABLE)
    ticket.void()
    assert not ticket.make_issuable()
    with pytest.raises(Conflict):
        ticket.issue(payment_paid=True)


def test_a_captured_charge_pays_a_confirmed_booking():
    booking = a_booking(status=BookingStatus.CONFIRMED, payment_status=PaymentStatus.PENDING, seats_held=True)
    assert settle_charge(booking, "ch_1", captured=True) == ChargeOutcome.PAID
    assert booking.status == BookingStatus.PAID and booking.payment.status == PaymentStatus.PAID


def test_a_declined_charge_fails_the_booking_and_returns_its_seats():
    show = a_show(capacity=5)
    show.hold(2)
    booking = a_booking(status=BookingStatus.CONFIRMED, payment_status=PaymentStatus.PENDING, show=show, seats_held=True)
    assert settle_charge(booking, "ch_1", captured=False) == ChargeOutcome.DECLINED
    assert booking.status == BookingStatus.PAYMENT_FAILED and not booking.seats_held
    assert show.remaining == 5 and booking.payment.status == PaymentStatus.DECLINED


def test_a_capture_landing_after_a_cancel_is_refunded():
    booking = a_booking(status=BookingStatus.CANCELLING, payment_status=PaymentStatus.PENDING, seats_held=True)
    assert settle_charge(booking, "ch_1", captured=True) == ChargeOutcome.LATE_CAPTURE
    assert booking.payment.status == PaymentStatus.REFUNDING


def test_the_same_charge_settled_twice_changes_nothing():
    booking = a_booking(status=BookingStatus.CONFIRMED, payment_status=PaymentStatus.PENDING, seats_held=True)
    settle_charge(booking, "ch_1", captured=True)
    version = booking.version
    assert settle_charge(booking, "ch_1", captured=True) == ChargeOutcome.ALREADY_SETTLED
    assert booking.status == BookingStatus.PAID and booking.version == version


def test_a_finished_refund_cancels_the_booking_and_returns_its_seats():
    show = a_show(capacity=4)
    show.hold(2)
    booking = a_booking(status=BookingStatus.CANCELLING, payment_status=PaymentStatus.REFUNDING, show=show,
                        ticket_status=TicketStatus.VOID, seats_held=True)
    booking.payment.charge_id = "ch_1"
    settle_refund(booking, captured_any=True)
    assert booking.status == BookingStatus.CANCELLED and not booking.seats_held
    assert booking.payment.status == PaymentStatus.REFUNDED and show.remaining == 4


def test_a_cancel_before_any_capture_leaves_no_payment():
    booking = a_booking(status=BookingStatus.CANCELLING, payment_status=PaymentStatus.REFUNDING, seats_held=True)
    booking.show.hold(2)
    settle_refund(booking, captured_any=False)
    assert booking.payment.status == PaymentStatus.NONE and booking.status == BookingStatus.CANCELLED


def test_a_charge_request_is_on_record_once_started():
    payment = Payment(status=PaymentStatus.NONE)
    assert not payment.charge_requested
    payment.start_charge()
    assert payment.charge_requested and payment.status == PaymentStatus.PENDING


KOREAN_POLICY = [{"hours_before": 168, "fee_percent": 0}, {"hours_before": 72, "fee_percent": 10},
                 {"hours_before": 24, "fee_percent": 20}, {"hours_before": 0, "fee_percent": 30}]


def a_show_with_policy(starts_in):
    show = a_show(starts_in=starts_in)
    show.cancellation_policy = KOREAN_POLICY
    return show


@pytest.mark.parametrize("starts_in, fee", [(timedelta(days=8), 0), (timedelta(days=4), 200),
                                            (timedelta(hours=30), 400), (timedelta(hours=2), 600)])
def test_cancelling_a_paid_booking_fixes_its_fee_from_the_policy_at_the_request(starts_in, fee):
    booking = a_booking(status=BookingStatus.PAID, payment_status=PaymentStatus.PAID, seats_held=True,
                        show=a_show_with_policy(starts_in))
    assert booking.request_cancel(NOW) is True
    assert booking.cancellation_fee == fee and booking.refunded_amount == 0
    booking.show.cancellation_policy = None  # a later change of the policy: the fee stays
    assert booking.request_cancel(NOW) is False and booking.cancellation_fee == fee


@pytest.mark.parametrize("status", [BookingStatus.PENDING, BookingStatus.CONFIRMED])
def test_cancelling_before_the_payment_was_captured_costs_nothing(status):
    booking = a_booking(status=status, seats_held=status == BookingStatus.CONFIRMED,
                        show=a_show_with_policy(timedelta(hours=2)))
    booking.request_cancel(NOW)
    assert booking.cancellation_fee == 0


def test_a_finished_refund_records_what_it_gave_back_less_the_fee():
    show = a_show(capacity=4)
    show.hold(2)
    booking = a_booking(status=BookingStatus.CANCELLING, payment_status=PaymentStatus.REFUNDING, show=show,
                        ticket_status=TicketStatus.VOID, seats_held=True)
    booking.payment.charge_id, booking.cancellation_fee = "ch_1", 600
    settle_refund(booking, captured_any=True)
    assert (booking.status, booking.cancellation_fee, booking.refunded_amount) == (BookingStatus.CANCELLED, 600, 1400)


def test_a_booking_starts_with_no_fee_and_nothing_refunded():
    booking = a_booking()
    assert (booking.cancellation_fee, booking.refunded_amount) == (0, 0)
