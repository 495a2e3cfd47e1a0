"""Shows: anyone may list and read them; admins create and change them."""
from flask import url_for
from flask.views import MethodView
from web.parsing import Blueprint
from marshmallow import Schema, fields, validate

from web.fields import Text
from sqlalchemy import func, select

from models import db
from models.shows import Show, get_show
from models.users import Role
from services.shows import change_show, create_show
from web.auth import BEARER, login_required
from web.errors import documented_errors

blp = Blueprint("shows", __name__, url_prefix="/shows", description="Shows and their remaining seats")

MAX_CAPACITY = 1_000_000
MAX_PRICE = 100_000_000_000


class ShowSchema(Schema):
    id = fields.String(dump_only=True)
    title = Text(required=True, validate=validate.Length(min=1, max=200))
    venue = Text(required=True, validate=validate.Length(min=1, max=200))
    starts_at = fields.AwareDateTime(required=True, format="iso")
    price = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=MAX_PRICE))
    capacity = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=MAX_CAPACITY))
    remaining = fields.Integer(dump_only=True)


class ShowPatchSchema(Schema):
    title = Text(validate=validate.Length(min=1, max=200))
    venue = Text(validate=validate.Length(min=1, max=200))
    starts_at = fields.AwareDateTime(format="iso")
    price = fields.Integer(strict=True, validate=validate.Range(min=0, max=MAX_PRICE))
    capacity = fields.Integer(strict=True, validate=validate.Range(min=0, max=MAX_CAPACITY))


@blp.route("")
class Shows(MethodView):
    @blp.response(200, ShowSchema(many=True))
    @blp.paginate()
    def get(self, pagination_parameters):
        """List shows, soonest first"""
        pagination_parameters.item_count = db.session.scalar(select(func.count()).select_from(Show))
        return db.session.scalars(
            select(Show).order_by(Show.starts_at, Show.id)
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
        """Read one show with its remaining seats"""
        return get_show(show_id)

    @login_required(Role.ADMIN)
    @blp.arguments(ShowPatchSchema)
    @blp.response(200, ShowSchema)
    @documented_errors(blp, 400, 401, 413, 422, e403="Not an admin", e404="No such show",
                       e409="Capacity below the seats already held")
    @blp.doc(security=BEARER)
    def patch(self, body, show_id):
        """Change a show (admin); capacity cannot drop below the seats held"""
        return change_show(show_id, body)
