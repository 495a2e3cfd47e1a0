"""The money rules the refund step, the reconciliation job and the consistency check share."""
import pytest

from models.bookings import BookingStatus
from models.consistency import expected_balance, fee_agrees
from models.payments import FREE_CHARGE_ID, Payment, PaymentStatus, may_keep


@pytest.mark.parametrize("status", list(BookingStatus))
def test_a_free_booking_should_hold_no_money_in_any_state(status):
    assert expected_balance(status, 0) == 0


def test_only_a_paid_booking_should_hold_its_amount():
    assert expected_balance(BookingStatus.PAID, 1200) == 1200
    for status in (BookingStatus.CANCELLED, BookingStatus.EXPIRED, BookingStatus.PAYMENT_FAILED,
                   BookingStatus.REJECTED):
        assert expected_balance(status, 1200) == 0


def test_a_cancelled_booking_should_hold_its_fee_and_a_paid_one_its_amount_plus_fee():
    assert expected_balance(BookingStatus.CANCELLED, 1200, 360) == 360
    assert expected_balance(BookingStatus.PAID, 1200, 0) == 1200
    assert expected_balance(BookingStatus.PAID, 800, 120) == 920  # once partial cancels exist
    for status in (BookingStatus.EXPIRED, BookingStatus.PAYMENT_FAILED, BookingStatus.REJECTED):
        assert expected_balance(status, 1200, 360) == 0  # a fee there is wrong: nothing is held


def test_a_fee_is_within_the_amount_and_only_on_a_cancel():
    assert fee_agrees(BookingStatus.CANCELLED, 1200, 1200)
    assert fee_agrees(BookingStatus.CANCELLED, 1200, 0)
    assert not fee_agrees(BookingStatus.CANCELLED, 1200, 1201)
    assert not fee_agrees(BookingStatus.CANCELLED, 1200, -1)
    for status in (BookingStatus.EXPIRED, BookingStatus.PAYMENT_FAILED, BookingStatus.REJECTED):
        assert fee_agrees(status, 1200, 0)
        assert not fee_agrees(status, 1200, 10)


def test_a_paid_booking_keeps_only_its_own_charge():
    assert may_keep(BookingStatus.PAID, "ch_own", "ch_own", 1200, 0, 1200) == 1200
    assert may_keep(BookingStatus.PAID, "ch_own", "ch_other", 1200, 0, 1200) == 0
    assert may_keep(BookingStatus.PAID, FREE_CHARGE_ID, "ch_any", 1200, 0, 1200) == 0  # a free booking keeps nothing


def test_a_cancelled_booking_keeps_its_fee_from_its_own_charge_only():
    assert may_keep(BookingStatus.CANCELLED, "ch_own", "ch_own", 1200, 360, 1200) == 360
    assert may_keep(BookingStatus.CANCELLED, "ch_own", "ch_own", 1200, 0, 1200) == 0
    assert may_keep(BookingStatus.CANCELLED, "ch_own", "ch_other", 1200, 360, 1200) == 0
    assert may_keep(BookingStatus.CANCELLED, "ch_own", "ch_own", 100, 360, 100) == 100  # never more than the charge


@pytest.mark.parametrize("status", [BookingStatus.CANCELLED, BookingStatus.EXPIRED, BookingStatus.PAYMENT_FAILED,
                                    BookingStatus.REJECTED])
def test_a_booking_in_any_other_final_state_keeps_no_capture(status):
    assert may_keep(status, "ch_own", "ch_own", 1200, 0, 1200) == 0


@pytest.mark.parametrize("status", [BookingStatus.PENDING, BookingStatus.CONFIRMED, BookingStatus.CANCELLING])
def test_a_capture_on_a_booking_not_final_yet_is_not_judged(status):
    assert may_keep(status, None, "ch_own", 1200, 0, 1200) is None


def test_a_payment_of_zero_is_free():
    assert Payment(amount=0, status=PaymentStatus.NONE).free
    assert not Payment(amount=1, status=PaymentStatus.NONE).free
