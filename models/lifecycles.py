"""The lifecycle of each aggregate (booking, payment, ticket): its statuses and every move it may
make, declared once, in one module that imports none of the models.

Each `Lifecycle` is a table: event -> (the statuses it may start from, the status it leads to).
The models' guarded methods move through it (`Booking.mark_paid` is the `pay` event), and so does
the set-based SQL that decides a reservation batch: it applies only the (from, to) pairs the
booking lifecycle allows (`Lifecycle.pairs`). A move the table does not allow raises
`IllegalMove`, a Conflict, whichever path asked for it. docs/lifecycle.md draws the three.
"""
from enum import StrEnum

from models.errors import Conflict


class IllegalMove(Conflict):
    """A move its lifecycle does not allow from the current status."""


class Lifecycle:
    """The statuses of one aggregate and the moves between them."""

    def __init__(self, name: str, initial: str, moves: dict[str, tuple[set[str], str]]):
        self.name = name
        self.initial = initial
        self.moves = {event: (frozenset(sources), target) for event, (sources, target) in moves.items()}

    def target(self, event: str, current: str) -> str:
        """The status `event` leads to from `current`; IllegalMove if it may not start there."""
        sources, target = self.moves[event]
        if current not in sources:
            raise IllegalMove(f"{self.name} is {current}: it cannot {event.replace('_', ' ')} (to {target})")
        return target

    def allows(self, event: str, current: str) -> bool:
        return current in self.moves[event][0]

    def sources(self, event: str) -> frozenset[str]:
        return self.moves[event][0]

    def pairs(self, *events: str) -> list[tuple[str, str]]:
        """The (from, to) pairs of these events, for SQL that moves many rows in one statement."""
        return sorted({(source, self.moves[event][1]) for event in events for source in self.moves[event][0]})


class MovesByLifecycle:
    """A model whose `status` changes only by its lifecycle's moves (`lifecycle`, a class attribute).
    `_moved` says what else a move means (the booking's version goes up, say)."""

    lifecycle: Lifecycle

    def _move(self, event: str) -> None:
        target = self.lifecycle.target(event, self.status)
        if target != self.status:  # a move to where it already is (void a void ticket) is no change
            self.status = target
            self._moved()
            self._announce(event)

    def _moved(self) -> None:
        raise NotImplementedError

    def _announce(self, event: str) -> None:
        """Note the move's event for partners and mail, if they hear of it (models/events.py)."""


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

B = BookingStatus
BOOKING = Lifecycle("booking", B.PENDING, {
    "confirm": ({B.PENDING}, B.CONFIRMED),               # seats held (reservation step)
    "reject": ({B.PENDING}, B.REJECTED),                 # not enough seats, sales closed
    "pay": ({B.CONFIRMED}, B.PAID),                      # charge captured
    "fail_payment": ({B.CONFIRMED}, B.PAYMENT_FAILED),   # charge declined: seats back
    "expire": ({B.CONFIRMED}, B.EXPIRED),                # hold deadline passed: seats back
    "withdraw": ({B.PENDING}, B.CANCELLED),              # cancelled before any seat was held
    "start_cancel": ({B.CONFIRMED, B.PAID}, B.CANCELLING),
    # Part of a paid booking given back (SPEC §11): still PAID, for fewer seats.
    "cancel_part": ({B.PAID}, B.PAID),
    "finish_cancel": ({B.CANCELLING}, B.CANCELLED),      # refund settled: seats back
})


class PaymentStatus(StrEnum):
    NONE = "NONE"
    PENDING = "PENDING"
    PAID = "PAID"
    DECLINED = "DECLINED"
    REFUNDING = "REFUNDING"
    REFUNDED = "REFUNDED"


P = PaymentStatus
PAYMENT = Lifecycle("payment", P.NONE, {
    # Asking again (a retry, with the same idempotency key) keeps it PENDING.
    "start_charge": ({P.NONE, P.PENDING}, P.PENDING),
    # From NONE: a free booking, paid without a gateway call.
    "capture": ({P.NONE, P.PENDING}, P.PAID),
    # A capture answered for a booking that moved on (cancelled, expired) while its charge was in
    # flight, even after its refund settled: the money goes back, so the payment is refunding.
    "capture_late": ({P.NONE, P.PENDING, P.REFUNDING, P.REFUNDED}, P.REFUNDING),
    # A decline answered late: the booking's refund may have settled it as NONE meanwhile. The
    # same answer delivered twice leaves it DECLINED.
    "decline": ({P.NONE, P.PENDING, P.REFUNDING, P.DECLINED}, P.DECLINED),
    # Money was, or may have been, taken for a booking that no longer wants it.
    "start_refund": ({P.PAID, P.PENDING}, P.REFUNDING),
    # The gateway holds none of the booking's money any more.
    "refund_done": ({P.PENDING, P.PAID, P.REFUNDING}, P.REFUNDED),
    "nothing_taken": ({P.PENDING, P.PAID, P.REFUNDING}, P.NONE),
})


class TicketStatus(StrEnum):
    NOT_ISSUABLE = "NOT_ISSUABLE"
    ISSUABLE = "ISSUABLE"
    ISSUED = "ISSUED"
    CHECKED_IN = "CHECKED_IN"
    VOID = "VOID"


T = TicketStatus
TICKET = Lifecycle("ticket", T.NOT_ISSUABLE, {
    "make_issuable": ({T.NOT_ISSUABLE}, T.ISSUABLE),     # payment captured
    "issue": ({T.ISSUABLE}, T.ISSUED),
    "check_in": ({T.ISSUED}, T.CHECKED_IN),              # admitted at the door (SPEC §10)
    # Cancelled or refunded. A CHECKED_IN ticket was used: its booking cannot be cancelled.
    "void": ({T.NOT_ISSUABLE, T.ISSUABLE, T.ISSUED, T.VOID}, T.VOID),
    # The show was cancelled (SPEC §11): all its tickets are void, used ones too.
    "void_with_show": ({T.NOT_ISSUABLE, T.ISSUABLE, T.ISSUED, T.CHECKED_IN, T.VOID}, T.VOID),
})



class QueueState(StrEnum):
    """A waiting room entry (SPEC §9). EXPIRED is no stored state: an ADMITTED entry whose session
    ran out reads as EXPIRED."""
    WAITING = "WAITING"
    ADMITTED = "ADMITTED"
    EXPIRED = "EXPIRED"
    LEFT = "LEFT"


Q = QueueState
QUEUE = Lifecycle("queue entry", Q.WAITING, {
    "admit": ({Q.WAITING}, Q.ADMITTED),          # its turn came (set-based, models/waiting_room.py)
    "leave": ({Q.WAITING, Q.ADMITTED, Q.LEFT}, Q.LEFT),
})

del B, P, T, Q
