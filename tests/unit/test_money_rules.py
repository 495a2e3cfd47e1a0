"""The money rules the refund step, the reconciliation job and the consistency check share."""
import pytest

from models.bookings import BookingStatus
from models.consistency import expected_balance
from models.payments import FREE_CHARGE_ID, Payment, PaymentStatus, should_hold


@pytest.mark.parametrize("status", list(BookingStatus))
def test_a_free_booking_should_hold_no_money_in_any_state(status):
    assert expected_balance(status, 0) == 0


def test_only_a_paid_booking_should_hold_its_amount():
    assert expected_balance(BookingStatus.PAID, 1200) == 1200
    for status in (BookingStatus.CANCELLED, BookingStatus.EXPIRED, BookingStatus.PAYMENT_FAILED,
                   BookingStatus.REJECTED):
        assert expected_balance(status, 1200) == 0


def test_a_paid_booking_keeps_only_its_own_charge():
    assert should_hold(BookingStatus.PAID, "ch_own", "ch_own") is True
    assert should_hold(BookingStatus.PAID, "ch_own", "ch_other") is False
    assert should_hold(BookingStatus.PAID, FREE_CHARGE_ID, "ch_any") is False  # a free booking keeps nothing


@pytest.mark.parametrize("status", [BookingStatus.CANCELLED, BookingStatus.EXPIRED, BookingStatus.PAYMENT_FAILED,
                                    BookingStatus.REJECTED])
def test_a_booking_in_any_other_final_state_keeps_no_capture(status):
    assert should_hold(status, "ch_own", "ch_own") is False


@pytest.mark.parametrize("status", [BookingStatus.PENDING, BookingStatus.CONFIRMED, BookingStatus.CANCELLING])
def test_a_capture_on_a_booking_not_final_yet_is_not_judged(status):
    assert should_hold(status, None, "ch_own") is None


def test_a_payment_of_zero_is_free():
    assert Payment(amount=0, status=PaymentStatus.NONE).free
    assert not Payment(amount=1, status=PaymentStatus.NONE).free
