"""Tickets at the door (SPEC §10): the check-in keys scanners verify tickets with, check-in now
(online) and later (an offline gate's upload), and the list an offline gate takes along."""
from datetime import timedelta

from flask import Response, request
from flask.views import MethodView
from marshmallow import Schema, ValidationError, fields, validate, validates

from models.checkin_keys import MAX_QR_LENGTH
from models.database import utc_now
from models.users import Role
from services import checkin_keys as key_service, checkins as checkin_service
from web.auth import BEARER, login_required
from web.errors import ErrorSchema, documented_errors
from web.fields import Text
from web.parsing import Blueprint

blp = Blueprint("door", __name__, description="Tickets at the door: check-in keys, check-ins, offline gates")

MAX_BATCH = 10_000
# A batch of MAX_BATCH scans is about 5 MB; every other body of the API stays under MAX_CONTENT_LENGTH.
BATCH_MAX_BYTES = 8 * 1024 * 1024
# A gate's clock may run a little ahead; a scan further in the future than this is refused.
CLOCK_SKEW = timedelta(minutes=10)
DOOR_ROLES = (Role.STAFF, Role.ADMIN)


class JwkSchema(Schema):
    kty = fields.String(metadata={"description": "OKP"})
    crv = fields.String(metadata={"description": "Ed25519"})
    x = fields.String(metadata={"description": "the public key, base64url"})
    kid = fields.String(metadata={"description": "the key's id, in the header of the tickets it signed"})


class CheckinKeySchema(Schema):
    show_id = fields.String()
    alg = fields.String(metadata={"description": "EdDSA"})
    jwk = fields.Nested(JwkSchema, metadata={"description": "the key that signs new tickets"})
    keys = fields.List(fields.Nested(JwkSchema), metadata={
        "description": "every key that verifies the show's tickets, by kid: the signing one first, then "
                       "retired ones (tickets issued before a rotation)"})


def _qr_field(**kwargs):
    return Text(validate=validate.Length(min=1, max=MAX_QR_LENGTH),
                metadata={"description": "the ticket's qr: a compact JWS (EdDSA)"}, **kwargs)


def _gate_field(**kwargs):
    return Text(validate=validate.Length(min=1, max=64), metadata={"description": "the gate that scanned it"}, **kwargs)


class CheckinRequestSchema(Schema):
    qr = _qr_field(required=True)
    gate = _gate_field()
    show_id = Text(validate=validate.Length(min=1, max=36),
                   metadata={"description": "the gate's show: a ticket of another show is WRONG_SHOW"})


class CheckinSchema(Schema):
    result = fields.String(metadata={"description": "ADMITTED"})
    tid = fields.String(metadata={"description": "the ticket's id at the door"})
    booking_id = fields.String()
    show_id = fields.String()
    qty = fields.Integer(metadata={"description": "how many people the ticket admits"})
    seats = fields.List(fields.String(), metadata={"description": "reserved seating: the seat ids"})
    checked_in_at = fields.AwareDateTime(format="iso")


class CheckinRefusalSchema(ErrorSchema):
    result = fields.String(metadata={
        "description": "ALREADY_CHECKED_IN, VOID, WRONG_SHOW (409) or INVALID (422: a QR that is no ticket "
                       "of ours; invalid input has `errors` instead)"})
    tid = fields.String()
    first_checked_in_at = fields.AwareDateTime(format="iso", metadata={"description": "ALREADY_CHECKED_IN"})
    gate = fields.String(allow_none=True, metadata={"description": "ALREADY_CHECKED_IN: the gate that admitted it"})
    show_id = fields.String(metadata={"description": "WRONG_SHOW: the ticket's show"})


class ScanSchema(Schema):
    qr = _qr_field(required=True)
    scanned_at = fields.AwareDateTime(required=True, format="iso", metadata={"description": "when the gate scanned it"})
    gate = _gate_field()

    @validates("scanned_at")
    def _not_in_the_future(self, value, **_):
        if value > utc_now() + CLOCK_SKEW:
            raise ValidationError("must not be in the future (is the gate's clock right?)")


class BatchRequestSchema(Schema):
    scans = fields.List(fields.Nested(ScanSchema), required=True, validate=validate.Length(min=1, max=MAX_BATCH))
    show_id = Text(validate=validate.Length(min=1, max=36),
                   metadata={"description": "the gate's show: a ticket of another show is WRONG_SHOW"})


class ScanResultSchema(CheckinSchema):
    result = fields.String(metadata={"description": "ADMITTED, DUPLICATE, VOID, WRONG_SHOW or INVALID"})
    first_checked_in_at = fields.AwareDateTime(format="iso", metadata={"description": "DUPLICATE: the scan on record"})
    gate = fields.String(allow_none=True, metadata={"description": "DUPLICATE: the gate of the scan on record"})
    message = fields.String()


class BatchSchema(Schema):
    results = fields.List(fields.Nested(ScanResultSchema), metadata={"description": "one per scan, in their order"})


class CheckinListSchema(Schema):
    show_id = fields.String()
    version = fields.String(metadata={"description": "changes whenever any list does"})
    valid = fields.List(fields.String(), metadata={"description": "ticket ids (tid) issued and not checked in"})
    checked_in = fields.List(fields.String(), metadata={"description": "ticket ids checked in already"})
    void = fields.List(fields.String(), metadata={"description": "ticket ids of cancelled or refunded bookings"})


@blp.route("/shows/<show_id>/checkin-key")
class CheckinKey(MethodView):
    @blp.response(200, CheckinKeySchema)
    @documented_errors(blp, e404="No such show")
    def get(self, show_id):
        """The public keys that verify the show's tickets (a JWK), for scanners offline"""
        return key_service.public_keys(show_id)


@blp.route("/shows/<show_id>/checkin-key/rotate")
class CheckinKeyRotation(MethodView):
    @login_required(Role.ADMIN)
    @blp.response(200, CheckinKeySchema)
    @documented_errors(blp, 401, e403="Not an admin", e404="No such show")
    @blp.doc(security=BEARER)
    def post(self, show_id):
        """Rotate the show's signing key (admin); tickets issued before keep verifying by kid"""
        return key_service.rotate_key(show_id)


@blp.route("/shows/<show_id>/checkin-list")
class CheckinList(MethodView):
    @login_required(*DOOR_ROLES)
    @blp.response(200, CheckinListSchema, headers={"ETag": {"description": "the list's version",
                                                            "schema": {"type": "string"}}})
    @blp.alt_response(304, description="Not changed since the version in If-None-Match")
    @documented_errors(blp, 401, e403="Not door staff or an admin", e404="No such show")
    @blp.doc(security=BEARER)
    def get(self, show_id):
        """Every ticket id of the show, valid, checked in or void: what an offline gate takes along
        (send If-None-Match with its ETag to get 304 while nothing changed)"""
        listing = checkin_service.checkin_list(show_id)
        etag = {"ETag": f'"{listing["version"]}"'}
        if listing["version"] in request.if_none_match:
            return Response(status=304, headers=etag)
        return listing, 200, etag


@blp.route("/checkins")
class Checkins(MethodView):
    @login_required(*DOOR_ROLES)
    @blp.arguments(CheckinRequestSchema)
    @blp.response(200, CheckinSchema)
    @blp.alt_response(409, schema=CheckinRefusalSchema,
                      description="Not admitted: ALREADY_CHECKED_IN, VOID (cancelled or refunded) or WRONG_SHOW")
    @blp.alt_response(422, schema=CheckinRefusalSchema,
                      description="INVALID: not a ticket signed with a check-in key (or invalid input)")
    @documented_errors(blp, 400, 401, 413, e403="Not door staff or an admin")
    @blp.doc(security=BEARER)
    def post(self, body):
        """Check a ticket in: admitted exactly once, however many gates scan it at once"""
        return checkin_service.check_in(body["qr"], body.get("gate"), body.get("show_id"))


@blp.route("/checkins/batch")
class CheckinBatch(MethodView):
    @login_required(*DOOR_ROLES)
    @blp.arguments(BatchRequestSchema)
    @blp.response(200, BatchSchema)
    @documented_errors(blp, 400, 401, 413, 422, e403="Not door staff or an admin")
    @blp.doc(security=BEARER)
    def post(self, body):
        """Upload an offline gate's scans: the earliest scan of a ticket is ADMITTED, later ones DUPLICATE"""
        return {"results": checkin_service.check_in_batch(body["scans"], body.get("show_id"))}


@blp.before_request
def _room_for_a_large_batch():
    if request.path == "/checkins/batch":
        request.max_content_length = BATCH_MAX_BYTES
