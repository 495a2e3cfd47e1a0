"""Access control on every booking endpoint: privilege escalation and cross-customer access.

Another customer's booking must be indistinguishable from a missing one (same status, same body
shape and message); customers get 403 on admin operations; no, expired, tampered or forged tokens
get 401. Admin operations are found in the app's own OpenAPI spec, so new ones are covered too.
"""
import base64
import json
from datetime import timedelta

import pytest
from flask_jwt_extended import create_access_token

MISSING = "00000000-0000-0000-0000-000000000000"
BOOKING_OPS = [("get", "/bookings/{id}"), ("post", "/bookings/{id}/cancel"), ("post", "/bookings/{id}/ticket")]


@pytest.fixture
def owned_booking(app, new_customer, make_show, book):
    owner = new_customer()
    show = make_show(capacity=5)
    response = book(owner, show["id"], qty=1)
    assert response.status_code == 202, response.json
    return owner, response.json["id"]


def _call(client, method, path, headers):
    return getattr(client, method)(path, headers=headers)


def _without_id(body: dict, booking_id: str) -> dict:
    return json.loads(json.dumps(body).replace(booking_id, "<id>"))


@pytest.mark.parametrize("method,template", BOOKING_OPS)
def test_another_customers_booking_looks_missing(app, owned_booking, new_customer, booking_state, method, template):
    _, booking_id = owned_booking
    intruder = new_customer()
    client = app.test_client()
    before = booking_state(booking_id)
    theirs = _call(client, method, template.format(id=booking_id), intruder["headers"])
    missing = _call(client, method, template.format(id=MISSING), intruder["headers"])
    assert theirs.status_code == missing.status_code == 404
    assert _without_id(theirs.json, booking_id) == _without_id(missing.json, MISSING)
    assert set(theirs.headers.keys()) == set(missing.headers.keys())
    assert booking_state(booking_id) == before  # nothing changed


@pytest.mark.parametrize("method,template", BOOKING_OPS)
def test_the_owner_and_an_admin_reach_the_booking(app, owned_booking, admin_headers, method, template):
    owner, booking_id = owned_booking
    if method == "get":
        client = app.test_client()
        assert _call(client, method, template.format(id=booking_id), owner["headers"]).status_code == 200
        assert _call(client, method, template.format(id=booking_id), admin_headers).status_code == 200
    else:  # cancel/ticket: reachable (not 401/403/404), whatever the state says
        status = _call(app.test_client(), method, template.format(id=booking_id), admin_headers).status_code
        assert status in (200, 202, 409)


def test_my_page_lists_only_my_bookings(app, worker, new_customer, make_show, book, wait_for):
    """Both customers' bookings settle through a real worker, so both my pages have rows: the
    owner sees theirs, the other customer sees only their own (neither list is empty)."""
    from tests.processes import wait_until
    owner, other = new_customer(), new_customer()
    show = make_show(capacity=5)
    mine = {who: book(customer, show["id"], qty=1).json["id"] for who, customer in (("owner", owner), ("other", other))}
    for booking_id in mine.values():
        wait_for(booking_id, status="PAID", ticket_status="ISSUABLE")

    def listed(customer, booking_id):
        """The customer's my page once it shows their own settled booking (the projection ran)."""
        rows = app.test_client().get("/me/bookings?page_size=100", headers=customer["headers"]).json
        return rows if any(r["booking_id"] == booking_id and r["status"] == "PAID" for r in rows) else None
    owners = wait_until(lambda: listed(owner, mine["owner"]), 30, 0.1, "the owner's my page to show the booking")
    others = wait_until(lambda: listed(other, mine["other"]), 30, 0.1, "the other's my page to show theirs")
    assert [r["booking_id"] for r in owners] == [mine["owner"]]
    assert [r["booking_id"] for r in others] == [mine["other"]]


def _admin_operations(app):
    spec = app.test_client().get("/openapi.json").json
    ops = [("post", "/shows"), ("patch", "/shows/{show_id}")]
    for path, item in spec["paths"].items():
        if path.startswith("/admin"):
            ops += [(method, path) for method in item if method in ("get", "post", "put", "patch", "delete")]
    return ops


def _concrete(path: str) -> str:
    """A URL for `path` whose ids exist nowhere: integer ids for <int:...> rules, else a UUID."""
    import re

    from werkzeug.routing import IntegerConverter

    from tests.conftest import _state
    app = _state["app"]
    rule_like = re.sub(r"\{([^}]+)\}", r"<\1>", path)
    integer: set = set()
    for rule in app.url_map.iter_rules():
        if re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"<\1>", rule.rule) == rule_like:
            integer = {name for name, conv in rule._converters.items() if isinstance(conv, IntegerConverter)}
            break
    return re.sub(r"\{([^}]+)\}", lambda m: "999999999" if m.group(1) in integer else MISSING, path)


def test_customers_get_403_on_every_admin_operation(app, customer):
    client = app.test_client()
    for method, path in _admin_operations(app):
        response = getattr(client, method)(_concrete(path), headers=customer["headers"], json={})
        assert response.status_code == 403, (method, path, response.status_code, response.json)
        assert set(response.json) >= {"code", "status", "message"}


def test_admins_cannot_book(app, admin_headers, make_show):
    show = make_show()
    response = app.test_client().post("/bookings", headers=admin_headers,
                                      json={"show_id": show["id"], "qty": 1, "payment_method": "tok_ok"})
    assert response.status_code == 403


def _secured_operations(app):
    spec = app.test_client().get("/openapi.json").json
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method != "parameters" and operation.get("security"):
                yield method, path


def _forged(token: str, **claims) -> str:
    header, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(claims)
    encoded = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{header}.{encoded}.{signature}"


def _unsigned(token: str) -> str:
    _, payload, _ = token.split(".")
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    return f"{header}.{payload}."


@pytest.fixture
def bad_tokens(app, customer):
    token = customer["headers"]["Authorization"].split()[1]
    with app.app_context():
        expired = create_access_token(identity=customer["id"], additional_claims={"role": "customer"},
                                      expires_delta=timedelta(seconds=-60))
    return {
        "none": None,
        "garbage": "not-a-token",
        "expired": expired,
        "tampered": token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"),
        "role forged": _forged(token, role="admin"),
        "alg none": _unsigned(_forged(token, role="admin")),
        "other key": _other_key_token(customer["id"]),
    }


def _other_key_token(identity: str) -> str:
    from flask import Flask
    from flask_jwt_extended import JWTManager
    other = Flask("other")
    other.config["JWT_SECRET_KEY"] = "a-key-that-is-not-the-servers-key-at-all"
    JWTManager(other)
    with other.app_context():
        return create_access_token(identity=identity, additional_claims={"role": "admin"})


def test_every_secured_operation_rejects_bad_tokens_with_401(app, bad_tokens):
    client = app.test_client()
    operations = list(_secured_operations(app))
    assert len(operations) >= 7
    for kind, token in bad_tokens.items():
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        for method, path in operations:
            response = getattr(client, method)(_concrete(path), headers=headers, json={})
            assert response.status_code == 401, (kind, method, path, response.status_code, response.json)
            assert response.json["code"] == 401 and response.json["message"]


def test_a_token_that_worked_is_refused_once_it_expires(app, customer):
    """Verified tokens are remembered per process (web/extensions.py); the memory must not outlive `exp`.

    The clock is moved, not waited for: time-machine shifts every clock of this process (the
    memory's and PyJWT's) to a second past the token's `exp`."""
    import time_machine
    with app.app_context():
        token = create_access_token(identity=customer["id"], additional_claims={"role": "customer"},
                                    expires_delta=timedelta(minutes=10))
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/me/bookings", headers=headers).status_code == 200
    assert client.get("/me/bookings", headers=headers).status_code == 200  # now from memory
    payload = token.split(".")[1]
    exp = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"]
    with time_machine.travel(exp - 1, tick=False):  # just before: still accepted
        assert client.get("/me/bookings", headers=headers).status_code == 200
    with time_machine.travel(exp + 1, tick=False):
        response = client.get("/me/bookings", headers=headers)
    assert response.status_code == 401 and response.json["message"] == "the token has expired"
