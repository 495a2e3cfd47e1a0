"""Webhook endpoints, their delivery log and replays (SPEC §12); admins only."""
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from models.events import EventType
from models.users import Role
from services import webhooks
from web.auth import BEARER, login_required
from web.errors import documented_errors
from web.fields import Text
from web.parsing import Blueprint

blp = Blueprint("webhooks", __name__, url_prefix="/admin/webhooks",
                description="Webhook endpoints: who hears of which events, and every delivery (admins)")

EVENT_TYPES = [str(event_type) for event_type in EventType]


class EndpointRequestSchema(Schema):
    url = Text(required=True, validate=validate.Length(min=1, max=2048),
               metadata={"description": "http(s) URL that receives the events by POST"})
    events = fields.List(fields.String(validate=validate.OneOf(EVENT_TYPES)), required=True,
                         validate=validate.Length(min=1, max=len(EVENT_TYPES)),
                         metadata={"description": "the event types it wants"})


class EndpointSchema(Schema):
    id = fields.String()
    url = fields.String()
    events = fields.List(fields.String())
    created_at = fields.AwareDateTime(format="iso")


class NewEndpointSchema(EndpointSchema):
    secret = fields.String(metadata={"description": "the key of its deliveries' signatures; shown only here"})


class AttemptSchema(Schema):
    attempted_at = fields.AwareDateTime(format="iso")
    status_code = fields.Integer(allow_none=True, metadata={"description": "the receiver's answer; null: none came"})
    error = fields.String(allow_none=True)
    duration_ms = fields.Integer()


class DeliverySchema(Schema):
    id = fields.Integer()
    event_id = fields.String()
    event_type = fields.String()
    endpoint_id = fields.String()
    status = fields.String(metadata={"description": "PENDING, DELIVERED or FAILED (retries given up)"})
    attempts = fields.Integer()
    next_attempt_at = fields.AwareDateTime(format="iso", allow_none=True)
    retry_until = fields.AwareDateTime(format="iso")
    last_status_code = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    delivered_at = fields.AwareDateTime(format="iso", allow_none=True)
    failed_at = fields.AwareDateTime(format="iso", allow_none=True)
    created_at = fields.AwareDateTime(format="iso")
    attempt_log = fields.List(fields.Nested(AttemptSchema), data_key="attempt_log")


@blp.route("")
class Endpoints(MethodView):
    @login_required(Role.ADMIN)
    @blp.arguments(EndpointRequestSchema)
    @blp.response(201, NewEndpointSchema)
    @documented_errors(blp, 400, 401, 403, 413, 422)
    @blp.doc(security=BEARER)
    def post(self, body):
        """Register an endpoint: it hears of the chosen events recorded from now on"""
        return webhooks.register_endpoint(body["url"], body["events"])

    @login_required(Role.ADMIN)
    @blp.response(200, EndpointSchema(many=True))
    @documented_errors(blp, 401, 403)
    @blp.doc(security=BEARER)
    def get(self):
        """The endpoints (their secrets are not shown again)"""
        return webhooks.endpoints()


@blp.route("/<endpoint_id>")
class Endpoint(MethodView):
    @login_required(Role.ADMIN)
    @blp.response(200, EndpointSchema)
    @documented_errors(blp, 401, 403, e404="No such endpoint")
    @blp.doc(security=BEARER)
    def get(self, endpoint_id):
        """One endpoint"""
        return webhooks.endpoint(endpoint_id)

    @login_required(Role.ADMIN)
    @blp.response(204)
    @documented_errors(blp, 401, 403, e404="No such endpoint")
    @blp.doc(security=BEARER)
    def delete(self, endpoint_id):
        """Delete an endpoint: no new deliveries, pending ones dropped; its log stays"""
        webhooks.remove_endpoint(endpoint_id)


@blp.route("/<endpoint_id>/deliveries")
class Deliveries(MethodView):
    @login_required(Role.ADMIN)
    @blp.response(200, DeliverySchema(many=True))
    @blp.paginate()
    @documented_errors(blp, 401, 403, e404="No such endpoint")
    @blp.doc(security=BEARER)
    def get(self, endpoint_id, pagination_parameters):
        """The endpoint's deliveries (newest first), each with its attempts and outcome"""
        total, rows = webhooks.delivery_log(endpoint_id, pagination_parameters.page_size,
                                            pagination_parameters.first_item)
        pagination_parameters.item_count = total
        return rows


@blp.route("/deliveries/<int:delivery_id>/retry")
class DeliveryRetry(MethodView):
    @login_required(Role.ADMIN)
    @blp.response(202, DeliverySchema)
    @documented_errors(blp, 401, 403, e404="No such delivery", e409="The delivery's endpoint was deleted")
    @blp.doc(security=BEARER)
    def post(self, delivery_id):
        """Send a delivery again now (a FAILED one, or any other), with a fresh retry window"""
        return webhooks.retry_delivery(delivery_id)
