"""The door's rules (models/checkins.py, models/checkin_keys.py), without a server: who a scan
lets in online and offline, and which of two offline scans of one ticket came first."""
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from models.checkin_keys import CheckinKey, _new_key_row
from models.checkins import CheckinRefused, check_in_offline, check_in_online, scan_order
from models.errors import Conflict
from models.lifecycles import BookingStatus, PaymentStatus, TicketStatus
from tests.unit.test_booking_rules import NOW, a_booking


def an_issued_booking():
    booking = a_booking(status=BookingStatus.PAID, payment_status=PaymentStatus.PAID,
                        ticket_status=TicketStatus.ISSUABLE)
    booking.show_id = "s1"
    booking.ticket.issue(payment_paid=True)
    return booking


def claims_of(booking):
    return booking.ticket.claims()


def test_an_issued_ticket_is_admitted_online_once_then_already_checked_in():
    booking = an_issued_booking()
    answer = check_in_online(booking, claims_of(booking), NOW, "north")
    assert answer["result"] == "ADMITTED" and answer["checked_in_at"] == NOW and answer["qty"] == 2
    assert booking.ticket.status == TicketStatus.CHECKED_IN
    with pytest.raises(CheckinRefused) as refused:
        check_in_online(booking, claims_of(booking), NOW + timedelta(seconds=1), "south")
    assert refused.value.details == {"result": "ALREADY_CHECKED_IN", "tid": booking.ticket.tid,
                                     "first_checked_in_at": NOW.isoformat(), "gate": "north"}
    assert booking.ticket.checkin_gate == "north"


@pytest.mark.parametrize("change", ["void", "refunded", "other ticket"])
def test_a_void_refunded_or_replaced_ticket_is_void_online_and_offline(change):
    booking = an_issued_booking()
    claims = claims_of(booking)
    if change == "void":
        booking.ticket.void()
    elif change == "refunded":
        booking.payment.status = PaymentStatus.REFUNDED  # set up as found, not moved: the ticket is not void
    else:
        claims = {**claims, "tid": "another"}
    with pytest.raises(CheckinRefused) as refused:
        check_in_online(booking, claims, NOW, None)
    assert refused.value.details["result"] == "VOID"
    assert check_in_offline(booking, claims, NOW, "east")["result"] == "VOID"
    assert booking.ticket.status != TicketStatus.CHECKED_IN


def test_offline_the_earliest_scan_wins_whatever_order_they_arrive_in():
    booking = an_issued_booking()
    claims = claims_of(booking)
    later, earlier = (NOW + timedelta(minutes=5), "east"), (NOW, "west")
    assert check_in_offline(booking, claims, *later)["result"] == "ADMITTED"
    # A scan from before the record (a gate that uploads late) becomes the record.
    assert check_in_offline(booking, claims, *earlier)["result"] == "ADMITTED"
    assert (booking.ticket.checked_in_at, booking.ticket.checkin_gate) == earlier
    duplicate = check_in_offline(booking, claims, *later)
    assert duplicate == {"result": "DUPLICATE", "tid": booking.ticket.tid, "first_checked_in_at": NOW, "gate": "west"}
    # The scan on record, uploaded again: admitted again, nothing moves.
    assert check_in_offline(booking, claims, *earlier)["result"] == "ADMITTED"
    assert booking.ticket.checked_in_at == NOW


def test_two_scans_at_the_same_moment_are_ordered_by_gate():
    assert scan_order(NOW, "a") < scan_order(NOW, "b") < scan_order(NOW + timedelta(microseconds=1), "a")
    assert scan_order(NOW, None) < scan_order(NOW, "a")


def test_a_checked_in_ticket_cannot_be_cancelled():
    booking = an_issued_booking()
    booking.ticket.ensure_cancellable()
    booking.ticket.check_in(NOW, None)
    with pytest.raises(Conflict, match="checked in"):
        booking.ticket.ensure_cancellable()


def test_a_ticket_signed_with_a_show_key_verifies_with_its_jwk_alone():
    booking = an_issued_booking()
    key = CheckinKey(**_new_key_row("s1"))
    booking.ticket.sign(key)
    header = jwt.get_unverified_header(booking.ticket.qr)
    assert header["alg"] == "EdDSA" and header["kid"] == key.kid
    assert jwt.decode(booking.ticket.qr, jwt.PyJWK(key.jwk()).key, algorithms=["EdDSA"]) == claims_of(booking)
    other = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(booking.ticket.qr, other, algorithms=["EdDSA"])
    # Ed25519 signatures are deterministic: signing the same ticket again gives the same QR.
    qr = booking.ticket.qr
    booking.ticket.sign(key)
    assert booking.ticket.qr == qr
