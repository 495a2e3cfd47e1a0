"""The pages people look at, served by the app itself (no CDN, no build step): the seat map drawn,
the hosted waiting room and the on-sale dashboard (docs/pages.md).

- GET /shows/{id}/seats.svg      the seat map as SVG (web/seat_svg.py); documented in OpenAPI
                                 beside the JSON page, in web/shows.py.
- GET /shows/{id}/waiting-room   HTML and a little JavaScript of our own (web/static/pages/): the
                                 customer signs in (or pastes a token, kept in sessionStorage),
                                 joins the queue and polls GET /queue/{id} until admitted.
- GET /admin/dashboard           HTML for admins; it signs in the same way and fetches
- GET /admin/dashboard/data      (admin bearer token) every few seconds (services/dashboard.py).

The HTML pages hold no data of anyone: the page is the same for every visitor, and what it shows
comes from the JSON API with the bearer token the visitor gave it, so no cookie (and no CSRF
exposure) is added to an API that authenticates with bearer tokens only. They are not API
operations, so they stay out of the OpenAPI document (and out of its query parameter check).
"""
from flask import Blueprint, current_app, render_template, request

from models.shows import get_show
from models.users import Role
from services import dashboard
from web.auth import login_required

blp = Blueprint("pages", __name__, template_folder="templates", static_folder="static/pages",
                static_url_path="/pages/static")

LANGUAGES = ("en", "ko")
# The pages load only their own files and talk only to this API; the seat maps come in as blobs.
HEADERS = {"Cache-Control": "no-cache",
           "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; object-src 'none'; "
                                      "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"}


def language() -> str:
    """The browser's language (Accept-Language): Korean or English."""
    return request.accept_languages.best_match(LANGUAGES, default="en")


@blp.get("/shows/<show_id>/waiting-room")
def waiting_room(show_id: str):
    show = get_show(show_id)
    page = render_template("pages/waiting_room.html", show=show, lang=language(),
                           shop_url_template=current_app.config.get("SHOP_URL_TEMPLATE") or "")
    return page, 200, HEADERS


@blp.get("/admin/dashboard")
def admin_dashboard():
    return render_template("pages/dashboard.html", lang=language()), 200, HEADERS


@blp.get("/admin/dashboard/data")
@login_required(Role.ADMIN)
def admin_dashboard_data():
    return dashboard.overview(), 200, {"Cache-Control": "no-store"}
