"""The pages through the app and a real worker: the seat map drawn agrees seat for seat with the
JSON seat page (sold, held, blocked), answers If-None-Match with 304 and follows a sale within
about a second; the waiting room speaks the browser's language and carries the shop link; the
dashboard's data is for admins only and counts what the read models hold."""
import secrets
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

import pytest

from tests.integration.test_seating import HALL, PRICES, book_seats, seat_statuses
from tests.processes import wait_until
from web.seat_svg import STATE_OF_SHAPE

pytestmark = pytest.mark.usefixtures("worker")
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def reserved_show(client, admin_headers):
    seat_map = client.post("/seat-maps", headers=admin_headers, json=HALL).json

    def make(**extra):
        response = client.post("/shows", headers=admin_headers, json={
            "title": f"Pages {secrets.token_hex(3)}", "venue": "Small hall", "seat_map_id": seat_map["id"],
            "prices": PRICES, "starts_at": (datetime.now(timezone.utc) + timedelta(days=20)).isoformat(), **extra})
        assert response.status_code == 201, response.json
        return response.json
    return make


def drawn_states(picture: bytes) -> dict[str, str]:
    root = ET.fromstring(picture)
    return {use.get("id")[1:]: STATE_OF_SHAPE[use.get("href")[1:]] for use in root.find(f"{SVG}g[@class='seats']")}


def test_the_picture_agrees_with_the_json_page_seat_for_seat(client, admin_headers, customer, reserved_show,
                                                             wait_for, gateway):
    show = reserved_show()
    picture = client.get(f"/shows/{show['id']}/seats.svg")
    assert picture.status_code == 200 and picture.mimetype == "image/svg+xml"
    assert picture.headers["Cache-Control"] == "public, max-age=1"
    assert picture.headers["Content-Security-Policy"] == "default-src 'none'; style-src 'unsafe-inline'"
    assert set(drawn_states(picture.data).values()) == {"AVAILABLE"}
    etag = picture.headers["ETag"]
    assert client.get(f"/shows/{show['id']}/seats.svg", headers={"If-None-Match": etag}).status_code == 304
    assert etag != client.get(f"/shows/{show['id']}/seats").headers["ETag"]  # another representation

    sold = book_seats(client, customer, show["id"], seats=["1-1-1", "1-1-2"]).json["id"]
    wait_for(sold, status="PAID")
    assert client.patch(f"/shows/{show['id']}", headers=admin_headers,
                        json={"blocked_seats": ["2-1-8"]}).status_code == 200
    gateway.set_faults(latency_ms=4000)  # the charge waits: its seats stay HELD meanwhile
    try:
        held = book_seats(client, customer, show["id"], seats=["1-2-4"]).json["id"]
        wait_for(held, status="CONFIRMED")
        expected = seat_statuses(client, show["id"])
        assert (expected["1-1-1"], expected["1-2-4"], expected["2-1-8"]) == ("SOLD", "HELD", "BLOCKED")
        started = time.monotonic()
        latest = wait_until(lambda: (lambda page: page if drawn_states(page.data) == expected else None)(
            client.get(f"/shows/{show['id']}/seats.svg")), 3, 0.05, "the picture to follow the JSON page")
        assert time.monotonic() - started <= 1.5  # cached at most a second
        assert latest.headers["ETag"] != etag
        assert client.get(f"/shows/{show['id']}/seats.svg", headers={"If-None-Match": etag}).status_code == 200
        version = ET.fromstring(latest.data).get("data-version")
        assert version == str(client.get(f"/shows/{show['id']}/seats").json["version"])
    finally:
        gateway.clear_faults()
    wait_for(held, status="PAID")


def test_the_picture_refuses_what_the_json_page_refuses(client, make_show, reserved_show):
    general = make_show()
    assert client.get(f"/shows/{general['id']}/seats.svg").status_code == 404
    assert client.get("/shows/no-such-show/seats.svg").status_code == 404
    show = reserved_show()
    unknown = client.get(f"/shows/{show['id']}/seats.svg?colour=red")
    assert unknown.status_code == 422 and unknown.json["errors"] == {"colour": ["Unknown field."]}
    spec = client.get("/openapi.json").json["paths"]
    assert "image/svg+xml" in spec["/shows/{show_id}/seats.svg"]["get"]["responses"]["200"]["content"]
    assert not [path for path in spec if "waiting-room" in path or "dashboard" in path]


def test_the_waiting_room_speaks_the_browsers_language_and_links_the_shop(app, client, reserved_show):
    show = reserved_show()
    english = client.get(f"/shows/{show['id']}/waiting-room", headers={"Accept-Language": "en-GB,en;q=0.9"})
    assert english.status_code == 200 and english.mimetype == "text/html"
    assert '<html lang="en">' in english.text and "Waiting room" in english.text and show["title"] in english.text
    assert "script-src" not in english.headers["Content-Security-Policy"]  # default-src 'self': our files only
    assert english.headers["Content-Security-Policy"].startswith("default-src 'self'")
    korean = client.get(f"/shows/{show['id']}/waiting-room", headers={"Accept-Language": "ko-KR,ko;q=0.9,en;q=0.5"})
    assert '<html lang="ko">' in korean.text and "대기실" in korean.text
    assert 'data-shop=""' in korean.text
    app.config["SHOP_URL_TEMPLATE"] = "https://shop.example/{show_id}?admission={token}"
    try:
        linked = client.get(f"/shows/{show['id']}/waiting-room")
        assert 'data-shop="https://shop.example/{show_id}?admission={token}"' in linked.text
    finally:
        app.config["SHOP_URL_TEMPLATE"] = None
    assert client.get("/shows/no-such-show/waiting-room").status_code == 404
    for asset in ("common.js", "waiting_room.js", "dashboard.js", "pages.css"):
        assert client.get(f"/pages/static/{asset}").status_code == 200


def test_the_dashboard_data_is_for_admins_and_counts_the_read_models(client, admin_headers, customer,
                                                                      reserved_show, wait_for):
    page = client.get("/admin/dashboard")
    assert page.status_code == 200 and "dashboard.js" in page.text  # the page holds no data: anyone may load it
    assert client.get("/admin/dashboard/data").status_code == 401
    assert client.get("/admin/dashboard/data", headers=customer["headers"]).status_code == 403

    on_sale = datetime.now(timezone.utc) + timedelta(seconds=1)
    show = reserved_show(on_sale_at=on_sale.isoformat(), waiting_room={"admit_per_minute": 60})
    data = client.get("/admin/dashboard/data", headers=admin_headers).json
    seen = next(each for each in data["shows"] if each["id"] == show["id"])
    assert seen["queue"]["waiting"] == 0 and seen["queue"]["admit_per_minute"] == 60
    assert {c["name"]: c["available"] for c in seen["seats"]["categories"]} == {"VIP": 9, "R": 9}
    assert set(data) == {"generated_at", "bookings_per_second", "charges", "consistency", "shows"}

    assert client.post(f"/shows/{show['id']}/queue", headers=customer["headers"]).status_code == 201
    time.sleep(1.1)  # the next sample may be taken
    later = client.get("/admin/dashboard/data", headers=admin_headers).json
    seen = next(each for each in later["shows"] if each["id"] == show["id"])
    assert seen["queue"]["waiting"] == 1  # no beat here: no admission job runs
    assert later["bookings_per_second"], "two samples a second apart make a rate"
