"""Bookings: record one, read it, cancel it, issue its ticket.

Each view parses, calls one use case (services/) and answers; the use case holds the rules.
"""
from functools import wraps

from flask import request, url_for
from flask.views import MethodView
from web.parsing import Blueprint, InvalidJSON, request_json
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from web.fields import Text

from models.bookings import MAX_QTY, get_customer_booking
from models.users import Role
from observability import note_booking
from services import booking as booking_service, cancel as cancel_service, tickets as ticket_service
from services.booking import booked_seats
from web.auth import BEARER, current_user_id, login_required, owner_filter
from web.errors import ErrorSchema, documented_errors
from web.ratelimit import limit_bookings

blp = Blueprint("bookings", __name__, url_prefix="/bookings", description="Booking seats, cancelling, issuing tickets")


class BookingRequestSchema(Schema):
    """General admission: qty. Reserved seating: seats (a pick) or qty and category (best available)."""
    show_id = Text(required=True, validate=validate.Length(min=1, max=36))
    qty = fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_QTY),
                         metadata={"description": "seats wanted (general admission, or best available with category)"})
    category = Text(validate=validate.Length(min=1, max=32),
                    metadata={"description": "reserved seating, best available: the category"})
    seats = fields.List(Text(validate=validate.Length(min=1, max=32)), validate=validate.Length(min=1, max=MAX_QTY),
                        metadata={"description": "reserved seating, a pick: the seat ids (all or nothing)"})
    payment_method = Text(required=True, validate=validate.Length(min=1, max=64))

    @validates_schema
    def _one_form(self, data, **_):
        if "seats" in data and ("qty" in data or "category" in data):
            raise ValidationError("either seats, or qty (with category for reserved seating)", "seats")
        if "seats" not in data and "qty" not in data:
            raise ValidationError("Missing data for required field.", "qty")
        if "seats" in data and len(set(data["seats"])) != len(data["seats"]):
            raise ValidationError("a seat is listed twice", "seats")


class CancelRequestSchema(Schema):
    """No body: the whole booking. `qty` (general admission) or `seats` (reserved): that part of a
    PAID booking (SPEC §11)."""
    qty = fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_QTY),
                         metadata={"description": "general admission: how many of the booking's seats to give back"})
    seats = fields.List(Text(validate=validate.Length(min=1, max=32)), validate=validate.Length(min=1, max=MAX_QTY),
                        metadata={"description": "reserved seating: which of the booking's seats to give back"})

    @validates_schema
    def _one_form(self, data, **_):
        if "seats" in data and "qty" in data:
            raise ValidationError("either qty or seats", "seats")
        if "seats" in data and len(set(data["seats"])) != len(data["seats"]):
            raise ValidationError("a seat is listed twice", "seats")


class BookedSeatSchema(Schema):
    id = fields.String()
    section = fields.String()
    row = fields.String()
    number = fields.Integer()
    category = fields.String()


class BookingHeadersSchema(Schema):
    # The header is a structured-field string (IETF httpapi Idempotency-Key draft): printable ASCII.
    idempotency_key = Text(data_key="Idempotency-Key", validate=[
        validate.Length(min=1, max=255),
        validate.Regexp(r"[\x20-\x7e]+\Z", error="must be printable ASCII characters")])
    admission_token = Text(data_key="Admission-Token", validate=validate.Length(min=1, max=2048), metadata={
        "description": "a show with a waiting room: the token GET /queue/{id} gave once admitted"})


class BookingSchema(Schema):
    id = fields.String()
    show_id = fields.String()
    qty = fields.Integer()
    amount = fields.Integer()
    cancellation_fee = fields.Integer(metadata={"description": "what cancelling cost, kept from the payment "
                                                               "(SPEC §11; 0 until something is cancelled)"})
    refunded_amount = fields.Integer(metadata={"description": "what the refund gave back (0 until then)"})
    status = fields.String()
    reject_reason = fields.String(allow_none=True, metadata={
        "description": "REJECTED: sold_out, seat_taken, no_adjacent_seats, limit_exceeded or sales_closed"})
    category = fields.String(allow_none=True)
    seats = fields.Method("_seats", metadata={"type": "array", "items": {"type": "object"}, "description":
                          "reserved seating, once CONFIRMED: [{id, section, row, number, category}]"})
    payment_status = fields.String()
    ticket_status = fields.String()
    created_at = fields.AwareDateTime(format="iso")
    updated_at = fields.AwareDateTime(format="iso")

    def _seats(self, booking):
        return booked_seats(booking)


class BookingRefusalSchema(ErrorSchema):
    reject_reason = fields.String(metadata={"description": "sold_out: refused at once, no booking recorded "
                                                           "(absent for the other conflicts)"})


class TicketBodySchema(Schema):
    code = fields.String()
    booking_id = fields.String()
    show_id = fields.String(attribute="booking.show_id")
    qty = fields.Integer(attribute="booking.qty")
    issued_at = fields.AwareDateTime(format="iso")
    tid = fields.String(metadata={"description": "the ticket's id at the door (the QR's tid)"})
    qr = fields.String(metadata={"description": "a compact JWS (EdDSA, Ed25519) of {tid, code, bid, sid, qty, "
                                                "seats}: verify it with GET /shows/{id}/checkin-key, by kid"})
    status = fields.String(metadata={"description": "ISSUED, or CHECKED_IN once used at the door"})


class TicketSchema(Schema):
    ticket = fields.Nested(TicketBodySchema)


LOCATION = {"Location": {"description": "The URL of the booking", "schema": {"type": "string"}}}


_QUICK_SCHEMA = BookingRequestSchema()  # sold_out_first's check of the body


def _quick_body() -> dict | None:
    """The body as the normal path would take it (web/parsing.py, then the schema), or None for
    any body it would refuse: that one goes the normal way, to its 400 or 422."""
    try:
        document = request_json(request)
        return _QUICK_SCHEMA.load(document) if isinstance(document, dict) else None
    except (InvalidJSON, ValidationError):
        return None


def _location(booking) -> dict:
    return {"Location": url_for("bookings.BookingById", booking_id=booking.id)}


def sold_out_first(view):
    """Sold out is answered before the rate limit is counted and the request fully parsed: the
    fact's one Redis read costs less than the limiter's own round trips, and a refusal changes
    nothing, so a customer (or a bot) asking again for a sold-out show is answered at once and
    costs least (SPEC §5). Only a request the normal path would take as it is: a valid body
    asking for a qty (general admission, or best available in a category), without an
    Idempotency-Key (a repeat must get its booking back) or an Admission-Token (verified first).
    Anything else (a pick, a bad body) goes the normal way, where the same check runs again."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        if "Idempotency-Key" not in request.headers and "Admission-Token" not in request.headers:
            body = _quick_body()
            if body is not None and body.get("seats") is None:
                booking_service.refuse_if_sold_out(body["show_id"], None, body.get("category"), admitted=False)
        return view(*args, **kwargs)
    return wrapper


@blp.route("")
class Bookings(MethodView):
    @login_required(Role.CUSTOMER)
    @sold_out_first
    @limit_bookings
    @blp.arguments(BookingHeadersSchema, location="headers", unknown="exclude")
    @blp.arguments(BookingRequestSchema)
    @blp.response(202, BookingSchema, headers=LOCATION)
    @blp.alt_response(409, schema=BookingRefusalSchema,
                      description="Sold out (`reject_reason: sold_out`: no seat left of the show, or of the "
                                  "category asked for, and no hold that could give one back; nothing is "
                                  "recorded; answered before the rate limit, and not counted against it), sales "
                                  "for the show are closed or not open yet, or the admission already has a booking")
    @documented_errors(blp, 400, 401, 413, 429, e403="Only customers book; a show with a waiting room needs a "
                                                      "valid Admission-Token for this customer and show",
                       e422="Invalid input (also: no such show), or an Idempotency-Key reused with another body")
    @blp.doc(security=BEARER)
    def post(self, headers, body):
        """Book seats. Accepted at once (PENDING); seats, payment and ticket follow."""
        booking, _ = booking_service.record(current_user_id(), body["show_id"], body.get("qty"),
                                            body["payment_method"], headers.get("idempotency_key"),
                                            seats=body.get("seats"), category=body.get("category"),
                                            admission_token=headers.get("admission_token"))
        note_booking(booking.id)
        return booking, 202, _location(booking)


@blp.route("/<booking_id>")
class BookingById(MethodView):
    @login_required()
    @blp.response(200, BookingSchema)
    @documented_errors(blp, 401, e404="No such booking, or not yours")
    @blp.doc(security=BEARER)
    def get(self, booking_id):
        """Read a booking with its payment and ticket status"""
        return get_customer_booking(booking_id, owner_filter())


@blp.route("/<booking_id>/cancel")
class BookingCancel(MethodView):
    @login_required()
    @blp.arguments(CancelRequestSchema, required=False)
    @blp.response(202, BookingSchema)
    @documented_errors(blp, 400, 401, e404="No such booking, or not yours",
                       e409="Nothing to cancel (rejected, failed, expired), the show started, the ticket "
                            "was checked in, or a part asked of a booking that is not PAID",
                       e422="A part that is not the booking's (unknown seats, qty out of range)")
    @blp.doc(security=BEARER)
    def post(self, body, booking_id):
        """Cancel a booking, or part of a paid one (SPEC §11)

        Whole (no body): its ticket is void at once; refund and seat release follow. In part
        (`qty` or `seats`): those seats go back at once and the booking stays PAID with the rest
        (its qty, seats and amount now describe the rest); the part's amount less its fee is
        refunded, and a new ticket for the rest is ISSUABLE (issue it again for a new QR).
        """
        note_booking(booking_id)
        return cancel_service.cancel(booking_id, owner_filter(), qty=body.get("qty"), seats=body.get("seats"))


@blp.route("/<booking_id>/ticket")
class BookingTicket(MethodView):
    @login_required()
    @blp.response(200, TicketSchema)
    @documented_errors(blp, 401, e404="No such booking, or not yours",
                       e409="The ticket is not issuable (unpaid, or void after a cancel)")
    @blp.doc(security=BEARER)
    def post(self, booking_id):
        """Issue the ticket of a paid booking; issuing again returns the same ticket"""
        note_booking(booking_id)
        return {"ticket": ticket_service.issue(booking_id, owner_filter())}
