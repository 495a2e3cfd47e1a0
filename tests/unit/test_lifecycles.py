"""The three lifecycles (models/lifecycles.py): every move each aggregate's methods make is one
the table allows, and every move it does not allow is refused, whatever the status."""
import pytest

from models.errors import Conflict
from models.lifecycles import (
    BOOKING, PAYMENT, TICKET, BookingStatus, IllegalMove, Lifecycle, PaymentStatus, TicketStatus,
)
from tests.unit.test_booking_rules import NOW, a_booking, a_show


def test_a_lifecycle_refuses_a_move_from_a_status_it_does_not_start_from():
    life = Lifecycle("door", "SHUT", {"open": ({"SHUT"}, "OPEN")})
    assert life.target("open", "SHUT") == "OPEN"
    with pytest.raises(IllegalMove, match="door is OPEN: it cannot open"):
        life.target("open", "OPEN")
    assert life.pairs("open") == [("SHUT", "OPEN")]


def test_every_status_named_by_a_lifecycle_is_a_status_of_its_aggregate():
    for life, statuses in ((BOOKING, BookingStatus), (PAYMENT, PaymentStatus), (TICKET, TicketStatus)):
        named = {life.initial} | {target for _, target in life.moves.values()}
        named |= {source for sources, _ in life.moves.values() for source in sources}
        assert named <= set(statuses), life.name
        # Every status but the initial one is reached by some move.
        assert set(statuses) - {target for _, target in life.moves.values()} <= {life.initial}, life.name


# Each guarded method, the event it is, and how to call it on a fresh booking of a given status.
BOOKING_METHODS = {
    "pay": lambda booking: booking.mark_paid(),
    "fail_payment": lambda booking: booking.fail_payment(),
    "expire": lambda booking: booking.expire(),
    "finish_cancel": lambda booking: booking.finish_cancel(),
}


@pytest.mark.parametrize("event", sorted(BOOKING_METHODS))
@pytest.mark.parametrize("status", list(BookingStatus))
def test_a_booking_moves_only_as_its_lifecycle_allows(event, status):
    show = a_show(capacity=10)
    show.hold(2)
    booking = a_booking(status=status, show=show, seats_held=status in ("CONFIRMED", "PAID", "CANCELLING"))
    version = booking.version
    if BOOKING.allows(event, status):
        BOOKING_METHODS[event](booking)
        assert booking.status == BOOKING.moves[event][1] and booking.version == version + 1
    else:
        with pytest.raises(IllegalMove):
            BOOKING_METHODS[event](booking)
        assert booking.status == status and booking.version == version


@pytest.mark.parametrize("status", list(BookingStatus))
def test_a_cancel_is_a_withdrawal_a_start_or_refused(status):
    booking = a_booking(status=status, show=a_show(), seats_held=status in ("CONFIRMED", "PAID", "CANCELLING"))
    if status in (BookingStatus.CANCELLING, BookingStatus.CANCELLED):
        assert booking.request_cancel(NOW) is False and booking.status == status  # repeating it is harmless
    elif BOOKING.allows("withdraw", status):
        assert booking.request_cancel(NOW) is False and booking.status == BookingStatus.CANCELLED
    elif BOOKING.allows("start_cancel", status):
        assert booking.request_cancel(NOW) is True and booking.status == BookingStatus.CANCELLING
    else:
        with pytest.raises(Conflict):  # rejected, failed, expired: nothing to cancel
            booking.request_cancel(NOW)
        assert booking.status == status


PAYMENT_METHODS = {
    "start_charge": lambda payment: payment.start_charge(),
    "capture": lambda payment: payment.capture("ch_1"),
    "capture_late": lambda payment: payment.capture("ch_1", wanted=False),
    "decline": lambda payment: payment.decline(),
    "start_refund": lambda payment: payment.start_refund(),
    "refund_done": lambda payment: payment.settle_refund(captured_any=True),
}


@pytest.mark.parametrize("event", sorted(PAYMENT_METHODS))
@pytest.mark.parametrize("status", list(PaymentStatus))
def test_a_payment_moves_only_as_its_lifecycle_allows(event, status):
    booking = a_booking(status=BookingStatus.CONFIRMED, payment_status=status)
    if PAYMENT.allows(event, status):
        PAYMENT_METHODS[event](booking.payment)
        assert booking.payment.status == PAYMENT.moves[event][1]
    else:
        with pytest.raises(IllegalMove):
            PAYMENT_METHODS[event](booking.payment)
        assert booking.payment.status == status


@pytest.mark.parametrize("status", list(PaymentStatus))
def test_nothing_taken_leaves_a_declined_payment_declined_and_moves_the_rest_as_allowed(status):
    payment = a_booking(payment_status=status).payment
    if status == PaymentStatus.DECLINED:
        payment.settle_refund(captured_any=False)
        assert payment.status == PaymentStatus.DECLINED
    elif PAYMENT.allows("nothing_taken", status):
        payment.settle_refund(captured_any=False)
        assert payment.status == PaymentStatus.NONE
    else:
        with pytest.raises(IllegalMove):
            payment.settle_refund(captured_any=False)


@pytest.mark.parametrize("status", list(TicketStatus))
def test_a_ticket_moves_only_as_its_lifecycle_allows(status):
    ticket = a_booking(ticket_status=status).ticket
    assert ticket.make_issuable() is TICKET.allows("make_issuable", status)  # past it: a no-op, not a move
    ticket = a_booking(ticket_status=status).ticket
    if status in (TicketStatus.ISSUED, TicketStatus.CHECKED_IN):
        assert ticket.issue(payment_paid=True) is False  # issuing again returns the same ticket
    elif TICKET.allows("issue", status):
        assert ticket.issue(payment_paid=True) is True and ticket.status == TicketStatus.ISSUED
    else:
        with pytest.raises(IllegalMove):
            ticket.issue(payment_paid=True)
        assert ticket.status == status
    ticket = a_booking(ticket_status=status).ticket
    if TICKET.allows("check_in", status):
        ticket.check_in(NOW, "gate")
        assert ticket.status == TicketStatus.CHECKED_IN
    else:
        with pytest.raises(IllegalMove):
            ticket.check_in(NOW, "gate")
        assert ticket.status == status
    ticket = a_booking(ticket_status=status).ticket
    if status == TicketStatus.CHECKED_IN:  # used at the door: never void
        with pytest.raises(IllegalMove):
            ticket.void()
        assert ticket.status == status
    else:
        ticket.void()
        assert ticket.status == TicketStatus.VOID


def test_a_move_of_a_payment_or_ticket_is_shown_by_its_booking():
    booking = a_booking(status=BookingStatus.CONFIRMED)
    version = booking.version
    booking.payment.start_charge()
    assert booking.version == version + 1
    booking.ticket.void()
    booking.ticket.void()  # already void: no move, nothing new to show
    assert booking.version == version + 2

