"""Property-based fuzz of request parsing (hypothesis): bodies, query strings and headers built
from the API's own operations, with values the OpenAPI document does not describe (lone
surrogates, NUL, huge and non-finite numbers, deep nesting, bytes that are not UTF-8, digits of
other scripts, duplicate keys). Sent to the real app (Flask test client against the suite's
PostgreSQL and Redis) and, for a part, over real HTTP to gunicorn.

Properties: never a 5xx; every 4xx has the error shape and changes nothing. A request that
happens to be valid may succeed (2xx) and change what it should.

schemathesis (test_api_contract.py) covers what the OpenAPI document describes; this file covers
what it does not. Bounded and derandomized for CI: FUZZ_PARSING_EXAMPLES examples per test.
"""
import json
import os
import secrets
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.test_hostile_input import _now_plus, _state, api_url, target  # noqa: F401 (fixtures)

pytestmark = pytest.mark.server_independent  # CI runs it once (.ci/run)

EXAMPLES = int(os.environ.get("FUZZ_PARSING_EXAMPLES", "120"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
HTTP_FUZZ = settings(FUZZ, max_examples=max(EXAMPLES // 4, 10))

# Every code point, lone surrogates and NUL included.
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)
# A dictionary of known troublemakers (as a fuzzer's token list), mixed into what is generated.
TROUBLE = ["\ud800", "\udfff", "\udc00\ud800", "\x00", "\ufeff", "\u202e", "\uffff", "\U0010ffff", "x" * 300, "",
           "\u00b2", "\u0661", "\uff11", "' OR 1=1 --", "%00", "\\u0000", "\r\n"]
HOSTILE_TEXT = st.one_of(
    st.sampled_from(TROUBLE),
    st.tuples(st.sampled_from(["tok_ok", "a@example.com", "Hall", "2030-01-01T00:00:00Z", "password-1"]),
              st.sampled_from(TROUBLE), st.booleans()).map(lambda t: t[0] + t[1] if t[2] else t[1] + t[0]),
    ANY_TEXT,
)
# Raw JSON value literals; some are not JSON (NaN), some are JSON nothing can take.
NUMBER_LITERALS = st.one_of(
    st.integers(min_value=-(10 ** 40), max_value=10 ** 40).map(str),
    st.integers(min_value=90, max_value=6000).map(lambda n: "9" * n),
    st.floats(allow_nan=False).map(repr).map(lambda r: r.replace("inf", "1e400")),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-0", "1E+2", "0.0", "01", "1.", ".5", "+1"]),
)


def _json_text(text: str) -> str:
    return json.dumps(text)  # ensure_ascii: lone surrogates become \ud800 escapes, as a client sends them


def _nested(depth: int, kind: str) -> str:
    return ("[" * depth + "]" * depth) if kind == "array" else ('{"a":' * depth + "1" + "}" * depth)


VALUE_LITERALS = st.recursive(
    st.one_of(HOSTILE_TEXT.map(_json_text), NUMBER_LITERALS, st.sampled_from(["true", "false", "null"])),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda items: "[" + ",".join(items) + "]"),
        st.dictionaries(HOSTILE_TEXT.map(_json_text), inner, max_size=3).map(
            lambda d: "{" + ",".join(f"{k}:{v}" for k, v in d.items()) + "}"),
    ),
    max_leaves=6,
) | st.builds(_nested, st.integers(min_value=1, max_value=3000), st.sampled_from(["array", "object"]))


def _operations(target) -> list[tuple[str, str, str | None, dict]]:
    show_id = target["show"]["id"]
    return [
        ("post", "/auth/register", None, {"email": f"fz-{secrets.token_hex(4)}@example.com",
                                          "password": "password-1", "name": "F"}),
        ("post", "/auth/token", None, {"email": target["customer"]["email"], "password": "password-1"}),
        ("post", "/shows", "admin", {"title": "T", "venue": "V", "starts_at": _now_plus(10), "price": 100,
                                     "capacity": 5}),
        ("patch", f"/shows/{show_id}", "admin", {"title": "Renamed"}),
        ("post", "/bookings", "customer", {"show_id": show_id, "qty": 1, "payment_method": "tok_ok"}),
    ]


@st.composite
def hostile_bodies(draw, target):
    """(operation index, raw body): a valid body with fields replaced, added, repeated or its
    bytes damaged."""
    operations = _operations(target)
    index = draw(st.integers(min_value=0, max_value=len(operations) - 1))
    good = operations[index][3]
    members = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in good.items()]
    for step in range(draw(st.integers(min_value=1, max_value=3))):
        how = "replace" if step == 0 else draw(st.sampled_from(["replace", "add", "repeat", "drop"]))
        if how == "replace" and members:
            at = draw(st.integers(min_value=0, max_value=len(members) - 1))
            name = members[at].split(":", 1)[0]
            members[at] = f"{name}: {draw(VALUE_LITERALS)}"
        elif how == "add":
            members.append(f"{_json_text(draw(HOSTILE_TEXT))}: {draw(VALUE_LITERALS)}")
        elif how == "repeat" and members:
            members.append(draw(st.sampled_from(members)))
        elif members:
            members.pop(draw(st.integers(min_value=0, max_value=len(members) - 1)))
    raw = ("{" + ", ".join(members) + "}").encode()
    if draw(st.integers(min_value=0, max_value=4)) == 0:  # damage the bytes now and then
        at = draw(st.integers(min_value=0, max_value=len(raw)))
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=4)) + raw[at:]
    if draw(st.integers(min_value=0, max_value=9)) == 0:  # or send something that is not an object
        raw = draw(VALUE_LITERALS).encode()
    return index, raw


def _check(response_status: int, body, before: dict, after: dict, what) -> None:
    assert response_status < 500, (what, response_status, body)
    if 400 <= response_status < 500:
        assert isinstance(body, dict) and set(body) in ({"code", "status", "message"},
                                                        {"code", "status", "message", "errors"}), (what, body)
        assert body["code"] == response_status and body["message"], (what, body)
        assert after == before, (what, response_status, body)


def _headers(target, role) -> dict:
    return {"customer": target["customer"]["headers"], "admin": target["admin"]}.get(role, {})


@pytest.fixture(scope="module")
def fuzz_client(app):
    from web.ratelimit import limiter
    previous, limiter.enabled = limiter.enabled, False  # the fuzz is one IP, far faster than a person
    yield app.test_client()
    limiter.enabled = previous


def test_fuzzed_bodies_are_never_a_5xx_and_a_4xx_changes_nothing(app, fuzz_client, target):
    operations = _operations(target)

    @FUZZ
    @given(hostile_bodies(target))
    def run(case):
        index, raw = case
        method, path, role, _ = operations[index]
        before = _state(app, target)
        response = fuzz_client.open(path, method=method.upper(), data=raw, headers=_headers(target, role),
                                    content_type="application/json")
        _check(response.status_code, response.get_json(silent=True), before, _state(app, target), (method, path, raw[:200]))
    run()


QUERY_VALUES = st.one_of(
    st.sampled_from(["\u00b2", "\u0661", "\uff11", "\u2460", "\u00bd", "\u0967\u0966", "9" * 5000, "9" * 19, "1" * 8,
                     "%", "\x00"]),
    st.sampled_from(TROUBLE),
    ANY_TEXT,
    st.text(st.characters(categories=["Nd", "No", "Nl"]), min_size=1, max_size=4),  # digits of any script
    st.integers(min_value=-(10 ** 30), max_value=10 ** 30).map(str),
    st.sampled_from(["1", "2", "100", "0", "-1", "1_0", " 1", "1e3", "0x1", "true", "1\x00"]),
)
QUERY_NAMES = st.one_of(st.sampled_from(["page", "page_size", "open"]), ANY_TEXT)


def _query(pairs: list[tuple[str, str]]) -> str:
    # surrogatepass: a lone surrogate goes out as the bytes a careless client would send
    return "&".join(f"{quote(k, errors='surrogatepass')}={quote(v, errors='surrogatepass')}" for k, v in pairs)


def test_fuzzed_query_strings_are_never_a_5xx_and_a_4xx_changes_nothing(app, fuzz_client, target):
    pages = [("/shows", None), ("/me/bookings", "customer"), ("/admin/task-failures", "admin"),
             (f"/shows/{target['show']['id']}", None)]

    @FUZZ
    @given(st.sampled_from(pages), st.lists(st.tuples(QUERY_NAMES, QUERY_VALUES), min_size=1, max_size=4))
    def run(page, pairs):
        path, role = page
        before = _state(app, target)
        response = fuzz_client.get(f"{path}?{_query(pairs)}", headers=_headers(target, role))
        _check(response.status_code, response.get_json(silent=True), before, _state(app, target), (path, pairs))
        if response.status_code == 200 and path != pages[-1][0]:
            assert isinstance(response.get_json(), list)
    run()


# Header values a WSGI server can deliver: latin-1 text without line breaks.
HEADER_TEXT = st.text(st.characters(max_codepoint=0xFF, exclude_characters="\r\n"), max_size=300)


def test_fuzzed_headers_are_never_a_5xx_and_a_4xx_changes_nothing(app, fuzz_client, target):
    good = {"show_id": target["show"]["id"], "qty": 1, "payment_method": "tok_ok"}
    valid = target["customer"]["headers"]["Authorization"]

    @FUZZ
    @given(idempotency_key=st.one_of(st.none(), HEADER_TEXT),
           authorization=st.one_of(st.just(valid), st.none(), HEADER_TEXT, HEADER_TEXT.map("Bearer ".__add__),
                                   st.just(valid + "x"), st.just(valid[:-3])),
           unknown=st.dictionaries(st.sampled_from(["Admission-Token", "X-Request-ID", "Accept", "If-None-Match",
                                                    "Accept-Language", "X-Forwarded-For"]), HEADER_TEXT, max_size=3),
           valid_body=st.booleans())
    def run(idempotency_key, authorization, unknown, valid_body):
        headers = dict(unknown)
        if authorization is not None:
            headers["Authorization"] = authorization
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        body = good if valid_body else {**good, "qty": 0}
        before = _state(app, target)
        response = fuzz_client.post("/bookings", json=body, headers=headers)
        _check(response.status_code, response.get_json(silent=True), before, _state(app, target), headers)
        assert response.status_code != 202 or authorization == valid, ("a fuzzed token was accepted", headers)
        response = fuzz_client.get("/me/bookings", headers=headers)
        _check(response.status_code, response.get_json(silent=True), before, _state(app, target), headers)
    run()


def test_fuzzed_bodies_over_http_are_never_a_5xx_and_a_4xx_changes_nothing(app, target, api_url):
    operations = _operations(target)
    session = requests.Session()

    @HTTP_FUZZ
    @given(hostile_bodies(target))
    def run(case):
        index, raw = case
        method, path, role, _ = operations[index]
        before = _state(app, target)
        response = session.request(method.upper(), api_url + path, data=raw, timeout=60,
                                   headers={"Content-Type": "application/json", **_headers(target, role)})
        try:
            body = response.json()
        except ValueError:
            body = response.text[:300]
        _check(response.status_code, body, before, _state(app, target), (method, path, raw[:200]))
    run()
