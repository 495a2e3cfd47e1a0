"""Integration fixtures: a real gateway sandbox and real Celery worker processes, plus factories
that make users, shows and bookings through the HTTP API (Flask test client)."""
import os
import secrets
import shutil
import tempfile
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from gateway.client import GatewayClient
from tests.processes import start_gateway, start_worker, wait_until


@pytest.fixture(scope="package")
def workdir():
    folder = Path(tempfile.mkdtemp(prefix="boxoffice-it-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="package")
def gateway(app, workdir):
    """The payment gateway sandbox as its own process; the app and the workers talk to it."""
    process, url = start_gateway(workdir)
    client = GatewayClient(url, timeout=5)
    previous = app.extensions["payment_gateway"], app.config["GATEWAY_URL"]
    app.extensions["payment_gateway"], app.config["GATEWAY_URL"] = client, url
    yield client
    app.extensions["payment_gateway"], app.config["GATEWAY_URL"] = previous
    process.stop()


@pytest.fixture(scope="package")
def worker_env(gateway):
    return {"GATEWAY_URL": gateway.base_url, "GATEWAY_TIMEOUT_S": "2"}


@pytest.fixture(scope="package")
def worker(workdir, worker_env):
    """One real worker process consuming every queue."""
    process = start_worker(workdir, "it-worker", worker_env)
    yield process
    process.stop()


@pytest.fixture
def db_session(app):
    from models import db
    with app.app_context():
        yield db.session
        db.session.rollback()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _headers_of_a_new(app, role: str, name: str) -> dict:
    from models import db
    from models.users import register
    email, password = f"{role}-{secrets.token_hex(4)}@example.com", f"{role}-password"
    with app.app_context():
        register(email, password, name, role=role)
        db.session.commit()
    token = app.test_client().post("/auth/token", json={"email": email, "password": password}).json["access_token"]
    return bearer(token)


@pytest.fixture(scope="package")
def admin_headers(app):
    from models.users import Role
    return _headers_of_a_new(app, Role.ADMIN, "Admin")


@pytest.fixture(scope="package")
def staff_headers(app):
    """Door staff (SPEC §10): may check tickets in, nothing else."""
    from models.users import Role
    return _headers_of_a_new(app, Role.STAFF, "Gate staff")


@pytest.fixture
def new_customer(app):
    """Registers a fresh customer; returns their auth headers (and id under 'id')."""
    def make():
        client = app.test_client()
        email = f"c-{secrets.token_hex(6)}@example.com"
        user = client.post("/auth/register", json={"email": email, "password": "password-1", "name": "C"}).json
        token = client.post("/auth/token", json={"email": email, "password": "password-1"}).json["access_token"]
        return {"headers": bearer(token), "id": user["id"]}
    return make


@pytest.fixture
def customer(new_customer):
    return new_customer()


@pytest.fixture
def make_show(app, admin_headers):
    def make(capacity: int = 10, price: int = 1000, starts_in: timedelta = timedelta(days=30),
             cancellation_policy: list | None = None) -> dict:
        starts_at = (datetime.now(timezone.utc) + starts_in).isoformat()
        policy = {} if cancellation_policy is None else {"cancellation_policy": cancellation_policy}
        response = app.test_client().post("/shows", headers=admin_headers, json={
            "title": f"Show {secrets.token_hex(3)}", "venue": "Hall", "starts_at": starts_at,
            "price": price, "capacity": capacity, **policy})
        assert response.status_code == 201, response.json
        return response.json
    return make


@pytest.fixture
def book(app):
    def post(customer: dict, show_id: str, qty: int = 1, payment_method: str = "tok_ok", key: str | None = None):
        headers = dict(customer["headers"])
        if key:
            headers["Idempotency-Key"] = key
        return app.test_client().post("/bookings", headers=headers,
                                      json={"show_id": show_id, "qty": qty, "payment_method": payment_method})
    return post


@pytest.fixture
def booking_state(app):
    """Reads a booking's current state straight from the database."""
    from models import db
    from models.bookings import Booking

    def read(booking_id: str) -> dict:
        with app.app_context():
            booking = db.session.get(Booking, booking_id)
            return {"status": booking.status, "payment_status": booking.payment.status,
                    "ticket_status": booking.ticket.status, "seats_held": booking.seats_held,
                    "remaining": booking.show.remaining, "version": booking.version}
    return read


@pytest.fixture
def wait_for(booking_state):
    def wait(booking_id: str, timeout: float = 60, **expected) -> dict:
        def matches():
            state = booking_state(booking_id)
            return state if all(state[k] == v for k, v in expected.items()) else None
        return wait_until(matches, timeout, 0.1, f"booking {booking_id} to reach {expected}")
    return wait


@pytest.fixture
def show_remaining(app):
    def read(show_id: str) -> int:
        return app.test_client().get(f"/shows/{show_id}").json["remaining"]
    return read


@contextmanager
def sweeping_with(app, dispatch_due):
    """A beat sweep (a dispatch_due of services/), run from the test every 0.5 s until the block
    ends: retries come due and go out without beat."""
    stop = threading.Event()

    def sweep():
        while not stop.wait(0.5):
            with app.app_context():
                dispatch_due()
    thread = threading.Thread(target=sweep, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)

