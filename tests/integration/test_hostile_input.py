"""A hostile-input corpus: every string field, query parameter and header of every endpoint gets
what breaks parsers and databases (huge integers, 1e400/NaN/Infinity, deep nesting, lone
surrogates, NUL, overlong strings, wrong types, non-UTF-8 bytes, non-ASCII digits, bodies that are
not objects, duplicate keys, huge headers). Each request must get a 4xx in the API's error shape
and change nothing (the tables' row counts and the show, customer and admin it aims at).

The first part uses the Flask test client against the suite's PostgreSQL and Redis; the second
sends a part of the corpus, the oversized and malformed requests gunicorn itself refuses, and
concurrent registrations of one e-mail over real HTTP to gunicorn as the stack runs it.
"""
import base64
import json
import secrets
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import pytest
import requests
from sqlalchemy import func, select, text

from tests.integration.conftest import bearer
from tests.integration.observed_stack import private_broker, start_api
from tests.integration.test_api_errors import assert_error

pytestmark = pytest.mark.server_independent  # CI runs it once (.ci/run)

MISSING = "00000000-0000-0000-0000-000000000000"
HOLE = "__HOLE__"

# Raw JSON literals put in place of one field's value, and the status each must get.
# 422: valid JSON with a value no field takes; 400: not JSON as the API reads it.
HOSTILE_VALUES = [
    ("int_5000_digits", "9" * 5000, 422),
    ("negative_int_5000_digits", "-" + "9" * 5000, 422),
    ("int_101_digits", "1" * 101, 422),
    ("int_10_pow_30", str(10 ** 30), 422),
    ("float_1e400", "1e400", 422),
    ("float_-1e400", "-1e400", 422),
    ("float_long_mantissa", "0." + "1" * 5000, 422),
    ("NaN", "NaN", 400),
    ("Infinity", "Infinity", 400),
    ("-Infinity", "-Infinity", 400),
    ("lone_high_surrogate", '"\\ud800"', 422),
    ("lone_low_surrogate_inside", '"ab\\udfffcd"', 422),
    ("reversed_surrogate_pair", '"\\udc00\\ud800"', 422),
    ("nul", '"\\u0000"', 422),
    ("nul_inside", '"tok\\u0000ok"', 422),
    ("overlong_string", json.dumps("x" * 5000), 422),
    ("empty_string", '""', 422),
    ("null", "null", 422),
    ("true", "true", 422),
    ("array", "[1]", 422),
    ("object", '{"a": 1}', 422),
    ("array_nested_30000", "[" * 30000 + "]" * 30000, 400),
    ("object_nested_5000", '{"a":' * 5000 + "1" + "}" * 5000, 400),
    ("array_nested_40", "[" * 40 + "]" * 40, 400),
    ("array_nested_30000_unclosed", "[" * 30000, 400),
]

# Whole bodies (bytes) and their status.
HOSTILE_BODIES = [
    ("array_nested_30000", b"[" * 30000, 400),
    ("array_nested_30000_closed", b"[" * 30000 + b"]" * 30000, 400),
    ("object_nested_30000", b'{"a":' * 10000, 400),
    ("top_level_array", b'[{"email": "a@example.com"}]', 422),
    ("top_level_string", b'"text"', 422),
    ("top_level_null", b"null", 422),
    ("top_level_number", b"5", 422),
    ("top_level_huge_number", b"9" * 5000, 422),
    ("top_level_NaN", b"NaN", 400),
    ("top_level_lone_surrogate", b'"\\ud800"', 422),
    ("key_lone_surrogate", b'{"\\ud800": 1}', 422),
    ("key_nul", b'{"a\\u0000": 1}', 422),
    ("non_utf8_byte", b'{"email": "\xff"}', 400),
    ("utf8_encoded_surrogate", b'{"email": "\xed\xa0\x80"}', 400),
    ("overlong_utf8", b'{"email": "\xc0\xaf"}', 400),
    ("latin1", '{"name": "caf\xe9"}'.encode("latin-1"), 400),
    ("utf16", '{"email": "a@example.com"}'.encode("utf-16"), 400),
    ("utf8_bom", b'\xef\xbb\xbf{"email": "a@example.com"}', 400),
    ("raw_nul_byte", b'{"email": "a\x00"}', 400),
    ("trailing_garbage", b'{"email": "a@example.com"} x', 400),
    ("two_documents", b'{} {}', 400),
    ("single_quotes", b"{'email': 'a@example.com'}", 400),
    ("truncated", b'{"email": "a@exa', 400),
    ("comment", b'{"email": "a@example.com" /* hi */}', 400),
]


def _now_plus(days: int) -> str:
    return (datetime.now(timezone.utc) + timedelta(days=days)).isoformat()


@pytest.fixture(scope="module")
def target(app, admin_headers):
    """A show, a customer and the admin every hostile request aims at."""
    client = app.test_client()
    show = client.post("/shows", headers=admin_headers, json={
        "title": f"Target {secrets.token_hex(3)}", "venue": "Hall", "starts_at": _now_plus(30),
        "price": 1000, "capacity": 10}).json
    email = f"target-{secrets.token_hex(5)}@example.com"
    user = client.post("/auth/register", json={"email": email, "password": "password-1", "name": "T"}).json
    token = client.post("/auth/token", json={"email": email, "password": "password-1"}).json["access_token"]
    return {"show": show, "customer": {"headers": bearer(token), "id": user["id"], "email": email},
            "admin": admin_headers}


def _state(app, target) -> dict:
    """Row counts of the tables a request can add to, and the rows the corpus aims at."""
    from models import db
    from models.users import User
    with app.app_context():
        counts = {table: db.session.scalar(text(f"SELECT count(*) FROM {table}"))
                  for table in ("users", "shows", "bookings", "payments", "tickets")}
        show = db.session.execute(text("SELECT * FROM shows WHERE id = :id"), {"id": target["show"]["id"]}).one()
        customer = db.session.get(User, target["customer"]["id"])
        state = {"counts": counts, "show": tuple(show),
                 "customer": (customer.email, customer.name, customer.password_hash, customer.role),
                 "customer_bookings": db.session.scalar(text("SELECT count(*) FROM bookings WHERE customer_id = :c"),
                                                        {"c": customer.id})}
        db.session.rollback()
    return state


def _send(client, target, method: str, path: str, role: str | None, **kwargs):
    headers = {"customer": target["customer"]["headers"], "admin": target["admin"]}.get(role, {})
    return client.open(path, method=method.upper(), headers={**headers, **kwargs.pop("headers", {})}, **kwargs)


def _assert_refused(app, client, target, expected: int | tuple, method: str, path: str, role: str | None, **kwargs):
    before = _state(app, target)
    response = _send(client, target, method, path, role, **kwargs)
    expected = (expected,) if isinstance(expected, int) else expected
    assert response.status_code in expected, (method, path, response.status_code, response.get_data(as_text=True)[:300])
    body = assert_error(response, response.status_code)
    assert _state(app, target) == before
    return body


# ----- every field of every JSON body ----------------------------------------------------------

def _bodies(target) -> list[tuple[str, str, str | None, dict, list[str]]]:
    """(method, path, role, a valid body, its fields) of every operation that reads a JSON body."""
    show_id = target["show"]["id"]
    show = {"title": "T", "venue": "V", "starts_at": _now_plus(10), "price": 100, "capacity": 5}
    return [
        ("post", "/auth/register", None, {"email": "hostile@example.com", "password": "password-1", "name": "N"},
         ["email", "password", "name"]),
        ("post", "/auth/token", None, {"email": target["customer"]["email"], "password": "password-1"},
         ["email", "password"]),
        ("post", "/shows", "admin", show, list(show)),
        ("patch", f"/shows/{show_id}", "admin", {"title": "Changed"}, list(show)),
        ("post", "/bookings", "customer", {"show_id": show_id, "qty": 1, "payment_method": "tok_ok"},
         ["show_id", "qty", "payment_method"]),
    ]


def _field_cases():
    probe = {"show": {"id": "<show>"}, "customer": {"email": "x@example.com"}}
    for method, path, role, good, names in _bodies(probe):
        for name in names:
            for label, literal, status in HOSTILE_VALUES:
                yield pytest.param(method, path, role, name, literal, status, id=f"{method} {path} {name}={label}")


@pytest.mark.parametrize("method, path, role, name, literal, status", list(_field_cases()))
def test_a_hostile_value_in_any_body_field_is_refused_and_changes_nothing(app, client, target, method, path, role,
                                                                        name, literal, status):
    path = path.replace("<show>", target["show"]["id"])
    good = next(b for m, p, r, b, _ in _bodies(target) if (m, p) == (method, path))
    raw = json.dumps({**good, name: HOLE}).replace(json.dumps(HOLE), literal)
    _assert_refused(app, client, target, status, method, path, role, data=raw.encode(),
                    content_type="application/json")


@pytest.mark.parametrize("label, raw, status", [pytest.param(*c, id=c[0]) for c in HOSTILE_BODIES])
def test_a_hostile_body_is_refused_and_changes_nothing_on_every_endpoint(app, client, target, label, raw, status):
    for method, path, role, _, _ in _bodies(target):
        _assert_refused(app, client, target, status, method, path, role, data=raw, content_type="application/json")


def test_a_duplicate_key_is_400_on_every_endpoint(app, client, target):
    for method, path, role, good, _ in _bodies(target):
        for name, value in good.items():
            raw = json.dumps(good)[:-1] + f', "{name}": {json.dumps(value)}}}'
            body = _assert_refused(app, client, target, 400, method, path, role, data=raw.encode(),
                                   content_type="application/json")
            assert "twice" in body["message"], body


def test_an_unknown_field_with_a_hostile_value_is_refused(app, client, target):
    for method, path, role, good, _ in _bodies(target):
        for label, literal, status in HOSTILE_VALUES:
            raw = json.dumps({**good, "extra": HOLE}).replace(json.dumps(HOLE), literal)
            _assert_refused(app, client, target, (status, 422), method, path, role, data=raw.encode(),
                            content_type="application/json")


def test_a_lone_surrogate_is_named_per_field(client, target):
    body = assert_error(client.post("/auth/register", data=b'{"email": "\\ud800@example.com", "password": '
                                    b'"pass\\ud800word", "name": "\\udfff"}', content_type="application/json"), 422)
    assert set(body["errors"]) == {"email", "password", "name"}
    assert all("surrogate" in " ".join(reasons) for reasons in body["errors"].values())


def test_a_5000_digit_integer_in_the_token_request_is_422_without_a_token(client):
    raw = b'{"email": "a@example.com", "password": ' + b"9" * 5000 + b"}"
    body = assert_error(client.post("/auth/token", data=raw, content_type="application/json"), 422)
    assert "password" in body["errors"]


# ----- query parameters -----------------------------------------------------------------------

NUMERIC_QUERY_VALUES = ["\u00b2", "\u0661", "\uff11", "\u09e7", "1_0", " 1", "1 ", "+1", "0x10", "1e3", "1.0",
                        "9" * 5000, "9" * 19, "", "NaN", "-", "%00", "1%00", "%ED%A0%80", "%FF", "%C0%AF", "%E2%80%8B1"]


PAGINATED = [("/shows", None), ("/me/bookings", "customer"), ("/admin/task-failures", "admin")]


@pytest.mark.parametrize("param", ["page", "page_size"])
@pytest.mark.parametrize("value", NUMERIC_QUERY_VALUES, ids=[ascii(v)[:20] for v in NUMERIC_QUERY_VALUES])
def test_a_numeric_query_parameter_takes_only_ascii_digits(app, client, target, param, value):
    for path, role in PAGINATED:
        body = _assert_refused(app, client, target, 422, "get", f"{path}?{param}={value}", role)
        if "errors" in body:
            assert param in body["errors"], body


@pytest.mark.parametrize("query", ["page=%C2%B2", "page_size=%C2%B2", "open=%C2%B2", "open=%00", "open=" + "1" * 5000,
                                   "colour=red", "%00=1", "%ED%A0%80=1", "page=1&page=%C2%B2"])
def test_hostile_query_strings_are_422(app, client, target, query):
    _assert_refused(app, client, target, 422, "get", f"/admin/task-failures?{query}", "admin")


def test_a_page_past_the_largest_is_422_not_a_database_error(app, client, target):
    for page in ("1000001", "9" * 18, "9" * 40, "9" * 4000):
        _assert_refused(app, client, target, 422, "get", f"/shows?page={page}", None)
    assert client.get("/shows?page=00000001").status_code == 200


# ----- headers and path segments -----------------------------------------------------------------

def _deep_json_token() -> str:
    header = base64.urlsafe_b64encode(b"[" * 6000).decode().rstrip("=")
    return f"{header}.e30.c2ln"


def _huge_int_token() -> str:
    header = base64.urlsafe_b64encode(b'{"alg": "HS256", "kid": ' + b"9" * 5000 + b"}").decode().rstrip("=")
    return f"{header}.e30.c2ln"


AUTHORIZATIONS = ["Bearer " + "a" * 60000, "Bearer \x00", "Bearer", "Bearer ", "Basic Zm9vOmJhcg==", "Bearer a.b.c",
                  "Bearer \xff\xfe", "bearer", "Bearer " + _deep_json_token(), "Bearer " + _huge_int_token(),
                  "Bearer e30.e30.e30", "Bearer ..", "Token x", "\x00"]


@pytest.mark.parametrize("authorization", AUTHORIZATIONS, ids=[ascii(a)[:24] for a in AUTHORIZATIONS])
def test_a_hostile_authorization_header_is_401_everywhere(app, client, target, authorization):
    show_id = target["show"]["id"]
    good = {"show_id": show_id, "qty": 1, "payment_method": "tok_ok"}
    for method, path, kwargs in [("post", "/bookings", {"json": good}), ("get", "/me/bookings", {}),
                                 ("get", f"/bookings/{MISSING}", {}), ("post", f"/bookings/{MISSING}/cancel", {}),
                                 ("post", f"/bookings/{MISSING}/ticket", {}), ("patch", f"/shows/{show_id}", {"json": {"title": "x"}}),
                                 ("post", "/shows", {"json": {"title": "x"}}), ("get", "/admin/task-failures", {}),
                                 ("get", "/admin/consistency", {}), ("post", "/admin/task-failures/1/retry", {})]:
        _assert_refused(app, client, target, 401, method, path, None, headers={"Authorization": authorization}, **kwargs)


IDEMPOTENCY_KEYS = ["", "\x00", "a\x00b", "k" * 256, "caf\xe9", "\xff\xfe", "tab\there", "\x7f", "\x01"]


@pytest.mark.parametrize("key", IDEMPOTENCY_KEYS, ids=[ascii(k)[:20] for k in IDEMPOTENCY_KEYS])
def test_a_hostile_idempotency_key_is_422_and_books_nothing(app, client, target, key):
    good = {"show_id": target["show"]["id"], "qty": 1, "payment_method": "tok_ok"}
    body = _assert_refused(app, client, target, 422, "post", "/bookings", "customer", json=good,
                           headers={"Idempotency-Key": key})
    assert "Idempotency-Key" in body["errors"], body


UNKNOWN_HEADERS = {"Admission-Token": "\x00" + "\xff" * 100, "X-Anything": "a" * 60000, "X-Request-ID": "\x00forged<script>",
                   "Accept": "\x00", "Content-Language": "\xff", "If-None-Match": '"' + "9" * 5000 + '"'}


def test_hostile_unknown_headers_change_nothing(app, client, target):
    before = _state(app, target)
    response = client.get("/shows", headers=UNKNOWN_HEADERS)
    assert response.status_code == 200
    assert response.headers["X-Request-ID"].isalnum()  # a forged id is replaced, not echoed
    bad = {"show_id": target["show"]["id"], "qty": "one", "payment_method": "tok_ok"}
    _assert_refused(app, client, target, 422, "post", "/bookings", "customer", json=bad, headers=UNKNOWN_HEADERS)
    assert _state(app, target) == before


@pytest.mark.parametrize("method, path, role, status", [
    ("get", "/shows/" + "x" * 5000, None, 404),
    ("get", "/shows/%ED%A0%80", None, 404),
    ("get", "/shows/%00", None, 422),
    ("get", "/bookings/%FF%FE", "customer", 404),
    ("post", "/bookings/" + "9" * 5000 + "/cancel", "customer", 404),
    ("post", "/bookings/%00/ticket", "customer", 422),
    ("post", "/admin/task-failures/" + "9" * 5000 + "/retry", "admin", 404),
    ("post", "/admin/task-failures/%C2%B2/retry", "admin", 404),
    ("post", "/admin/task-failures/%D9%A1/retry", "admin", 404),  # an Arabic-Indic 1 is not failure 1
    ("post", "/admin/task-failures/%EF%BC%91/retry", "admin", 404),  # nor a fullwidth one
    ("patch", "/shows/" + "\u00b2", "admin", (404, 415)),
])
def test_hostile_path_segments_are_4xx(app, client, target, method, path, role, status):
    _assert_refused(app, client, target, status, method, path, role)


def test_every_blueprint_reads_its_arguments_with_the_strict_parser(app):
    """A blueprint made with flask_smorest.Blueprint would parse with webargs' defaults again."""
    import flask_smorest
    from web.parsing import Blueprint
    smorest = [bp for bp in app.blueprints.values() if isinstance(bp, flask_smorest.Blueprint)]
    assert len(smorest) >= 6
    assert [bp.name for bp in smorest if not isinstance(bp, Blueprint)] == []


# ----- over real HTTP: gunicorn as the stack runs it --------------------------------------------

@pytest.fixture(scope="module")
def api_url(workdir):
    process, url = start_api(workdir, {"REDIS_URL": private_broker()}, name="hostile-api", workers=2)
    yield url
    process.stop()


def _raw_http(url: str, request: bytes) -> tuple[int, dict, bytes]:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _assert_http_error(status: int, headers: dict, body: bytes, expected: int) -> dict:
    assert status == expected, (status, body[:300])
    assert headers["content-type"].startswith("application/json"), headers
    document = json.loads(body)
    assert set(document) in ({"code", "status", "message"}, {"code", "status", "message", "errors"}), document
    assert document["code"] == expected and document["status"] and document["message"]
    return document


GUNICORN_REFUSALS = [
    ("long_request_line", b"GET /shows?page=" + b"1" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    ("huge_header_field", b"GET /shows HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + b"a" * 9000 + b"\r\n\r\n", 431),
    ("too_many_header_fields", b"GET /shows HTTP/1.1\r\nHost: x\r\n"
     + b"".join(b"X-H%d: v\r\n" % i for i in range(150)) + b"\r\n", 431),
    ("nul_in_header_value", b"GET /shows HTTP/1.1\r\nHost: x\r\nAdmission-Token: a\x00b\r\n\r\n", 400),
    ("bad_header_name", b"GET /shows HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n", 400),
    ("not_http", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40 + b"\r\n\r\n", 400),
    ("bad_method", b"G\x00T /shows HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("bad_version", b"GET /shows HTTP/9.z\r\nHost: x\r\n\r\n", 400),
    ("space_in_url", b"GET /shows?a=1 & HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("bad_chunk_size", b"POST /auth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
     b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", 400),
    ("raw_non_utf8_in_url", b"GET /shows/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("raw_non_ascii_digit_in_url", b"GET /shows?page=\xc2\xb2 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("two_hosts", b"GET /shows HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    ("folded_header", b"GET /shows HTTP/1.1\r\nHost: x\r\nX-A: a\r\n folded\r\n\r\n", 400),
] + [
    (label, b"POST /auth/token HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
     + headers + b"\r\n{}", status)
    for label, headers, status in [
        ("content_length_negative", b"Content-Length: -1\r\n", 400),
        ("content_length_not_a_number", b"Content-Length: 1e3\r\n", 400),
        ("content_length_twice", b"Content-Length: 2\r\nContent-Length: 3\r\n", 400),
        ("content_length_and_chunked", b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n", 400),
        ("unknown_transfer_coding", b"Transfer-Encoding: gzip\r\n", 400),
        # past the app's body limit, which the app answers itself without reading the body
        ("content_length_huge", b"Content-Length: 99999999999999999999999\r\n", 413),
        ("content_length_over_the_limit", b"Content-Length: 1000000\r\n", 413),
    ]
]


@pytest.mark.parametrize("label, request_bytes, expected", [pytest.param(*c, id=c[0]) for c in GUNICORN_REFUSALS])
def test_what_gunicorn_itself_refuses_is_json_in_the_error_shape(app, target, api_url, label, request_bytes, expected):
    before = _state(app, target)
    _assert_http_error(*_raw_http(api_url, request_bytes), expected)
    assert _state(app, target) == before


def test_requests_just_under_gunicorns_limits_reach_the_app_and_get_its_json(app, target, api_url):
    """Below the limits the app answers (here its own 422 for a bad page and 401 for a bad token)."""
    status, headers, body = _raw_http(api_url, b"GET /shows?page=" + b"1" * 4000 + b" HTTP/1.1\r\nHost: x\r\n"
                                      b"Connection: close\r\n\r\n")
    assert "page" in _assert_http_error(status, headers, body, 422)["errors"]
    status, headers, body = _raw_http(api_url, b"GET /me/bookings HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                      b"Authorization: Bearer " + b"a" * 8000 + b"\r\n\r\n")
    _assert_http_error(status, headers, body, 401)


HTTP_BODIES = [
    ("/auth/token", None, b'{"email": "a@example.com", "password": ' + b"9" * 5000 + b"}", 422),
    ("/auth/token", None, b"[" * 30000, 400),
    ("/auth/register", None, b'{"email": "\\ud800@example.com", "password": "password-1", "name": "n"}', 422),
    ("/auth/register", None, b'{"email": "s@example.com", "password": "password-1", "name": "\\ud800"}', 422),
    ("/auth/register", None, b'{"email": "s@example.com", "password": "password-1", "name": "\xff"}', 400),
    ("/bookings", "customer", b'{"show_id": "<show>", "qty": 1, "payment_method": "\\ud800"}', 422),
    ("/bookings", "customer", b'{"show_id": "<show>", "qty": 1e400, "payment_method": "tok_ok"}', 422),
    ("/bookings", "customer", b'{"show_id": "<show>", "qty": NaN, "payment_method": "tok_ok"}', 400),
]


@pytest.mark.parametrize("path, role, raw, expected", HTTP_BODIES, ids=[f"{p} {r[:40]!r}" for p, _, r, _ in HTTP_BODIES])
def test_hostile_bodies_over_http_are_refused_and_change_nothing(app, target, api_url, path, role, raw, expected):
    before = _state(app, target)
    headers = {"Content-Type": "application/json", **(target["customer"]["headers"] if role else {})}
    response = requests.post(api_url + path, data=raw.replace(b"<show>", target["show"]["id"].encode()),
                             headers=headers, timeout=30)
    _assert_http_error(response.status_code, {"content-type": response.headers["Content-Type"]}, response.content,
                       expected)
    assert _state(app, target) == before


def test_hostile_query_strings_over_http_are_422(app, target, api_url):
    for query in ("page=%C2%B2", "page_size=%D9%A1", "page=" + "9" * 3000, "page=%ED%A0%80"):
        response = requests.get(f"{api_url}/shows?{query}", timeout=30)
        _assert_http_error(response.status_code, {"content-type": response.headers["Content-Type"]},
                           response.content, 422)


ROUNDS, CLIENTS = 4, 4


def test_one_email_registered_by_four_clients_at_once_is_one_201_and_three_409s(app, api_url):
    """Real concurrency: four threads released together by a barrier, each on its own connection,
    against gunicorn (two workers, four threads each) and PostgreSQL. Several rounds, so the race
    between the check and the INSERT is really run; the loser's transaction is rolled back."""
    for _ in range(ROUNDS):
        email = f"race-{secrets.token_hex(5)}@example.com"
        barrier = threading.Barrier(CLIENTS)

        def register(index: int):
            with requests.Session() as session:
                barrier.wait(timeout=30)
                response = session.post(f"{api_url}/auth/register", timeout=60,
                                        json={"email": email, "password": "password-1", "name": f"racer {index}"})
                return response.status_code, response.json()

        with ThreadPoolExecutor(CLIENTS) as pool:
            results = list(pool.map(register, range(CLIENTS)))
        statuses = sorted(status for status, _ in results)
        assert statuses == [201] + [409] * (CLIENTS - 1), results
        for status, body in results:
            if status == 409:
                assert set(body) == {"code", "status", "message"} and "already registered" in body["message"], body
        from models import db
        from models.users import User
        with app.app_context():
            assert db.session.scalar(select(func.count()).select_from(User).where(User.email == email)) == 1
            db.session.rollback()
        # The API still works for that email (no connection was left in a failed transaction).
        token = requests.post(f"{api_url}/auth/token", json={"email": email, "password": "password-1"}, timeout=60)
        assert token.status_code == 200, token.text


def test_a_url_id_in_digits_of_another_script_names_nothing(app, client, target):
    """`<int:failure_id>` takes ASCII digits only: the failure's id in Arabic-Indic or fullwidth
    digits is not that failure (it was, and an admin's retry would have been sent)."""
    from models import db
    from models.task_failures import record_failure
    with app.app_context():
        failure = record_failure("tickets.make_issuable", None, "hostile-input test", 3)
        db.session.commit()
        failure_id = failure.id
    other_scripts = {ord(str(d)): chr(0x0660 + d) for d in range(10)}, {ord(str(d)): chr(0xFF10 + d) for d in range(10)}
    for table in other_scripts:
        path = f"/admin/task-failures/{quote(str(failure_id).translate(table))}/retry"
        _assert_refused(app, client, target, 404, "post", path, "admin")
    assert client.post(f"/admin/task-failures/{failure_id}/retry", headers=target["admin"]).status_code == 409
