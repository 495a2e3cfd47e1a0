"""The waiting room (SPEC §9): customers join a show's queue and poll their entry; admins watch it.

Join and poll are what a hundred thousand waiting customers call, so they read Redis and write
PostgreSQL only in batches (services/waiting_room.py)."""
from flask.views import MethodView
from marshmallow import Schema, fields

from models.users import Role
from services import waiting_room
from web.auth import BEARER, current_user_id, login_required
from web.errors import documented_errors
from web.parsing import Blueprint
from web.ratelimit import limit_queue_joins

blp = Blueprint("queue", __name__, description="The waiting room in front of an on-sale")


class QueueEntrySchema(Schema):
    id = fields.String()
    show_id = fields.String()
    state = fields.String(metadata={"description": "WAITING, ADMITTED, EXPIRED or LEFT"})
    position = fields.Integer(allow_none=True, metadata={
        "description": "the place in the queue order (1 is first); null before the draw at on_sale_at, "
                       "which orders everyone who joined earlier at random"})
    ahead = fields.Integer(allow_none=True, metadata={"description": "customers still waiting ahead"})
    estimated_wait_s = fields.Integer(allow_none=True, metadata={"description": "at the current admission rate"})
    admission_token = fields.String(allow_none=True, metadata={
        "description": "ADMITTED: send it as the Admission-Token header of POST /bookings"})
    admitted_until = fields.AwareDateTime(format="iso", allow_none=True, metadata={
        "description": "ADMITTED or EXPIRED: the end of the turn to book"})


class DrawSchema(Schema):
    drawn_at = fields.AwareDateTime(format="iso", allow_none=True)
    seed = fields.String(allow_none=True, metadata={
        "description": "the draw's seed: the early joiners' order is their ids sorted by HMAC-SHA256(seed, id)"})
    early_joiners = fields.Integer()


class QueueStatsSchema(Schema):
    show_id = fields.String()
    waiting = fields.Integer()
    admitted = fields.Integer(metadata={"description": "admitted and still within their session"})
    expired = fields.Integer(metadata={"description": "admitted, session over"})
    left = fields.Integer()
    admitted_total = fields.Integer()
    admit_per_minute = fields.Integer()
    session_minutes = fields.Integer()
    draw = fields.Nested(DrawSchema)


@blp.route("/shows/<show_id>/queue")
class ShowQueue(MethodView):
    @login_required(Role.CUSTOMER)
    @limit_queue_joins
    @blp.response(201, QueueEntrySchema)
    @blp.alt_response(200, schema=QueueEntrySchema, description="Joined before: the same entry")
    @documented_errors(blp, 401, 429, e403="Only customers queue", e404="No such show",
                       e409="The show has no waiting room, is sold out, or its sales are closed",
                       e503="The join could not be recorded (the database is away): try again")
    @blp.doc(security=BEARER)
    def post(self, show_id):
        """Join the show's waiting room (once per customer: joining again returns the same entry)"""
        entry, created = waiting_room.join(current_user_id(), show_id)
        return entry, 201 if created else 200

    @login_required(Role.ADMIN)
    @blp.response(200, QueueStatsSchema)
    @documented_errors(blp, 401, e403="Not an admin", e404="No such show, or it has no waiting room")
    @blp.doc(security=BEARER)
    def get(self, show_id):
        """The waiting room's counts, rate and draw (admin)"""
        return waiting_room.stats(show_id)


@blp.route("/queue/<entry_id>")
class QueueEntryById(MethodView):
    @login_required()
    @blp.response(200, QueueEntrySchema)
    @documented_errors(blp, 401, e404="No such entry, or not yours",
                       e503="Neither the index nor the database could answer: poll again")
    @blp.doc(security=BEARER)
    def get(self, entry_id):
        """Poll the entry: the place while waiting, the Admission-Token once admitted"""
        return waiting_room.status(entry_id, current_user_id())

    @login_required()
    @blp.response(200, QueueEntrySchema)
    @documented_errors(blp, 401, e404="No such entry, or not yours")
    @blp.doc(security=BEARER)
    def delete(self, entry_id):
        """Leave the waiting room (or give up the turn once admitted)"""
        return waiting_room.leave(entry_id, current_user_id())
