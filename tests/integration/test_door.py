"""Tickets at the door (SPEC §10), through the API: signed QRs that verify offline with the
published key, key rotation, check-in once (also with eight gates racing, over real HTTP to
gunicorn), a cancel racing a check-in, offline batches, the check-in list, bad input and roles."""
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import jwt
import pytest
import requests

from tests.integration.observed_stack import start_api

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def issued(app, customer, make_show, book, wait_for):
    """Issue paid tickets of one show (n of them); returns (show, [ticket bodies])."""
    def make(n: int = 1, show=None):
        show = show or make_show(capacity=max(10, n))
        ids = [book(customer, show["id"]).json["id"] for _ in range(n)]
        tickets = []
        for booking_id in ids:
            wait_for(booking_id, status="PAID", ticket_status="ISSUABLE")
            response = app.test_client().post(f"/bookings/{booking_id}/ticket", headers=customer["headers"])
            assert response.status_code == 200, response.json
            tickets.append(response.json["ticket"])
        return show, tickets
    return make


def _published_key(client, show_id) -> dict:
    response = client.get(f"/shows/{show_id}/checkin-key")
    assert response.status_code == 200, response.json
    return response.json


def _verify_offline(qr: str, key_document: dict) -> dict:
    """What a scanner does with no network: pick the published key by the QR's kid, verify."""
    kid = jwt.get_unverified_header(qr)["kid"]
    jwk = next(key for key in key_document["keys"] if key["kid"] == kid)
    return jwt.decode(qr, jwt.PyJWK(jwk).key, algorithms=["EdDSA"])


def test_an_issued_ticket_verifies_offline_with_only_the_published_key_and_checks_in_once(
        app, client, issued, staff_headers, customer):
    show, [ticket] = issued()
    document = _published_key(client, show["id"])
    assert document["alg"] == "EdDSA"
    assert set(document["jwk"]) == {"kty", "crv", "x", "kid"}
    assert (document["jwk"]["kty"], document["jwk"]["crv"]) == ("OKP", "Ed25519")
    claims = _verify_offline(ticket["qr"], document)
    assert claims == {"tid": ticket["tid"], "code": ticket["code"], "bid": ticket["booking_id"],
                      "sid": show["id"], "qty": 1, "seats": []}
    # Tampered: the payload of another booking under the same signature does not verify.
    head, payload, signature = ticket["qr"].split(".")
    forged = jwt.utils.base64url_encode(jwt.utils.base64url_decode(payload).replace(
        ticket["booking_id"].encode(), b"0" * len(ticket["booking_id"]))).decode()
    with pytest.raises(jwt.InvalidSignatureError):
        _verify_offline(f"{head}.{forged}.{signature}", document)

    # Issuing again returns the same ticket, QR included.
    again = client.post(f"/bookings/{ticket['booking_id']}/ticket", headers=customer["headers"]).json["ticket"]
    assert again["qr"] == ticket["qr"]

    first = client.post("/checkins", headers=staff_headers, json={"qr": ticket["qr"], "gate": "north",
                                                                  "show_id": show["id"]})
    assert first.status_code == 200, first.json
    assert first.json["result"] == "ADMITTED"
    assert (first.json["booking_id"], first.json["show_id"], first.json["qty"]) == (ticket["booking_id"], show["id"], 1)
    second = client.post("/checkins", headers=staff_headers, json={"qr": ticket["qr"], "gate": "south"})
    assert second.status_code == 409
    assert second.json["result"] == "ALREADY_CHECKED_IN"
    assert second.json["gate"] == "north" and second.json["first_checked_in_at"] == first.json["checked_in_at"]
    booking = client.get(f"/bookings/{ticket['booking_id']}", headers=customer["headers"]).json
    assert booking["ticket_status"] == "CHECKED_IN"
    # Used at the door: the booking can no longer be cancelled.
    cancel = client.post(f"/bookings/{ticket['booking_id']}/cancel", headers=customer["headers"])
    assert cancel.status_code == 409 and "checked in" in cancel.json["message"]
    assert client.get(f"/bookings/{ticket['booking_id']}", headers=customer["headers"]).json["status"] == "PAID"


def test_a_ticket_of_another_show_a_void_one_and_a_forged_one_are_refused(
        app, client, issued, staff_headers, customer, make_show, wait_for):
    show, [kept, cancelled] = issued(2)
    other = make_show()
    wrong = client.post("/checkins", headers=staff_headers, json={"qr": kept["qr"], "show_id": other["id"]})
    assert wrong.status_code == 409 and wrong.json["result"] == "WRONG_SHOW"

    assert client.post(f"/bookings/{cancelled['booking_id']}/cancel", headers=customer["headers"]).status_code == 202
    void = client.post("/checkins", headers=staff_headers, json={"qr": cancelled["qr"]})
    assert void.status_code == 409 and void.json["result"] == "VOID"
    wait_for(cancelled["booking_id"], status="CANCELLED")
    assert client.post("/checkins", headers=staff_headers, json={"qr": cancelled["qr"]}).json["result"] == "VOID"

    # Signed with a key that is not the show's (a key of our own making, same kid): INVALID.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    kid = jwt.get_unverified_header(kept["qr"])["kid"]
    claims = jwt.decode(kept["qr"], options={"verify_signature": False})
    forged = jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": kid})
    for qr in (forged, "not-a-jws", kept["qr"][:-4] + "AAAA", jwt.encode(claims, "a-shared-secret-of-32-bytes-long!", algorithm="HS256")):
        response = client.post("/checkins", headers=staff_headers, json={"qr": qr})
        assert response.status_code == 422 and response.json["result"] == "INVALID", (qr, response.json)
    # None of that admitted the ticket.
    assert client.post("/checkins", headers=staff_headers, json={"qr": kept["qr"]}).json["result"] == "ADMITTED"


def test_bad_input_is_422_naming_the_field_and_changes_nothing(client, issued, staff_headers):
    show, [ticket] = issued()
    cases = [
        ("/checkins", {}, "qr"),
        ("/checkins", {"qr": ""}, "qr"),
        ("/checkins", {"qr": ticket["qr"], "gate": ""}, "gate"),
        ("/checkins", {"qr": ticket["qr"], "extra": 1}, "extra"),
        ("/checkins", {"qr": "x" * 5000}, "qr"),
        ("/checkins/batch", {}, "scans"),
        ("/checkins/batch", {"scans": []}, "scans"),
        ("/checkins/batch", {"scans": [{"qr": ticket["qr"]}]}, "scans"),
        ("/checkins/batch", {"scans": [{"qr": ticket["qr"], "scanned_at": "yesterday"}]}, "scans"),
        ("/checkins/batch", {"scans": [{"qr": ticket["qr"], "scanned_at": "2026-12-01T10:00:00"}]}, "scans"),
        ("/checkins/batch", {"scans": [{"qr": ticket["qr"], "scanned_at": _iso(timedelta(days=1))}]}, "scans"),
    ]
    for path, body, field in cases:
        response = client.post(path, headers=staff_headers, json=body)
        assert response.status_code == 422, (body, response.json)
        assert field in response.json["errors"], (body, response.json)
    # The batch names the scan and its field.
    response = client.post("/checkins/batch", headers=staff_headers,
                           json={"scans": [{"qr": ticket["qr"], "scanned_at": _iso()}, {"qr": ticket["qr"]}]})
    assert response.json["errors"]["scans"] == {"1": {"scanned_at": ["Missing data for required field."]}}
    too_many = {"scans": [{"qr": "x", "scanned_at": _iso()}] * 10_001}
    assert "scans" in client.post("/checkins/batch", headers=staff_headers, json=too_many).json["errors"]
    assert client.post("/checkins", headers=staff_headers, json={"qr": ticket["qr"]}).json["result"] == "ADMITTED"


def test_customers_may_not_check_in_nor_read_the_list_and_only_admins_rotate(
        client, issued, customer, admin_headers, staff_headers):
    show, [ticket] = issued()
    for method, path, body in (("post", "/checkins", {"qr": ticket["qr"]}),
                               ("post", "/checkins/batch", {"scans": [{"qr": ticket["qr"], "scanned_at": _iso()}]}),
                               ("get", f"/shows/{show['id']}/checkin-list", None),
                               ("post", f"/shows/{show['id']}/checkin-key/rotate", None)):
        response = getattr(client, method)(path, headers=customer["headers"], json=body)
        assert response.status_code == 403, (path, response.json)
        assert getattr(client, method)(path, json=body).status_code == 401
    assert client.post(f"/shows/{show['id']}/checkin-key/rotate", headers=staff_headers).status_code == 403
    assert client.get(f"/shows/{show['id']}/checkin-list", headers=admin_headers).status_code == 200
    assert client.get("/shows/no-such-show/checkin-key").status_code == 404
    # Staff cannot book nor see anyone's booking.
    assert client.get(f"/bookings/{ticket['booking_id']}", headers=staff_headers).status_code == 404
    # An admin may check in too.
    assert client.post("/checkins", headers=admin_headers, json={"qr": ticket["qr"]}).json["result"] == "ADMITTED"


def test_after_a_rotation_new_tickets_use_the_new_key_and_old_ones_still_verify_by_kid(
        client, issued, admin_headers, staff_headers):
    show, [old] = issued()
    before = _published_key(client, show["id"])
    rotated = client.post(f"/shows/{show['id']}/checkin-key/rotate", headers=admin_headers)
    assert rotated.status_code == 200
    after = rotated.json
    assert after["jwk"]["kid"] != before["jwk"]["kid"]
    assert [key["kid"] for key in after["keys"]] == [after["jwk"]["kid"], before["jwk"]["kid"]]
    assert _published_key(client, show["id"]) == after
    _, [new] = issued(show=show)
    assert jwt.get_unverified_header(new["qr"])["kid"] == after["jwk"]["kid"]
    assert jwt.get_unverified_header(old["qr"])["kid"] == before["jwk"]["kid"]
    assert _verify_offline(old["qr"], after)["tid"] == old["tid"]
    assert _verify_offline(new["qr"], after)["tid"] == new["tid"]
    with pytest.raises(StopIteration):  # a scanner with only the old key cannot read the new ticket
        _verify_offline(new["qr"], before)
    for ticket in (old, new):
        assert client.post("/checkins", headers=staff_headers, json={"qr": ticket["qr"]}).json["result"] == "ADMITTED"


def test_an_operator_rotates_a_key_with_the_cli(app, client, issued):
    show, _ = issued()
    before = _published_key(client, show["id"])["jwk"]["kid"]
    result = app.test_cli_runner().invoke(args=["shows", "rotate-checkin-key", show["id"]])
    assert result.exit_code == 0, result.output
    after = _published_key(client, show["id"])
    assert after["jwk"]["kid"] != before and after["jwk"]["kid"] in result.output
    assert [key["kid"] for key in after["keys"]][1:] == [before]
    missing = app.test_cli_runner().invoke(args=["shows", "rotate-checkin-key", "no-such-show"])
    assert missing.exit_code != 0 and "not found" in missing.output


def _iso(delta: timedelta = timedelta(0)) -> str:
    return (datetime.now(timezone.utc) + delta).isoformat()


def test_offline_batches_admit_the_earliest_scan_report_later_ones_duplicate_and_replay_unchanged(
        client, issued, staff_headers, customer, make_show, monkeypatch):
    from services import checkins
    monkeypatch.setattr(checkins, "BATCH_CHUNK", 2)  # an upload of several transactions
    show, tickets = issued(4)
    a, b, c, void = tickets
    assert client.post(f"/bookings/{void['booking_id']}/cancel", headers=customer["headers"]).status_code == 202
    t0 = datetime.now(timezone.utc) - timedelta(hours=1)

    def at(minutes):
        return (t0 + timedelta(minutes=minutes)).isoformat()
    east = {"scans": [
        {"qr": a["qr"], "scanned_at": at(5), "gate": "east"},   # later than west's scan of a
        {"qr": b["qr"], "scanned_at": at(1), "gate": "east"},
        {"qr": b["qr"], "scanned_at": at(2), "gate": "east"},   # b again at the same gate
        {"qr": a["qr"], "scanned_at": at(3), "gate": "west"},   # the earliest of a
        {"qr": void["qr"], "scanned_at": at(4), "gate": "east"},
        {"qr": "garbage", "scanned_at": at(4), "gate": "east"},
    ]}
    response = client.post("/checkins/batch", headers=staff_headers, json=east)
    assert response.status_code == 200, response.json
    results = response.json["results"]
    assert [r["result"] for r in results] == ["DUPLICATE", "ADMITTED", "DUPLICATE", "ADMITTED", "VOID", "INVALID"]
    assert results[0]["gate"] == "west" and results[0]["first_checked_in_at"] == results[3]["checked_in_at"]
    assert datetime.fromisoformat(results[3]["checked_in_at"]) == t0 + timedelta(minutes=3)
    assert results[2]["first_checked_in_at"] == results[1]["checked_in_at"]

    response = client.get(f"/shows/{show['id']}/checkin-list", headers=staff_headers)
    listed, etag = response.json, response.headers["ETag"]
    assert etag == f'"{listed["version"]}"'
    assert client.get(f"/shows/{show['id']}/checkin-list",
                      headers={**staff_headers, "If-None-Match": etag}).status_code == 304
    assert sorted(listed["checked_in"]) == sorted([a["tid"], b["tid"]])
    assert listed["valid"] == [c["tid"]] and listed["void"] == [void["tid"]]

    # Replayed: the same answers, and nothing changed.
    replay = client.post("/checkins/batch", headers=staff_headers, json=east).json["results"]
    assert replay == results
    assert client.get(f"/shows/{show['id']}/checkin-list", headers=staff_headers).json == listed

    # A gate that uploads late, with an earlier scan of a: it becomes the record; then c online.
    late = client.post("/checkins/batch", headers=staff_headers, json={"scans": [
        {"qr": a["qr"], "scanned_at": at(0), "gate": "south"}, {"qr": c["qr"], "scanned_at": at(9), "gate": "south"}],
        "show_id": show["id"]}).json["results"]
    assert [r["result"] for r in late] == ["ADMITTED", "ADMITTED"]
    online = client.post("/checkins", headers=staff_headers, json={"qr": a["qr"]}).json
    assert online["result"] == "ALREADY_CHECKED_IN" and online["gate"] == "south"
    other = make_show()
    wrong = client.post("/checkins/batch", headers=staff_headers,
                        json={"scans": [{"qr": c["qr"], "scanned_at": at(9)}], "show_id": other["id"]}).json
    assert wrong["results"][0]["result"] == "WRONG_SHOW"
    changed = client.get(f"/shows/{show['id']}/checkin-list", headers={**staff_headers, "If-None-Match": etag})
    assert changed.status_code == 200
    after = changed.json
    assert after["valid"] == [] and after["version"] != listed["version"]


# ----- real concurrency: gates racing over HTTP to gunicorn ------------------------------------

@pytest.fixture(scope="module")
def api_url(workdir):
    """gunicorn as the stack runs it, publishing to the suite's broker: the package's worker
    carries out the refunds of its cancels."""
    process, url = start_api(workdir, {"REDIS_URL": os.environ["REDIS_URL"]}, name="door-api", workers=2)
    yield url
    process.stop()


GATES = 8


def test_eight_gates_scanning_one_ticket_at_once_admit_it_exactly_once(api_url, issued, staff_headers):
    """Eight threads released together, each on its own connection, against gunicorn (two workers,
    four threads each) and PostgreSQL; several tickets, so the race is really run."""
    show, tickets = issued(5)
    for ticket in tickets:
        barrier = threading.Barrier(GATES)

        def scan(gate: int):
            with requests.Session() as session:
                barrier.wait(timeout=30)
                response = session.post(f"{api_url}/checkins", headers=staff_headers, timeout=60,
                                        json={"qr": ticket["qr"], "gate": f"gate-{gate}"})
                return f"gate-{gate}", response.status_code, response.json()

        with ThreadPoolExecutor(GATES) as pool:
            answers = list(pool.map(scan, range(GATES)))
        admitted = [(gate, body) for gate, status, body in answers if status == 200]
        assert len(admitted) == 1 and admitted[0][1]["result"] == "ADMITTED", answers
        refused = [body for _, status, body in answers if status == 409]
        assert len(refused) == GATES - 1 and {body["result"] for body in refused} == {"ALREADY_CHECKED_IN"}
        # Every refused gate is told who got in: the winner's gate and time.
        gate, winner = admitted[0]
        assert {(body["gate"], body["first_checked_in_at"]) for body in refused} == {(gate, winner["checked_in_at"])}


def test_a_cancel_racing_a_check_in_either_admits_or_cancels_never_both(api_url, issued, staff_headers, customer,
                                                                         wait_for, gateway):
    show, tickets = issued(10)
    outcomes = {"admitted": 0, "cancelled": 0}
    for ticket in tickets:
        barrier = threading.Barrier(2)

        def check_in():
            barrier.wait(timeout=30)
            return requests.post(f"{api_url}/checkins", headers=staff_headers, json={"qr": ticket["qr"]}, timeout=60)

        def cancel():
            barrier.wait(timeout=30)
            return requests.post(f"{api_url}/bookings/{ticket['booking_id']}/cancel", headers=customer["headers"],
                                 timeout=60)

        with ThreadPoolExecutor(2) as pool:
            checked, cancelled = pool.submit(check_in), pool.submit(cancel)
            checked, cancelled = checked.result(), cancelled.result()
        if checked.status_code == 200:
            assert cancelled.status_code == 409, cancelled.json()
            state = wait_for(ticket["booking_id"], status="PAID", ticket_status="CHECKED_IN")
            outcomes["admitted"] += 1
        else:
            assert (checked.status_code, checked.json()["result"]) == (409, "VOID"), checked.json()
            assert cancelled.status_code == 202, cancelled.json()
            state = wait_for(ticket["booking_id"], status="CANCELLED", ticket_status="VOID")
            ledger = gateway.ledger(ticket["booking_id"])
            assert ledger["captured"] == ledger["refunded"]
            outcomes["cancelled"] += 1
        assert state["payment_status"] in ("PAID", "REFUNDED")
    print(f"cancel vs check-in: {outcomes}")


def test_the_consistency_report_finds_a_check_in_on_a_booking_that_is_not_paid(
        app, client, issued, staff_headers, admin_headers):
    from sqlalchemy import text

    from models import db
    show, [ticket] = issued()
    assert client.post("/checkins", headers=staff_headers, json={"qr": ticket["qr"]}).status_code == 200
    body = client.get("/admin/consistency", headers=admin_headers).json
    assert set(body["door"]) == {"checked_in_not_paid", "checked_in_unsigned"}
    assert ticket["booking_id"] not in body["door"]["checked_in_not_paid"]
    with app.app_context():  # corrupt it, past every layer: the payment refunded after the check-in
        db.session.execute(text("UPDATE payments SET status = 'REFUNDED' WHERE booking_id = :id"),
                           {"id": ticket["booking_id"]})
        db.session.commit()
    try:
        body = client.get("/admin/consistency", headers=admin_headers).json
        assert ticket["booking_id"] in body["door"]["checked_in_not_paid"]
        assert body["counts"]["checked_in_not_paid"] >= 1 and body["consistent"] is False
    finally:
        with app.app_context():
            db.session.execute(text("UPDATE payments SET status = 'PAID' WHERE booking_id = :id"),
                               {"id": ticket["booking_id"]})
            db.session.commit()
            db.session.remove()
