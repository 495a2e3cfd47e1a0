"""Admin operations: steps that gave up (list, retry) and the consistency report (SPEC §4)."""
from flask import current_app
from flask.views import MethodView
from flask_smorest import abort
from marshmallow import Schema, fields
from sqlalchemy import func, select

from gateway.client import GatewayRejected, GatewayUnavailable
from models import db
from models import consistency
from models.task_failures import TaskFailure
from models.users import Role
from services.recovery import retry_failure
from web.auth import BEARER, login_required
from web.parsing import Blueprint

blp = Blueprint("admin", __name__, url_prefix="/admin", description="Operations for admins")


class TaskFailureSchema(Schema):
    id = fields.Integer()
    task = fields.String()
    booking_id = fields.String(allow_none=True)
    error = fields.String()
    attempts = fields.Integer()
    failed_at = fields.AwareDateTime(format="iso")
    retried_at = fields.AwareDateTime(format="iso", allow_none=True)


class TaskFailureQuerySchema(Schema):
    open = fields.Boolean(load_default=False, metadata={"description": "only failures not retried yet"})


class ShowConsistencySchema(Schema):
    show_id = fields.String()
    title = fields.String()
    capacity = fields.Integer()
    remaining = fields.Integer()
    held = fields.Integer()
    agrees = fields.Boolean()
    oversold = fields.Boolean()


class MoneyProblemSchema(Schema):
    booking_id = fields.String()
    status = fields.String()
    payment_status = fields.String(allow_none=True)
    amount = fields.Integer()
    cancellation_fee = fields.Integer(metadata={"description": "the fee the booking keeps (SPEC §11)"})
    refunded_amount = fields.Integer(metadata={"description": "what the booking says its refund gave back"})
    captured = fields.Integer()
    refunded = fields.Integer()
    expected = fields.Integer(metadata={"description": "captured - refunded it should be: amount + fee when "
                                                       "PAID, the fee when CANCELLED, else 0"})
    agrees = fields.Boolean()


class ConsistencySchema(Schema):
    consistent = fields.Boolean()
    counts = fields.Dict(keys=fields.String())
    shows = fields.List(fields.Nested(ShowConsistencySchema))
    money_problems = fields.List(fields.Nested(MoneyProblemSchema))
    issued_on_refunded = fields.List(fields.String())
    mypage_mismatches = fields.List(fields.String())
    unsettled = fields.List(fields.String())
    seats = fields.Dict(keys=fields.String(), values=fields.List(fields.String()), metadata={
        "description": "reserved seating: seat_double_held, category_mismatches, limit_exceeded (SPEC §8 invariants 7–9)"})
    queue = fields.Dict(keys=fields.String(), values=fields.List(fields.String()), metadata={
        "description": "waiting rooms: queue_out_of_order, queue_admitted_twice, admission_misused (SPEC §9)"})
    door = fields.Dict(keys=fields.String(), values=fields.List(fields.String()), metadata={
        "description": "the door (SPEC §10): checked_in_not_paid, checked_in_unsigned (booking ids)"})
    cancelled_shows = fields.Dict(keys=fields.String(), values=fields.List(fields.String()), metadata={
        "description": "cancelled shows (SPEC §11): cancelled_show_live, cancelled_show_tickets_valid (booking ids)"})
    notify = fields.Dict(keys=fields.String(), values=fields.List(fields.String()), metadata={
        "description": "webhooks and mail (SPEC §12): events_not_delivered (no delivery row for an endpoint that "
                       "wanted it), mails_missing (no mail row for an event a customer is told of): event ids"})


@blp.route("/task-failures")
class TaskFailures(MethodView):
    @login_required(Role.ADMIN)
    @blp.arguments(TaskFailureQuerySchema, location="query")
    @blp.response(200, TaskFailureSchema(many=True))
    @blp.paginate()
    @blp.alt_response(401, description="No or invalid token")
    @blp.alt_response(403, description="Admins only")
    @blp.doc(security=BEARER)
    def get(self, query, pagination_parameters):
        """Steps that exhausted their retries (newest first)"""
        where = [TaskFailure.retried_at.is_(None)] if query["open"] else []
        pagination_parameters.item_count = db.session.scalar(
            select(func.count()).select_from(TaskFailure).where(*where))
        return db.session.scalars(
            select(TaskFailure).where(*where).order_by(TaskFailure.id.desc())
            .limit(pagination_parameters.page_size).offset(pagination_parameters.first_item)
        ).all()


@blp.route("/task-failures/<int:failure_id>/retry")
class TaskFailureRetry(MethodView):
    @login_required(Role.ADMIN)
    @blp.response(202, TaskFailureSchema)
    @blp.alt_response(404, description="No such failure")
    @blp.alt_response(409, description="This step cannot be retried (unknown step or no booking)")
    @blp.doc(security=BEARER)
    def post(self, failure_id):
        """Send the step again (through the outbox: durable even if the broker is down)"""
        return retry_failure(failure_id)


@blp.route("/consistency")
class Consistency(MethodView):
    @login_required(Role.ADMIN)
    @blp.response(200, ConsistencySchema)
    @blp.alt_response(503, description="The payment gateway's ledger could not be read")
    @blp.doc(security=BEARER)
    def get(self):
        """Check the invariants: seats per show, money per booking against the gateway's ledger,
        no ticket issued on a refunded booking nor checked in on an unpaid one, the my page equal
        to the source of truth"""
        try:
            report = consistency.check(current_app.extensions["payment_gateway"])
        except (GatewayUnavailable, GatewayRejected) as error:
            abort(503, message=f"the payment gateway's ledger is unavailable: {error}")
        return {"consistent": report.consistent, "counts": report.counts(), "shows": report.shows,
                "money_problems": report.money_problems, "issued_on_refunded": report.issued_on_refunded,
                "mypage_mismatches": report.mypage_mismatches, "unsettled": report.stuck, "seats": report.seats,
                "queue": report.queue, "door": report.door, "cancelled_shows": report.cancelled_shows,
                "notify": report.notify}
