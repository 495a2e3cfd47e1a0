"""Shows: anyone may list and read them and their seats; admins create and change them."""
from flask import request, url_for
from flask.views import MethodView
from web.parsing import Blueprint
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from web.fields import Text
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from models import db
from models.seating import MAX_CATEGORY, MAX_SEATS
from models.shows import MAX_POLICY_RULES, Show, get_show
from models.waiting_room import MAX_ADMIT_PER_MINUTE, MAX_SESSION_MINUTES
from models.users import Role
from web.seat_page import seat_page
from web.seat_svg import seat_picture
from services import show_cancel
from services.shows import blocked_seats, change_show, create_show
from web.auth import BEARER, login_required
from web.errors import documented_errors

blp = Blueprint("shows", __name__, url_prefix="/shows", description="Shows, their seats and what remains")

MAX_CAPACITY = 1_000_000
MAX_PRICE = 100_000_000_000
MAX_LIMIT = 1_000


class CategorySchema(Schema):
    name = fields.String()
    price = fields.Integer()
    capacity = fields.Integer()
    remaining = fields.Integer()


def _prices(value):
    if not 1 <= len(value) <= 1000:
        raise ValidationError("must price between 1 and 1000 categories")


class WaitingRoomSchema(Schema):
    admit_per_minute = fields.Integer(strict=True, required=True, validate=validate.Range(min=1, max=MAX_ADMIT_PER_MINUTE),
                                      metadata={"description": "customers admitted per minute, evenly"})
    session_minutes = fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_SESSION_MINUTES),
                                     metadata={"description": "how long an admitted customer may book (default 10)"})


class WaitingRoomPatchSchema(WaitingRoomSchema):
    admit_per_minute = fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_ADMIT_PER_MINUTE),
                                      metadata={"description": "a new rate, from now on (also during the sale)"})


class CancellationRuleSchema(Schema):
    hours_before = fields.Integer(strict=True, required=True, validate=validate.Range(min=0, max=100_000),
                                  metadata={"description": "applies to a cancel at least this many hours "
                                                           "before starts_at"})
    fee_percent = fields.Integer(strict=True, required=True, validate=validate.Range(min=0, max=100),
                                 metadata={"description": "the fee, in percent of the amount cancelled "
                                                          "(rounded down to the currency unit)"})


def _policy(rules):
    if len(rules) > MAX_POLICY_RULES:
        raise ValidationError(f"at most {MAX_POLICY_RULES} rules")
    hours = [rule["hours_before"] for rule in rules]
    if len(set(hours)) != len(hours):
        raise ValidationError("each rule needs its own hours_before")


POLICY_DESCRIPTION = (
    "SPEC §11: what a cancel of a paid booking costs. The first rule, in descending hours_before, "
    "whose hours_before is at most the hours left before starts_at gives the fee; no rule matching, "
    "or no policy (null or []), is free. Answered in descending hours_before. Example (a common "
    "Korean schedule): [{\"hours_before\": 168, \"fee_percent\": 0}, {\"hours_before\": 72, "
    "\"fee_percent\": 10}, {\"hours_before\": 24, \"fee_percent\": 20}, {\"hours_before\": 0, "
    "\"fee_percent\": 30}]")


def _policy_field():
    return fields.List(fields.Nested(CancellationRuleSchema), allow_none=True, validate=_policy,
                       metadata={"description": POLICY_DESCRIPTION})


class ShowSchema(Schema):
    id = fields.String(dump_only=True)
    title = Text(required=True, validate=validate.Length(min=1, max=200))
    venue = Text(required=True, validate=validate.Length(min=1, max=200))
    starts_at = fields.AwareDateTime(required=True, format="iso")
    seating = fields.String(dump_only=True, metadata={"description": "general or reserved"})
    price = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=0, max=MAX_PRICE),
                           metadata={"description": "general admission: the price of a seat"})
    capacity = fields.Integer(strict=True, validate=validate.Range(min=0, max=MAX_CAPACITY),
                              metadata={"description": "general admission: the seats; reserved: the map's seat count"})
    remaining = fields.Integer(dump_only=True)
    seat_map_id = Text(allow_none=True, validate=validate.Length(min=1, max=36),
                       metadata={"description": "reserved seating: the seat map (POST /seat-maps)"})
    prices = fields.Dict(keys=Text(validate=validate.Length(min=1, max=MAX_CATEGORY)),
                         values=fields.Integer(strict=True, validate=validate.Range(min=0, max=MAX_PRICE)),
                         load_only=True, validate=_prices,
                         metadata={"description": "reserved seating: a price for every category of the map"})
    categories = fields.List(fields.Nested(CategorySchema), dump_only=True,
                             metadata={"description": "reserved seating: each category's price and seats"})
    max_per_customer = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=1, max=MAX_LIMIT),
                                      metadata={"description": "seats one customer may hold across their live "
                                                               "bookings of the show (none: no limit)"})
    on_sale_at = fields.AwareDateTime(format="iso", allow_none=True,
                                      metadata={"description": "bookings before it are refused (409)"})
    waiting_room = fields.Nested(WaitingRoomSchema, allow_none=True, metadata={
        "description": "a queue in front of the sale (SPEC §9): POST /bookings then needs an Admission-Token"})
    cancellation_policy = _policy_field()
    status = fields.String(dump_only=True, metadata={"description": "SCHEDULED, or CANCELLED (SPEC §11)"})
    cancelled_at = fields.AwareDateTime(format="iso", dump_only=True, allow_none=True)
    refunds = fields.Method("_refunds", dump_only=True, allow_none=True, metadata={
        "type": "object", "nullable": True, "properties": {name: {"type": "integer"} for name in ("total", "done", "pending")},
        "description": "a cancelled show: its bookings cancelled with it (total), those refunded and settled "
                       "(done), and the rest (pending); null for a show not cancelled"})

    def _refunds(self, show):
        return show_cancel.get_refunds_or_none(show)

    @validates_schema
    def _one_kind(self, data, **_):
        if data.get("seat_map_id") is None and (data.get("capacity") is None or data.get("price") is None):
            raise ValidationError("a general admission show needs capacity and price; a reserved one "
                                  "seat_map_id and prices", "seat_map_id")


class ShowPatchSchema(Schema):
    title = Text(validate=validate.Length(min=1, max=200))
    venue = Text(validate=validate.Length(min=1, max=200))
    starts_at = fields.AwareDateTime(format="iso")
    price = fields.Integer(strict=True, validate=validate.Range(min=0, max=MAX_PRICE))
    capacity = fields.Integer(strict=True, validate=validate.Range(min=0, max=MAX_CAPACITY))
    max_per_customer = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=1, max=MAX_LIMIT))
    on_sale_at = fields.AwareDateTime(format="iso", allow_none=True)
    blocked_seats = fields.List(Text(validate=validate.Length(min=1, max=32)), validate=validate.Length(max=MAX_SEATS),
                                metadata={"description": "reserved seating: the seats taken out of sale "
                                                         "(replaces the list; a held or sold seat: 409)"})
    waiting_room = fields.Nested(WaitingRoomPatchSchema, metadata={
        "description": "add a waiting room, or change its rate or session length"})
    cancellation_policy = _policy_field()


class SeatSchema(Schema):
    id = fields.String()
    section = fields.String()
    row = fields.String()
    number = fields.Integer()
    category = fields.String()
    status = fields.String(metadata={"description": "AVAILABLE, HELD, SOLD or BLOCKED"})


class SeatPageSchema(Schema):
    show_id = fields.String()
    version = fields.Integer()
    seats = fields.List(fields.Nested(SeatSchema))


class BlockedSeatsSchema(Schema):
    blocked_seats = fields.List(fields.String())


@blp.route("")
class Shows(MethodView):
    @blp.response(200, ShowSchema(many=True))
    @blp.paginate()
    def get(self, pagination_parameters):
        """List shows, soonest first"""
        pagination_parameters.item_count = db.session.scalar(select(func.count()).select_from(Show))
        return db.session.scalars(
            select(Show).options(selectinload(Show.categories)).order_by(Show.starts_at, Show.id)
            .limit(pagination_parameters.page_size)
            .offset(pagination_parameters.first_item)
        ).all()

    @login_required(Role.ADMIN)
    @blp.arguments(ShowSchema)
    @blp.response(201, ShowSchema, headers={"Location": {"description": "The URL of the show",
                                                          "schema": {"type": "string"}}})
    @documented_errors(blp, 400, 401, 413, 422, e403="Not an admin")
    @blp.doc(security=BEARER)
    def post(self, body):
        """Create a show (admin)"""
        show = create_show(body)
        return show, 201, {"Location": url_for("shows.ShowById", show_id=show.id)}


@blp.route("/<show_id>")
class ShowById(MethodView):
    @blp.response(200, ShowSchema)
    @documented_errors(blp, e404="No such show")
    def get(self, show_id):
        """Read one show with its remaining seats (per category for reserved seating)"""
        return get_show(show_id)

    @login_required(Role.ADMIN)
    @blp.arguments(ShowPatchSchema)
    @blp.response(200, ShowSchema)
    @documented_errors(blp, 400, 401, 413, 422, e403="Not an admin", e404="No such show",
                       e409="Capacity below the seats already held, a held or sold seat to block, or the show was cancelled")
    @blp.doc(security=BEARER)
    def patch(self, body, show_id):
        """Change a show (admin); capacity cannot drop below the seats held"""
        return change_show(show_id, body)


@blp.route("/<show_id>/cancel")
class ShowCancel(MethodView):
    @login_required(Role.ADMIN)
    @blp.response(202, ShowSchema)
    @documented_errors(blp, 401, e403="Not an admin", e404="No such show")
    @blp.doc(security=BEARER)
    def post(self, show_id):
        """Cancel a show (admin, SPEC §11)

        From now on new bookings and queue joins are refused (409). Every live booking is
        cancelled in full, without a fee, its ticket void, and refunded, in the background: watch
        `refunds` on GET /shows/{id}. Repeating it is harmless.
        """
        return show_cancel.cancel_show(show_id)


@blp.route("/<show_id>/seats")
class ShowSeats(MethodView):
    @blp.response(200, SeatPageSchema, headers={"ETag": {"description": "the seat states' version",
                                                          "schema": {"type": "string"}}})
    @blp.alt_response(304, description="Not modified since the version in If-None-Match")
    @documented_errors(blp, e404="No such show, or a general admission show (no seat map)")
    def get(self, show_id):
        """Every seat of a reserved show and its status (AVAILABLE, HELD, SOLD, BLOCKED), from a read
        model the reservation step keeps current; send If-None-Match to get 304 while nothing changed"""
        return seat_page(show_id, request.if_none_match)


@blp.route("/<show_id>/seats.svg")
class ShowSeatPicture(MethodView):
    @blp.response(200, {"type": "string", "format": "binary"}, content_type="image/svg+xml",
                  description="The seat map drawn (SVG)",
                  headers={"ETag": {"description": "the seat states' version", "schema": {"type": "string"}}})
    @blp.alt_response(304, description="Not modified since the version in If-None-Match")
    @documented_errors(blp, e404="No such show, or a general admission show (no seat map)")
    def get(self, show_id):
        """The seat map drawn: each seat a shape coloured by category, its state shown by the shape
        (web/seat_svg.py), from the same read model as GET /shows/{id}/seats; at most a second old"""
        return seat_picture(show_id, request.if_none_match)


@blp.route("/<show_id>/blocked-seats")
class ShowBlockedSeats(MethodView):
    @login_required(Role.ADMIN)
    @blp.response(200, BlockedSeatsSchema)
    @documented_errors(blp, 401, e403="Not an admin", e404="No such show")
    @blp.doc(security=BEARER)
    def get(self, show_id):
        """The seats taken out of sale (admin; set them with PATCH blocked_seats)"""
        return {"blocked_seats": blocked_seats(get_show(show_id))}
