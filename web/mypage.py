"""The my page: a customer's bookings, read only from the read model (never the booking tables)."""
from flask.views import MethodView
from web.parsing import Blueprint
from marshmallow import Schema, fields

from models.mypage import customer_entries
from web.auth import BEARER, current_user_id, login_required
from web.errors import documented_errors

blp = Blueprint("mypage", __name__, url_prefix="/me", description="The customer's my page")


class MyPageEntrySchema(Schema):
    booking_id = fields.String()
    show_id = fields.String()
    show_title = fields.String()
    venue = fields.String()
    starts_at = fields.AwareDateTime(format="iso")
    qty = fields.Integer()
    amount = fields.Integer()
    cancellation_fee = fields.Integer(metadata={"description": "what cancelling cost, kept from the payment "
                                                               "(SPEC §11; 0 until something is cancelled)"})
    refunded_amount = fields.Integer(metadata={"description": "what the refund gave back (0 until then)"})
    status = fields.String()
    payment_status = fields.String()
    ticket_status = fields.String()
    updated_at = fields.AwareDateTime(format="iso")


@blp.route("/bookings")
class MyBookings(MethodView):
    @login_required()
    @blp.response(200, MyPageEntrySchema(many=True))
    @blp.paginate()
    @documented_errors(blp, 401)
    @blp.doc(security=BEARER)
    def get(self, pagination_parameters):
        """My bookings, newest first, with payment and ticket status"""
        rows, total = customer_entries(current_user_id(), pagination_parameters.page_size,
                                       pagination_parameters.first_item)
        pagination_parameters.item_count = total
        return rows
