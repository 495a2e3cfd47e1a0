"""The payment gateway sandbox, run as its own process, driven through GatewayClient."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from gateway import Charge, ChargeVoided, GatewayClient, GatewayRejected, GatewayUnavailable, Refund

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_DEADLINE_S = 30


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RunningSandbox:
    def __init__(self, process, url, log_path):
        self.process, self.url, self.log_path = process, url, log_path

    def log(self):
        return self.log_path.read_text(errors="replace")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_sandbox(db_path, *extra_args, env=None):
    """Start ``python -m gateway`` on a free port and wait until /healthz answers."""
    port = _free_port()
    log_path = Path(f"{db_path}.{port}.log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--host", "127.0.0.1", "--port", str(port),
             "--db", str(db_path), *extra_args],
            cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    sandbox = RunningSandbox(process, f"http://127.0.0.1:{port}", log_path)
    probe = GatewayClient(sandbox.url, timeout=1.0, connect_timeout=0.5)
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    while not probe.healthy():
        if process.poll() is not None or time.monotonic() > deadline:
            sandbox.stop()
            pytest.fail(f"gateway sandbox did not come up:\n{sandbox.log()}")
        time.sleep(0.05)
    return sandbox


@pytest.fixture(scope="module")
def db_path(tmp_path_factory):
    return tmp_path_factory.mktemp("gateway") / "gw.sqlite3"


@pytest.fixture(scope="module")
def sandbox(db_path):
    running = start_sandbox(db_path)
    yield running
    running.stop()


@pytest.fixture
def gateway(sandbox):
    client = GatewayClient(sandbox.url)
    yield client
    client.clear_faults()  # a test that injects faults never leaks them into the next one


@pytest.fixture
def reference():
    return f"booking-{uuid.uuid4().hex[:12]}"


def new_key():
    return uuid.uuid4().hex


@pytest.fixture
def captured_charge(gateway, reference):
    return gateway.charge(reference=reference, amount=30_000, payment_method="tok_ok",
                          idempotency_key=new_key())


# -- charges ----------------------------------------------------------------------------------

def test_approved_token_captures_the_charge(gateway, reference):
    charge = gateway.charge(reference=reference, amount=55_000, payment_method="tok_ok",
                            idempotency_key=new_key())

    assert isinstance(charge, Charge)
    assert charge.captured
    assert (charge.reference, charge.amount, charge.currency, charge.refunded_amount) == (
        reference, 55_000, "KRW", 0)
    assert gateway.get_charge(charge.id) == charge


def test_declined_token_declines_the_charge_and_captures_no_money(gateway, reference):
    charge = gateway.charge(reference=reference, amount=55_000, payment_method="tok_declined",
                            idempotency_key=new_key())

    assert charge.status == "declined"
    assert not charge.captured
    assert gateway.ledger(reference) == {
        "reference": reference, "captured": 0, "refunded": 0, "charges": 1, "refunds": 0}


def test_unknown_payment_token_is_declined(gateway, reference):
    charge = gateway.charge(reference=reference, amount=1_000, payment_method="tok_whatever",
                            idempotency_key=new_key())

    assert charge.status == "declined"


def test_retry_with_the_same_key_replays_the_charge_and_the_ledger_counts_it_once(gateway, reference):
    key = new_key()
    first = gateway.charge(reference=reference, amount=20_000, payment_method="tok_ok",
                           idempotency_key=key)
    again = gateway.charge(reference=reference, amount=20_000, payment_method="tok_ok",
                           idempotency_key=key)

    assert again == first
    assert gateway.find_charges(reference) == [first]
    ledger = gateway.ledger(reference)
    assert (ledger["captured"], ledger["charges"]) == (20_000, 1)


def test_replayed_charge_answers_200_with_an_identical_body(sandbox, reference):
    body = {"reference": reference, "amount": 5_000, "payment_method": "tok_ok"}
    headers = {"Idempotency-Key": new_key()}

    first = requests.post(f"{sandbox.url}/v1/charges", json=body, headers=headers, timeout=5)
    again = requests.post(f"{sandbox.url}/v1/charges", json=body, headers=headers, timeout=5)

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()


def test_same_key_with_a_different_body_is_rejected(gateway, reference):
    key = new_key()
    gateway.charge(reference=reference, amount=20_000, payment_method="tok_ok", idempotency_key=key)

    with pytest.raises(GatewayRejected) as rejected:
        gateway.charge(reference=reference, amount=99_000, payment_method="tok_ok",
                       idempotency_key=key)

    assert rejected.value.status == 422
    assert rejected.value.code == "idempotency_key_reused"
    assert gateway.ledger(reference)["captured"] == 20_000


def test_concurrent_charges_with_one_key_create_exactly_one_charge(sandbox, reference):
    gateway = GatewayClient(sandbox.url)
    key = new_key()
    start_together = threading.Barrier(20)

    def charge_once(_):
        start_together.wait()
        return gateway.charge(reference=reference, amount=40_000, payment_method="tok_ok",
                              idempotency_key=key)

    with ThreadPoolExecutor(20) as pool:
        charges = list(pool.map(charge_once, range(20)))

    assert len({charge.id for charge in charges}) == 1
    ledger = gateway.ledger(reference)
    assert (ledger["captured"], ledger["charges"]) == (40_000, 1)


def test_charge_without_idempotency_key_is_a_bad_request(sandbox, reference):
    response = requests.post(
        f"{sandbox.url}/v1/charges",
        json={"reference": reference, "amount": 1_000, "payment_method": "tok_ok"}, timeout=5)

    assert response.status_code == 400
    assert response.json()["message"]


@pytest.mark.parametrize("amount", [0, -5, 1.5, True])
def test_charge_with_an_invalid_amount_is_rejected_and_records_nothing(gateway, reference, amount):
    with pytest.raises(GatewayRejected) as rejected:
        gateway.charge(reference=reference, amount=amount, payment_method="tok_ok",
                       idempotency_key=new_key())

    assert rejected.value.status == 422
    assert gateway.find_charges(reference) == []


def test_charge_with_unknown_fields_or_malformed_json_is_rejected(sandbox, reference):
    headers = {"Idempotency-Key": new_key(), "Content-Type": "application/json"}
    unknown = requests.post(
        f"{sandbox.url}/v1/charges", headers=headers, timeout=5,
        json={"reference": reference, "amount": 1, "payment_method": "tok_ok", "tip": 5})
    malformed = requests.post(f"{sandbox.url}/v1/charges", headers=headers, data="{", timeout=5)

    assert unknown.status_code == 422
    assert unknown.json()["errors"] == {"tip": "unknown field"}
    assert malformed.status_code == 400


def test_charges_for_a_reference_are_listed_oldest_first(gateway, reference):
    made = [gateway.charge(reference=reference, amount=amount, payment_method="tok_ok",
                           idempotency_key=new_key()) for amount in (1_000, 2_000, 3_000)]

    assert gateway.find_charges(reference) == made
    assert gateway.find_charges(f"{reference}-never-charged") == []


def test_unknown_charge_is_not_found(gateway):
    assert gateway.get_charge("ch_does_not_exist") is None


# -- refunds ----------------------------------------------------------------------------------

def test_full_refund_returns_all_the_money(gateway, captured_charge):
    refund = gateway.refund(charge_id=captured_charge.id, amount=30_000, idempotency_key=new_key())

    assert isinstance(refund, Refund)
    assert (refund.charge_id, refund.amount, refund.status) == (captured_charge.id, 30_000, "succeeded")
    assert gateway.get_charge(captured_charge.id).refunded_amount == 30_000
    ledger = gateway.ledger(captured_charge.reference)
    assert (ledger["captured"], ledger["refunded"], ledger["refunds"]) == (30_000, 30_000, 1)


def test_partial_refunds_add_up_to_the_captured_amount(gateway, captured_charge):
    gateway.refund(charge_id=captured_charge.id, amount=10_000, idempotency_key=new_key())
    gateway.refund(charge_id=captured_charge.id, amount=20_000, idempotency_key=new_key())

    assert gateway.get_charge(captured_charge.id).refunded_amount == 30_000
    assert gateway.ledger(captured_charge.reference)["refunds"] == 2


def test_refund_beyond_what_is_left_is_rejected_and_moves_no_money(gateway, captured_charge):
    gateway.refund(charge_id=captured_charge.id, amount=25_000, idempotency_key=new_key())

    with pytest.raises(GatewayRejected) as rejected:
        gateway.refund(charge_id=captured_charge.id, amount=10_000, idempotency_key=new_key())

    assert (rejected.value.status, rejected.value.code) == (409, "refund_exceeds_remaining")
    assert gateway.get_charge(captured_charge.id).refunded_amount == 25_000


def test_refund_of_a_fully_refunded_charge_says_nothing_left_to_refund(gateway, captured_charge):
    gateway.refund(charge_id=captured_charge.id, amount=30_000, idempotency_key=new_key())

    with pytest.raises(GatewayRejected) as rejected:
        gateway.refund(charge_id=captured_charge.id, amount=1, idempotency_key=new_key())

    assert (rejected.value.status, rejected.value.code) == (409, "nothing_to_refund")


def test_refund_retry_with_the_same_key_replays_it_and_refunds_once(gateway, captured_charge):
    key = new_key()
    first = gateway.refund(charge_id=captured_charge.id, amount=12_000, idempotency_key=key)
    again = gateway.refund(charge_id=captured_charge.id, amount=12_000, idempotency_key=key)

    assert again == first
    ledger = gateway.ledger(captured_charge.reference)
    assert (ledger["refunded"], ledger["refunds"]) == (12_000, 1)


def test_refund_of_a_declined_charge_is_rejected(gateway, reference):
    declined = gateway.charge(reference=reference, amount=5_000, payment_method="tok_declined",
                              idempotency_key=new_key())

    with pytest.raises(GatewayRejected) as rejected:
        gateway.refund(charge_id=declined.id, amount=5_000, idempotency_key=new_key())

    assert (rejected.value.status, rejected.value.code) == (409, "charge_not_captured")


def test_refund_of_an_unknown_charge_is_not_found(gateway):
    with pytest.raises(GatewayRejected) as rejected:
        gateway.refund(charge_id="ch_does_not_exist", amount=5_000, idempotency_key=new_key())

    assert rejected.value.status == 404


def test_concurrent_refunds_never_exceed_the_captured_amount(sandbox, captured_charge):
    gateway = GatewayClient(sandbox.url)
    start_together = threading.Barrier(20)

    def refund_3000(_):
        start_together.wait()
        try:
            return gateway.refund(charge_id=captured_charge.id, amount=3_000,
                                  idempotency_key=new_key())
        except GatewayRejected as rejected:
            return rejected.code

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(refund_3000, range(20)))

    assert sum(isinstance(outcome, Refund) for outcome in outcomes) == 10
    assert set(o for o in outcomes if not isinstance(o, Refund)) == {"nothing_to_refund"}
    assert gateway.get_charge(captured_charge.id).refunded_amount == 30_000


# -- voids ------------------------------------------------------------------------------------

def test_a_void_before_any_charge_says_voided_and_the_charge_is_refused_for_good(gateway, reference):
    key = new_key()

    void = gateway.void_charge(idempotency_key=key)

    assert (void.status, void.charge, void.nothing_taken) == ("voided", None, True)
    for _ in range(2):
        with pytest.raises(ChargeVoided) as refused:
            gateway.charge(reference=reference, amount=5_000, payment_method="tok_ok", idempotency_key=key)
        assert (refused.value.status, refused.value.code) == (409, "charge_voided")
        assert isinstance(refused.value, GatewayRejected)
    assert gateway.ledger(reference) == {
        "reference": reference, "captured": 0, "refunded": 0, "charges": 0, "refunds": 0}
    assert gateway.void_charge(idempotency_key=key) == void  # repeating it is harmless


def test_a_void_after_a_capture_returns_the_charge_and_the_charge_still_replays(gateway, reference):
    key = new_key()
    charge = gateway.charge(reference=reference, amount=5_000, payment_method="tok_ok", idempotency_key=key)

    void = gateway.void_charge(idempotency_key=key)

    assert (void.status, void.charge, void.nothing_taken) == ("captured", charge, False)
    assert gateway.charge(reference=reference, amount=5_000, payment_method="tok_ok",
                          idempotency_key=key) == charge
    assert gateway.void_charge(idempotency_key=key) == void
    assert gateway.ledger(reference)["captured"] == 5_000


def test_a_void_after_a_decline_returns_the_declined_charge(gateway, reference):
    key = new_key()
    declined = gateway.charge(reference=reference, amount=5_000, payment_method="tok_declined",
                              idempotency_key=key)

    void = gateway.void_charge(idempotency_key=key)

    assert (void.status, void.charge, void.nothing_taken) == ("declined", declined, True)


def test_a_void_while_a_slow_charge_is_in_flight_makes_it_refuse(sandbox, gateway, reference):
    # latency_ms sleeps before anything is recorded. The charge's client gives up (so the request
    # is at the gateway, asleep); the void, sent without latency, lands first.
    key = new_key()
    gateway.set_faults(latency_ms=3000)
    with pytest.raises(GatewayUnavailable):
        GatewayClient(sandbox.url, timeout=1.0).charge(reference=reference, amount=5_000, payment_method="tok_ok",
                                                       idempotency_key=key)
    gateway.clear_faults()

    assert gateway.void_charge(idempotency_key=key).status == "voided"

    # The same request again, as slow and sent later, lands after the one asleep: neither captured.
    gateway.set_faults(latency_ms=3000)
    with pytest.raises(ChargeVoided):
        GatewayClient(sandbox.url, timeout=30).charge(reference=reference, amount=5_000, payment_method="tok_ok",
                                                      idempotency_key=key)
    assert gateway.ledger(reference)["charges"] == 0


def test_a_void_after_a_hung_charge_tells_whether_it_captured(sandbox, gateway):
    # A hung charge recorded its money half of the time; the void tells which, for good.
    gateway.set_faults(timeout_rate=1.0, timeout_s=1.5)
    impatient = GatewayClient(sandbox.url, timeout=0.3)
    attempts = [(f"booking-{uuid.uuid4().hex[:12]}", new_key()) for _ in range(10)]

    def timed_out(attempt):
        with pytest.raises(GatewayUnavailable):
            impatient.charge(reference=attempt[0], amount=7_000, payment_method="tok_ok",
                             idempotency_key=attempt[1])

    with ThreadPoolExecutor(len(attempts)) as pool:
        list(pool.map(timed_out, attempts))
    gateway.clear_faults()

    for reference, key in attempts:
        void = gateway.void_charge(idempotency_key=key)
        ledger = gateway.ledger(reference)
        if void.status == "captured":
            assert (ledger["captured"], void.charge.reference) == (7_000, reference)
        else:
            assert void.status == "voided" and ledger["charges"] == 0
            with pytest.raises(ChargeVoided):
                gateway.charge(reference=reference, amount=7_000, payment_method="tok_ok", idempotency_key=key)


def test_voids_and_charges_racing_on_one_key_never_capture_after_a_voided_answer(sandbox):
    client = GatewayClient(sandbox.url)
    for _ in range(10):
        reference, key = f"booking-{uuid.uuid4().hex[:12]}", new_key()
        start_together = threading.Barrier(2)

        def charge():
            start_together.wait()
            try:
                return client.charge(reference=reference, amount=1_000, payment_method="tok_ok",
                                     idempotency_key=key)
            except ChargeVoided:
                return None

        def void():
            start_together.wait()
            return client.void_charge(idempotency_key=key)

        with ThreadPoolExecutor(2) as pool:
            charged, voided = pool.submit(charge), pool.submit(void)
            charged, voided = charged.result(), voided.result()
        if voided.status == "voided":
            assert charged is None and client.ledger(reference)["captured"] == 0
        else:
            assert voided.charge == charged and client.ledger(reference)["captured"] == 1_000


@pytest.mark.parametrize("body", [{}, {"idempotency_key": ""}, {"idempotency_key": 5},
                                  {"idempotency_key": "k", "reference": "r"}])
def test_an_invalid_void_is_rejected(sandbox, body):
    response = requests.post(f"{sandbox.url}/v1/charges/cancel", json=body, timeout=5)

    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"


def test_a_void_during_an_outage_is_unavailable_and_voids_nothing(gateway, reference):
    key = new_key()
    gateway.set_faults(outage=True)
    with pytest.raises(GatewayUnavailable):
        gateway.void_charge(idempotency_key=key)
    gateway.clear_faults()

    assert gateway.charge(reference=reference, amount=1_000, payment_method="tok_ok",
                          idempotency_key=key).captured


# -- the listing of every charge ---------------------------------------------------------------

def test_charges_are_listed_in_creation_order_a_page_at_a_time(gateway, reference):
    start = gateway.charge(reference=f"{reference}-0", amount=1, payment_method="tok_ok", idempotency_key=new_key())
    made = [gateway.charge(reference=f"{reference}-{n}", amount=100 + n, payment_method="tok_ok",
                           idempotency_key=new_key()) for n in range(1, 6)]

    pages, cursor = [], start.id
    while True:
        page = gateway.list_charges(starting_after=cursor, limit=2)
        pages.append(page.charges)
        cursor = page.next_cursor
        if not page.has_more:
            break

    assert [charge for each in pages for charge in each] == made
    assert [len(each) for each in pages] == [2, 2, 1]
    assert gateway.list_charges(starting_after=made[-1].id).charges == []
    assert gateway.list_charges(starting_after=made[-1].id).next_cursor == made[-1].id


def test_charges_created_after_a_time_are_listed(sandbox, gateway, reference):
    from datetime import datetime, timedelta
    first = gateway.charge(reference=reference, amount=1, payment_method="tok_ok", idempotency_key=new_key())
    later = gateway.charge(reference=reference, amount=2, payment_method="tok_ok", idempotency_key=new_key())
    created = datetime.fromisoformat(requests.get(f"{sandbox.url}/v1/charges/{first.id}", timeout=5).json()["created_at"])

    since = gateway.list_charges(created_after=(created - timedelta(seconds=1)).isoformat(), limit=500)
    future = gateway.list_charges(created_after=(created + timedelta(days=1)).isoformat())

    assert [c for c in since.charges if c.reference == reference] == [first, later]
    assert (future.charges, future.has_more, future.next_cursor) == ([], False, None)


@pytest.mark.parametrize("params", [{"limit": "0"}, {"limit": "501"}, {"limit": "many"},
                                    {"created_after": "yesterday"}, {"created_after": "2026-01-01T00:00:00"},
                                    {"starting_after": "ch_does_not_exist"}, {"colour": "red"}])
def test_an_invalid_listing_is_rejected(sandbox, params):
    response = requests.get(f"{sandbox.url}/v1/charges", params=params, timeout=5)

    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"


def test_a_refund_says_whether_it_was_made_or_replayed(gateway, captured_charge):
    key = new_key()
    first = gateway.refund(charge_id=captured_charge.id, amount=1_000, idempotency_key=key)
    again = gateway.refund(charge_id=captured_charge.id, amount=1_000, idempotency_key=key)

    assert (first.created, again.created) == (True, False)


# -- ledger -----------------------------------------------------------------------------------

def test_ledger_sums_captured_and_refunded_money_per_reference(gateway, reference):
    other = f"{reference}-other"
    paid = gateway.charge(reference=reference, amount=10_000, payment_method="tok_ok",
                          idempotency_key=new_key())
    gateway.charge(reference=reference, amount=7_000, payment_method="tok_declined",
                   idempotency_key=new_key())
    gateway.refund(charge_id=paid.id, amount=4_000, idempotency_key=new_key())
    gateway.charge(reference=other, amount=2_500, payment_method="tok_ok", idempotency_key=new_key())

    whole = gateway.ledger()

    assert whole["by_reference"][reference] == {
        "captured": 10_000, "refunded": 4_000, "charges": 2, "refunds": 1}
    assert whole["by_reference"][other] == {
        "captured": 2_500, "refunded": 0, "charges": 1, "refunds": 0}
    assert whole["totals"] == {
        "captured": sum(entry["captured"] for entry in whole["by_reference"].values()),
        "refunded": sum(entry["refunded"] for entry in whole["by_reference"].values()),
    }
    assert gateway.ledger(reference) == {"reference": reference, **whole["by_reference"][reference]}


def test_ledger_of_an_unknown_reference_is_all_zeros(gateway, reference):
    assert gateway.ledger(reference) == {
        "reference": reference, "captured": 0, "refunded": 0, "charges": 0, "refunds": 0}


# -- faults -----------------------------------------------------------------------------------

def test_outage_makes_the_gateway_unavailable_and_records_nothing(gateway, reference, captured_charge):
    gateway.set_faults(outage=True)

    with pytest.raises(GatewayUnavailable):
        gateway.charge(reference=reference, amount=1_000, payment_method="tok_ok",
                       idempotency_key=new_key())
    with pytest.raises(GatewayUnavailable):
        gateway.refund(charge_id=captured_charge.id, amount=1_000, idempotency_key=new_key())

    # Lookups and the ledger keep answering during an outage.
    assert gateway.find_charges(reference) == [captured_charge]
    assert gateway.ledger(reference)["refunded"] == 0
    assert gateway.healthy()


def test_error_rate_of_one_fails_every_charge_and_records_nothing(gateway, reference):
    gateway.set_faults(error_rate=1.0)

    for _ in range(5):
        with pytest.raises(GatewayUnavailable):
            gateway.charge(reference=reference, amount=1_000, payment_method="tok_ok",
                           idempotency_key=new_key())

    assert gateway.ledger(reference)["charges"] == 0


def test_latency_still_charges_exactly_once(gateway, reference):
    gateway.set_faults(latency_ms=50)

    charge = gateway.charge(reference=reference, amount=1_000, payment_method="tok_ok",
                            idempotency_key=new_key())

    assert charge.captured
    assert gateway.ledger(reference)["charges"] == 1


def test_retry_after_a_timeout_leaves_exactly_one_captured_charge(sandbox, gateway):
    # A hung charge may or may not have been recorded before hanging; the retry with the same
    # key must end with exactly one charge either way. Eight of them cover both cases.
    gateway.set_faults(timeout_rate=1.0, timeout_s=1.5)
    impatient = GatewayClient(sandbox.url, timeout=0.3)
    attempts = [(f"booking-{uuid.uuid4().hex[:12]}", new_key()) for _ in range(8)]

    def charge(attempt, client):
        reference, key = attempt
        return client.charge(reference=reference, amount=8_000, payment_method="tok_ok",
                             idempotency_key=key)

    def timed_out(attempt):
        try:
            charge(attempt, impatient)
        except GatewayUnavailable:
            return True
        return False

    with ThreadPoolExecutor(len(attempts)) as pool:
        assert all(pool.map(timed_out, attempts))

    gateway.clear_faults()
    for attempt in attempts:
        retried = charge(attempt, gateway)
        reference = attempt[0]
        assert retried.captured
        assert gateway.find_charges(reference) == [retried]
        assert gateway.ledger(reference)["captured"] == 8_000


def test_retry_after_a_refund_timeout_refunds_exactly_once(sandbox, gateway, reference):
    charges = [gateway.charge(reference=f"{reference}-{n}", amount=6_000, payment_method="tok_ok",
                              idempotency_key=new_key()) for n in range(8)]
    keys = {charge.id: new_key() for charge in charges}
    gateway.set_faults(timeout_rate=1.0, timeout_s=1.5)
    impatient = GatewayClient(sandbox.url, timeout=0.3)

    def timed_out(charge):
        try:
            impatient.refund(charge_id=charge.id, amount=6_000, idempotency_key=keys[charge.id])
        except GatewayUnavailable:
            return True
        return False

    with ThreadPoolExecutor(len(charges)) as pool:
        assert all(pool.map(timed_out, charges))

    gateway.clear_faults()
    for charge in charges:
        gateway.refund(charge_id=charge.id, amount=6_000, idempotency_key=keys[charge.id])
        ledger = gateway.ledger(charge.reference)
        assert (ledger["refunded"], ledger["refunds"]) == (6_000, 1)


DEFAULT_FAULTS = {"latency_ms": 0, "error_rate": 0.0, "timeout_rate": 0.0, "timeout_s": 30.0,
                  "outage": False, "error_statuses": [500, 503], "error_body": True}


def test_faults_can_be_read_changed_and_cleared(gateway):
    assert gateway.set_faults(latency_ms=5, error_rate=0.25) == {
        **DEFAULT_FAULTS, "latency_ms": 5, "error_rate": 0.25}
    assert gateway.get_faults()["error_rate"] == 0.25
    assert gateway.set_faults(error_statuses=[404, 502], error_body=False) == {
        **DEFAULT_FAULTS, "latency_ms": 5, "error_rate": 0.25, "error_statuses": [404, 502],
        "error_body": False}

    gateway.clear_faults()

    assert gateway.get_faults() == DEFAULT_FAULTS


@pytest.mark.parametrize("faults", [
    {"error_rate": 1.5}, {"timeout_rate": -0.1}, {"latency_ms": "slow"}, {"outage": "yes"},
    {"meltdown": True}, {"error_statuses": []}, {"error_statuses": [399]}, {"error_statuses": [600]},
    {"error_statuses": ["500"]}, {"error_statuses": [500.0]}, {"error_statuses": [True]},
    {"error_statuses": 500}, {"error_body": "no"}, {"error_body": 0},
])
def test_invalid_faults_are_rejected(gateway, faults):
    with pytest.raises(GatewayRejected) as rejected:
        gateway.set_faults(**faults)

    assert rejected.value.status == 422
    assert rejected.value.code == "invalid_request"
    assert gateway.get_faults() == DEFAULT_FAULTS  # a bad value changes nothing


@pytest.mark.parametrize("status", [400, 404, 408, 409, 422, 429, 502])
def test_an_injected_error_answers_a_status_from_error_statuses_and_moves_no_money(sandbox, gateway, reference,
                                                                                 status):
    gateway.set_faults(error_rate=1.0, error_statuses=[status])

    response = requests.post(f"{sandbox.url}/v1/charges", headers={"Idempotency-Key": new_key()}, timeout=5,
                             json={"reference": reference, "amount": 1_000, "payment_method": "tok_ok"})

    assert response.status_code == status
    assert response.json()["code"] == "injected_error"
    # Not one of the gateway's own refusals: the outcome is unknown, never a rejection.
    with pytest.raises(GatewayUnavailable):
        gateway.charge(reference=reference, amount=1_000, payment_method="tok_ok", idempotency_key=new_key())
    assert gateway.ledger(reference)["charges"] == 0


def test_injected_errors_pick_among_the_error_statuses(sandbox, gateway, reference):
    gateway.set_faults(error_rate=1.0, error_statuses=[502, 404])

    seen = {requests.post(f"{sandbox.url}/v1/charges", headers={"Idempotency-Key": new_key()}, timeout=5,
                          json={"reference": reference, "amount": 1, "payment_method": "tok_ok"}).status_code
            for _ in range(40)}

    assert seen == {502, 404}


def test_an_injected_error_without_a_body_has_no_json(sandbox, gateway, reference):
    gateway.set_faults(error_rate=1.0, error_statuses=[502], error_body=False)

    response = requests.post(f"{sandbox.url}/v1/charges", headers={"Idempotency-Key": new_key()}, timeout=5,
                             json={"reference": reference, "amount": 1_000, "payment_method": "tok_ok"})

    assert response.status_code == 502
    assert response.content == b""
    assert "json" not in response.headers.get("Content-Type", "")
    with pytest.raises(GatewayUnavailable):
        gateway.charge(reference=reference, amount=1_000, payment_method="tok_ok", idempotency_key=new_key())


def test_the_default_injected_errors_are_500_and_503_with_a_json_body(sandbox, gateway, reference):
    gateway.set_faults(error_rate=1.0)

    answers = [requests.post(f"{sandbox.url}/v1/charges", headers={"Idempotency-Key": new_key()}, timeout=5,
                             json={"reference": reference, "amount": 1, "payment_method": "tok_ok"})
               for _ in range(20)]

    assert {answer.status_code for answer in answers} <= {500, 503}
    assert all(answer.json()["code"] == "injected_error" for answer in answers)


def test_faults_set_through_one_server_process_are_seen_by_another(db_path, gateway, reference):
    second = start_sandbox(db_path)
    try:
        other = GatewayClient(second.url)
        gateway.set_faults(outage=True)

        assert other.get_faults()["outage"] is True
        with pytest.raises(GatewayUnavailable):
            other.charge(reference=reference, amount=1_000, payment_method="tok_ok",
                         idempotency_key=new_key())

        other.clear_faults()

        assert gateway.charge(reference=reference, amount=1_000, payment_method="tok_ok",
                              idempotency_key=new_key()).captured
        assert [c.id for c in other.find_charges(reference)] == [
            c.id for c in gateway.find_charges(reference)]
    finally:
        assert second.stop() == 0


# -- the process ------------------------------------------------------------------------------

def test_faults_given_at_start_are_in_force_and_sigterm_stops_the_sandbox(tmp_path):
    running = start_sandbox(tmp_path / "gw.sqlite3", "--outage", "--workers", "2", "--no-error-body",
                            env={"GATEWAY_LATENCY_MS": "7", "GATEWAY_ERROR_STATUSES": "404,502"})
    client = GatewayClient(running.url)
    try:
        assert client.get_faults()["outage"] is True
        assert client.get_faults()["latency_ms"] == 7
        assert (client.get_faults()["error_statuses"], client.get_faults()["error_body"]) == ([404, 502], False)
        with pytest.raises(GatewayUnavailable):
            client.charge(reference="r", amount=1, payment_method="tok_ok", idempotency_key="k")
    finally:
        exit_code = running.stop()

    assert exit_code == 0
    assert not client.healthy()


def test_client_reports_unavailable_when_nothing_listens():
    client = GatewayClient(f"http://127.0.0.1:{_free_port()}", timeout=1.0, connect_timeout=0.5)

    assert not client.healthy()
    with pytest.raises(GatewayUnavailable):
        client.charge(reference="r", amount=1, payment_method="tok_ok", idempotency_key="k")
