"""The status of each aggregate (booking, payment, ticket), in one module that imports none of them.

Bookings, payments and tickets each read the others' statuses; keeping the enums here lets each
model module import them without importing the other models (no import cycle).
"""
from enum import StrEnum


class BookingStatus(StrEnum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    PAID = "PAID"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"


FINAL_STATUSES = frozenset({
    BookingStatus.PAID, BookingStatus.REJECTED, BookingStatus.PAYMENT_FAILED,
    BookingStatus.EXPIRED, BookingStatus.CANCELLED,
})


class PaymentStatus(StrEnum):
    NONE = "NONE"
    PENDING = "PENDING"
    PAID = "PAID"
    DECLINED = "DECLINED"
    REFUNDING = "REFUNDING"
    REFUNDED = "REFUNDED"


class TicketStatus(StrEnum):
    NOT_ISSUABLE = "NOT_ISSUABLE"
    ISSUABLE = "ISSUABLE"
    ISSUED = "ISSUED"
    VOID = "VOID"
