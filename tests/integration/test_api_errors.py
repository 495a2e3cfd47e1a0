"""The API's error contract (SPEC §5), request by request: one body shape {code, status, message,
errors?} for every error, the right 4xx for each kind of bad input, pagination and Location
headers, and bad input that changes nothing in the database and never gets a 500."""
import json
import secrets
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from tests.processes import wait_until

MISSING = "00000000-0000-0000-0000-000000000000"


def assert_error(response, code: int) -> dict:
    """The one error shape: exactly code/status/message, plus errors for validation failures."""
    assert response.status_code == code, (response.status_code, response.get_data(as_text=True)[:500])
    assert response.mimetype == "application/json", response.mimetype
    body = response.get_json()
    assert isinstance(body, dict), body
    assert set(body) in ({"code", "status", "message"}, {"code", "status", "message", "errors"}), body
    assert body["code"] == code
    assert isinstance(body["status"], str) and body["status"]
    assert isinstance(body["message"], str) and body["message"]
    if "errors" in body:
        assert isinstance(body["errors"], dict) and body["errors"], body
        for field, reasons in body["errors"].items():
            assert isinstance(field, str)
            assert reasons, (field, reasons)
    return body


def _show_body(**changes) -> dict:
    body = {"title": f"Show {secrets.token_hex(3)}", "venue": "Hall",
            "starts_at": (datetime.now(timezone.utc) + timedelta(days=30)).isoformat(),
            "price": 1000, "capacity": 10}
    body.update(changes)
    return body


# ----- malformed bodies: 400, 413, non-JSON content type -----------------------------------------

@pytest.mark.parametrize("raw", [b"{", b'{"show_id": "x",}', b"not json at all", b"\xff\xfe\x00garbage", b"[1, 2"])
def test_malformed_json_is_400(client, customer, raw):
    response = client.post("/bookings", data=raw, headers={**customer["headers"], "Content-Type": "application/json"})
    body = assert_error(response, 400)
    assert "json" in body["message"].lower()


def test_malformed_json_is_400_for_admin_and_anonymous_routes_too(client, admin_headers):
    assert_error(client.post("/shows", data=b"{oops", headers={**admin_headers, "Content-Type": "application/json"}), 400)
    assert_error(client.post("/auth/register", data=b"{oops", content_type="application/json"), 400)
    assert_error(client.post("/auth/token", data=b"{oops", content_type="application/json"), 400)


def test_body_over_64_kib_is_413(client, customer, admin_headers):
    big = json.dumps({"show_id": "x" * (64 * 1024 + 1), "qty": 1, "payment_method": "tok_ok"})
    assert_error(client.post("/bookings", data=big, headers={**customer["headers"], "Content-Type": "application/json"}), 413)
    assert_error(client.post("/shows", data=json.dumps(_show_body(title="t" * 70_000)),
                             headers={**admin_headers, "Content-Type": "application/json"}), 413)
    assert_error(client.post("/auth/register", data=b"{" + b" " * (65 * 1024) + b"}", content_type="application/json"), 413)


def test_a_body_just_under_the_limit_is_read_and_judged_on_its_fields(client, customer):
    body = json.dumps({"show_id": "x" * 60_000, "qty": 1, "payment_method": "tok_ok"})
    assert len(body) < 64 * 1024
    errors = assert_error(client.post("/bookings", data=body,
                                      headers={**customer["headers"], "Content-Type": "application/json"}), 422)["errors"]
    assert "show_id" in errors


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                                          "application/xml", None])
def test_a_body_that_is_not_json_is_415(client, customer, admin_headers, make_show, content_type):
    """A valid booking sent as another media type is refused as such, not read as "no fields"."""
    show = make_show()
    payload = json.dumps({"show_id": show["id"], "qty": 1, "payment_method": "tok_ok"})
    headers = {"Content-Type": content_type} if content_type else {}
    body = assert_error(client.post("/bookings", data=payload, headers={**customer["headers"], **headers}), 415)
    assert "json" in body["message"].lower() and "errors" not in body
    assert_error(client.patch(f"/shows/{show['id']}", data=json.dumps({"title": "x"}),
                              headers={**admin_headers, **headers}), 415)
    assert_error(client.post("/auth/token", data=payload, headers=headers), 415)


def test_json_media_types_with_parameters_or_suffixes_are_json(client, customer, make_show):
    show = make_show()
    payload = json.dumps({"show_id": show["id"], "qty": 1, "payment_method": "tok_ok"})
    for content_type in ("application/json; charset=utf-8", "application/vnd.boxoffice+json"):
        response = client.post("/bookings", data=payload, headers={**customer["headers"], "Content-Type": content_type})
        assert response.status_code == 202, (content_type, response.status_code, response.json)


def test_415_is_documented_wherever_a_json_body_is_read(client):
    spec = client.get("/openapi.json").json
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method != "parameters" and "requestBody" in operation:
                assert "415" in operation["responses"], (method, path)


# ----- 422: unknown and invalid fields, per field --------------------------------------------------

def test_unknown_body_fields_are_422_per_field(client, customer, make_show):
    show = make_show()
    response = client.post("/bookings", headers=customer["headers"],
                           json={"show_id": show["id"], "qty": 1, "payment_method": "tok_ok", "price": 0, "admin": True})
    errors = assert_error(response, 422)["errors"]
    assert set(errors) == {"price", "admin"}
    assert all("Unknown field" in " ".join(map(str, reasons)) for reasons in errors.values())


def test_each_invalid_field_is_named_with_its_reason(client, customer, admin_headers):
    errors = assert_error(client.post("/bookings", headers=customer["headers"],
                                      json={"qty": 11, "payment_method": ""}), 422)["errors"]
    assert set(errors) == {"show_id", "qty", "payment_method"}
    assert "required" in " ".join(errors["show_id"]).lower()

    errors = assert_error(client.post("/shows", headers=admin_headers,
                                      json=_show_body(price=-1, capacity="ten", starts_at="tomorrow")), 422)["errors"]
    assert set(errors) == {"price", "capacity", "starts_at"}

    errors = assert_error(client.post("/auth/register", json={"email": "not-an-email", "password": "short", "name": ""}), 422)["errors"]
    assert set(errors) == {"email", "password", "name"}


def test_unknown_query_parameters_and_bad_paging_are_422(client):
    assert set(assert_error(client.get("/shows?colour=red"), 422)["errors"]) == {"colour"}
    assert "page" in assert_error(client.get("/shows?page=0"), 422)["errors"]
    assert "page_size" in assert_error(client.get("/shows?page_size=-3"), 422)["errors"]
    assert "page" in assert_error(client.get("/shows?page=abc"), 422)["errors"]


def test_a_json_body_that_is_not_an_object_is_422(client, customer):
    for payload in ([1, 2], "text", 5, None):
        response = client.post("/bookings", headers=customer["headers"], data=json.dumps(payload),
                               content_type="application/json")
        assert response.status_code in (400, 422), (payload, response.status_code)
        assert_error(response, response.status_code)


# ----- routing: 404 and 405 ---------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/nothing-here", "/bookings/x/y/z", "/shows/" + MISSING, "/docs/assets/secret.txt"])
def test_unknown_urls_and_ids_are_404(client, path):
    assert_error(client.get(path), 404)


def test_wrong_method_is_405_with_allow(client, customer):
    for method, path in [("delete", "/shows"), ("put", "/bookings"), ("get", "/auth/token"),
                         ("delete", f"/bookings/{MISSING}"), ("get", f"/bookings/{MISSING}/cancel")]:
        response = getattr(client, method)(path, headers=customer["headers"])
        assert_error(response, 405)
        allowed = {m.strip() for m in response.headers["Allow"].split(",")}
        assert allowed and method.upper() not in allowed, (path, allowed)
    assert "POST" in {m.strip() for m in client.get("/auth/token").headers["Allow"].split(",")}


def test_auth_errors_have_the_shape(client, customer, admin_headers):
    assert_error(client.get(f"/bookings/{MISSING}"), 401)
    assert_error(client.get(f"/bookings/{MISSING}", headers={"Authorization": "Bearer nope"}), 401)
    assert_error(client.post("/auth/token", json={"email": "nobody@example.com", "password": "x"}), 401)
    assert_error(client.post("/shows", headers=customer["headers"], json=_show_body()), 403)
    assert_error(client.get(f"/bookings/{MISSING}", headers=customer["headers"]), 404)


# ----- pagination and Location ------------------------------------------------------------------

def _pagination(response) -> dict:
    assert response.status_code == 200, response.json
    return json.loads(response.headers["X-Pagination"])


def test_shows_are_paginated_with_an_x_pagination_header(client, make_show):
    for _ in range(3):
        make_show()
    first = client.get("/shows?page=1&page_size=2")
    meta = _pagination(first)
    assert len(first.json) == 2
    assert meta["page"] == 1 and meta["total"] >= 3 and meta["total_pages"] == -(-meta["total"] // 2)
    assert meta["next_page"] == 2
    second = client.get("/shows?page=2&page_size=2")
    assert _pagination(second)["page"] == 2
    assert not {s["id"] for s in first.json} & {s["id"] for s in second.json}
    # a page past the end is empty, not an error
    past = client.get(f"/shows?page={meta['total_pages'] + 1}&page_size=2")
    assert past.status_code == 200 and past.json == []


@pytest.mark.usefixtures("worker")
def test_my_bookings_are_paginated_with_an_x_pagination_header(client, customer, make_show, book):
    show = make_show(capacity=10)
    ids = [book(customer, show["id"], qty=1).json["id"] for _ in range(3)]

    def projected():
        response = client.get("/me/bookings?page_size=100", headers=customer["headers"])
        return {e["booking_id"] for e in response.json} >= set(ids)
    wait_until(projected, 60, 0.2, "the my page to list the three bookings")

    first = client.get("/me/bookings?page=1&page_size=2", headers=customer["headers"])
    meta = _pagination(first)
    assert len(first.json) == 2 and meta["total"] == 3 and meta["total_pages"] == 2
    second = client.get("/me/bookings?page=2&page_size=2", headers=customer["headers"])
    assert _pagination(second)["page"] == 2 and len(second.json) == 1
    assert {e["booking_id"] for e in first.json + second.json} == set(ids)


def test_post_shows_is_201_with_the_shows_location(client, admin_headers):
    response = client.post("/shows", headers=admin_headers, json=_show_body())
    assert response.status_code == 201
    location = response.headers["Location"]
    assert location.endswith(f"/shows/{response.json['id']}")
    assert client.get(location).json == response.json


def test_post_bookings_is_202_with_the_bookings_location(client, customer, make_show):
    show = make_show()
    response = client.post("/bookings", headers=customer["headers"],
                           json={"show_id": show["id"], "qty": 1, "payment_method": "tok_ok"})
    assert response.status_code == 202 and response.json["status"] == "PENDING"
    location = response.headers["Location"]
    assert location.endswith(f"/bookings/{response.json['id']}")
    assert client.get(location, headers=customer["headers"]).json["id"] == response.json["id"]


# ----- bad input changes nothing, and is never a 500 --------------------------------------------

def _row_counts(app, show_id: str) -> dict:
    from models import db
    from models.bookings import Booking
    from models.payments import Payment
    from models.shows import Show
    from models.tickets import Ticket
    from models.users import User
    with app.app_context():
        counts = {model.__tablename__: db.session.scalar(select(func.count()).select_from(model))
                  for model in (Booking, Payment, Ticket, Show, User)}
        show = db.session.get(Show, show_id)
        counts["the show"] = (show.title, show.venue, show.starts_at, show.price, show.capacity, show.remaining,
                              show.updated_at)
        db.session.rollback()
    return counts


def _bad_requests(show_id: str) -> list[tuple]:
    """(method, path, kwargs, role) of requests that must all be refused."""
    good = {"show_id": show_id, "qty": 1, "payment_method": "tok_ok"}
    booking = [
        {**good, "qty": 0}, {**good, "qty": 11}, {**good, "qty": -1}, {**good, "qty": "1"}, {**good, "qty": 1.5},
        {**good, "qty": True}, {**good, "show_id": MISSING}, {**good, "show_id": ""}, {**good, "show_id": "a\x00b"},
        {**good, "show_id": 5}, {**good, "payment_method": None}, {**good, "payment_method": "x" * 65},
        {**good, "payment_method": "tok\x00ok"}, {**good, "extra": 1}, {"qty": 1}, {}, [good],
        {**good, "show_id": "' OR 1=1 --"}, {**good, "qty": 10**30},
    ]
    requests = [("post", "/bookings", {"json": body}, "customer") for body in booking]
    requests += [("post", "/bookings", {"data": raw, "content_type": "application/json"}, "customer")
                 for raw in (b"{", b'{"qty": 1,,}', b"\x00", b'{"show_id": "' + b"a" * 70_000 + b'"}')]
    requests += [("post", "/bookings", {"json": good}, "admin"), ("post", "/bookings", {"json": good}, None)]
    show = _show_body()
    shows = [
        {**show, "capacity": -1}, {**show, "price": -5}, {**show, "price": "1000"}, {**show, "capacity": 10**7},
        {**show, "starts_at": "2030-01-01T10:00:00"}, {**show, "starts_at": "yesterday"}, {**show, "title": ""},
        {**show, "title": "a\x00b"}, {**show, "title": "t" * 201}, {**show, "remaining": 5}, {**show, "id": MISSING},
        {k: v for k, v in show.items() if k != "venue"}, {**show, "price": 10**20},
    ]
    requests += [("post", "/shows", {"json": body}, "admin") for body in shows]
    requests += [("post", "/shows", {"json": show}, "customer"), ("post", "/shows", {"json": show}, None)]
    requests += [("patch", f"/shows/{show_id}", {"json": body}, "admin")
                 for body in ({"capacity": -1}, {"price": "x"}, {"title": ""}, {"remaining": 1}, {"id": MISSING},
                              {"title": "a\x00"})]
    requests += [("patch", f"/shows/{show_id}", {"json": {"title": "hijack"}}, "customer")]
    requests += [("post", "/auth/register", {"json": body}, None)
                 for body in ({"email": "x", "password": "password-1", "name": "n"},
                              {"email": "ok@example.com", "password": "short", "name": "n"},
                              {"email": "ok@example.com", "password": "password-1", "name": "n", "role": "admin"},
                              {"email": "ok@example.com", "password": "pass\x00word-1", "name": "n"})]
    return requests


def test_bad_input_changes_nothing_and_is_never_a_500(app, client, customer, admin_headers, make_show):
    show = make_show(capacity=7)
    before = _row_counts(app, show["id"])
    seen: dict[int, int] = {}
    for method, path, kwargs, role in _bad_requests(show["id"]):
        headers = {"customer": customer["headers"], "admin": admin_headers}.get(role, {})
        response = getattr(client, method)(path, headers=headers, **kwargs)
        assert 400 <= response.status_code < 500, (method, path, kwargs, role, response.status_code, response.json)
        assert_error(response, response.status_code)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
    after = _row_counts(app, show["id"])
    assert after == before
    assert client.get(f"/shows/{show['id']}").json == show
    assert {400, 401, 403, 413, 422} <= set(seen), seen
