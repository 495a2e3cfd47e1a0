"""Seat maps (SPEC §8): admins create them; anyone may read one."""
from flask import request, url_for
from flask.views import MethodView
from marshmallow import Schema, fields

from models.seats import get_seat_map_record
from models.users import Role
from services.seat_maps import add_seat_map
from web.auth import BEARER, login_required
from web.errors import documented_errors
from web.parsing import Blueprint

blp = Blueprint("seat_maps", __name__, url_prefix="/seat-maps", description="Seat maps of halls (reserved seating)")

# A map of 100,000 seats listed one by one, with per-seat categories, is a few megabytes; every
# other body of the API stays under MAX_CONTENT_LENGTH.
SEAT_MAP_MAX_BYTES = 8 * 1024 * 1024


@blp.before_request
def _room_for_a_large_map():
    request.max_content_length = SEAT_MAP_MAX_BYTES


class SeatMapRequestSchema(Schema):
    """The map as SPEC §8 gives it. Validated whole by models/seating.py parse_seat_map, whose
    422 names the field: `{"sections.0.rows.1.seats": ["duplicate seat number 7"]}`."""
    name = fields.Raw(required=True, metadata={"type": "string", "description": "1 to 100 characters"})
    sections = fields.Raw(required=True, metadata={
        "type": "array", "description": "sections in quality order (earlier is better): "
        "[{name, rows: [{name, category, seats}]}]; a row's seats are a count N (numbered 1..N) or a "
        "list of numbers (gaps allowed), where {\"number\": 7, \"category\": \"A\"} overrides one seat's "
        "category. Up to 100,000 seats.",
        "items": {"type": "object", "properties": {
            "name": {"type": "string"},
            "rows": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}, "category": {"type": "string"},
                "seats": {"oneOf": [{"type": "integer"}, {"type": "array", "items": {}}]}}}}}}})


class CategoryCountSchema(Schema):
    name = fields.String()
    seats = fields.Integer()


class SeatMapSchema(Schema):
    id = fields.String()
    name = fields.String()
    seat_count = fields.Integer()
    categories = fields.List(fields.Nested(CategoryCountSchema))


class SeatMapWithBodySchema(SeatMapSchema):
    sections = fields.Raw(attribute="body.sections", metadata={"type": "array"})


@blp.route("")
class SeatMaps(MethodView):
    @login_required(Role.ADMIN)
    @blp.arguments(SeatMapRequestSchema)
    @blp.response(201, SeatMapSchema, headers={"Location": {"description": "The URL of the map",
                                                             "schema": {"type": "string"}}})
    @documented_errors(blp, 400, 401, 413, e403="Not an admin",
                       e422="Not a valid map (empty, duplicate names or seat numbers, unknown fields, over 100,000 seats)")
    @blp.doc(security=BEARER)
    def post(self, body):
        """Create a seat map (admin)"""
        record = add_seat_map(body)
        return record, 201, {"Location": url_for("seat_maps.SeatMapById", seat_map_id=record.id)}


@blp.route("/<seat_map_id>")
class SeatMapById(MethodView):
    @blp.response(200, SeatMapWithBodySchema)
    @documented_errors(blp, e404="No such seat map")
    def get(self, seat_map_id):
        """Read a seat map: its sections, rows and seats as created, and its categories"""
        return get_seat_map_record(seat_map_id)
