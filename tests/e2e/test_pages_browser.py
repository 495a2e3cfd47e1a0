"""The three pages in headless chromium against the stack as the run command starts it (API,
workers, beat): the seat map of a show with seats in every state, drawn as the JSON page says;
the waiting room of a show about to go on sale, signed into with the keyboard alone, waited in
until the admission; the dashboard during a small rush. Each state is screenshot into
test-artifacts/, and every HTML page passes axe-core with no serious or critical violation."""
import secrets
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from gateway.client import GatewayClient
from tests.e2e.browser import Browser, chromium_or_skip
from tests.e2e.conftest import SHOP_URL_TEMPLATE
from tests.e2e.test_readme_flow import bearer, create_admin_with_the_cli, token, wait_for_booking
from tests.processes import wait_until

ROOT = Path(__file__).resolve().parent.parent.parent
ARTIFACTS = ROOT / "test-artifacts"
HALL = {"name": "Pages hall", "sections": [
    {"name": "Floor", "rows": [{"name": row, "seats": 24, "category": "VIP"} for row in "ABCD"]},
    {"name": "Balcony", "rows": [{"name": row, "seats": 30, "category": "R"} for row in "EFG"]
                        + [{"name": "H", "seats": [1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 13, 14], "category": "S"}]},
]}
PRICES = {"VIP": 150000, "R": 90000, "S": 50000}


@pytest.fixture(scope="module")
def chromium() -> str:
    return chromium_or_skip()


@pytest.fixture(scope="module")
def admin(stack, api):
    email = f"pages-admin-{secrets.token_hex(3)}@example.com"
    create_admin_with_the_cli(stack, email, "pages-password")
    return {"email": email, "password": "pages-password", "headers": bearer(token(api, email, "pages-password"))}


def customer(api) -> dict:
    email = f"fan-{secrets.token_hex(4)}@example.com"
    assert api.post("/auth/register", json={"email": email, "password": "fan-password-1", "name": "Fan"}).status_code == 201
    return {"email": email, "password": "fan-password-1", "headers": bearer(token(api, email, "fan-password-1"))}


def reserved_show(api, admin, **extra) -> dict:
    seat_map = api.post("/seat-maps", headers=admin["headers"], json=HALL).json()
    response = api.post("/shows", headers=admin["headers"], json={
        "title": f"Pages night {secrets.token_hex(2)}", "venue": "Seoul Arts Center", "seat_map_id": seat_map["id"],
        "prices": PRICES, "starts_at": (datetime.now(timezone.utc) + timedelta(days=30)).isoformat(), **extra})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def browser(chromium, tmp_path):
    opened = []

    def open_browser(**options) -> Browser:
        opened.append(Browser(chromium, tmp_path / f"profile-{len(opened)}", **options))
        return opened[-1]
    yield open_browser
    for each in opened:
        each.close()


def assert_accessible(page: Browser, what: str) -> None:
    violations = page.axe_violations()
    assert not violations, f"{what}: axe-core found {violations}"


def sign_in_with_the_keyboard(page: Browser, email: str, password: str) -> None:
    """The focus starts in the email field; Tab to the password, Enter submits: no mouse."""
    page.wait_for("document.activeElement && document.activeElement.id === 'email'", 10, "the email field focused")
    page.type(email)
    page.press("Tab")
    assert page.focused() == "password"
    page.type(password)
    page.press("Enter")


def test_the_seat_map_draws_every_state_as_the_json_page_says(stack, api, admin, browser):
    show = reserved_show(api, admin)
    fan = customer(api)
    sold = api.post("/bookings", headers=fan["headers"], json={
        "show_id": show["id"], "payment_method": "tok_ok", "seats": [f"1-1-{n}" for n in range(9, 15)]}).json()
    wait_for_booking(api, fan["headers"], sold["id"], status="PAID")
    blocked = [f"2-4-{n}" for n in (1, 2, 3)] + ["1-4-1", "1-4-24"]
    assert api.patch(f"/shows/{show['id']}", headers=admin["headers"], json={"blocked_seats": blocked}).status_code == 200
    gateway = GatewayClient(stack.urls["gateway"])
    gateway.set_faults(latency_ms=8000)  # the charge waits: these seats stay HELD while we look
    try:
        api.post("/bookings", headers=customer(api)["headers"], json={
            "show_id": show["id"], "payment_method": "tok_ok", "seats": [f"1-2-{n}" for n in range(5, 11)]})
        wait_until(lambda: api.get(f"/shows/{show['id']}/seats").json()["seats"][24 + 4]["status"] == "HELD", 60, 0.2,
                   "the held seats")
        expected = {seat["id"]: seat["status"] for seat in api.get(f"/shows/{show['id']}/seats").json()["seats"]}
        assert set(expected.values()) == {"AVAILABLE", "HELD", "SOLD", "BLOCKED"}

        page = browser(width=1000, height=700)
        page.open(f"{api.base}/shows/{show['id']}/seats.svg")
        page.wait_for("document.documentElement.tagName === 'svg'", 10)
        time.sleep(1.1)  # the picture may be a second old: look at one made after the JSON page
        page.open(f"{api.base}/shows/{show['id']}/seats.svg")
        drawn = page.evaluate("Object.fromEntries([...document.querySelectorAll('g.seats use')]"
                              ".map(u => [u.id.slice(1), u.getAttribute('href').slice(1)]))")
        shape_state = {"a": "AVAILABLE", "h": "HELD", "s": "SOLD", "b": "BLOCKED"}
        assert {seat: shape_state[shape] for seat, shape in drawn.items()} == expected
        ARTIFACTS.mkdir(exist_ok=True)
        data = page.screenshot(ARTIFACTS / "seat-map.png")
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 8_000
    finally:
        gateway.clear_faults()


def test_a_5000_seat_map_is_drawn_whole_and_legible(stack, api, admin, browser):
    arena = {"name": "Arena", "sections": [
        {"name": f"Block {block}", "rows": [{"name": f"{row}", "seats": 100, "category": ("VIP", "R", "S")[block % 3]}
                                            for row in range(1, 11)]} for block in range(1, 6)]}
    seat_map = api.post("/seat-maps", headers=admin["headers"], json=arena).json()
    assert seat_map["seat_count"] == 5000
    show = api.post("/shows", headers=admin["headers"], json={
        "title": "Arena night", "venue": "Gocheok Sky Dome", "seat_map_id": seat_map["id"], "prices": PRICES,
        "starts_at": (datetime.now(timezone.utc) + timedelta(days=30)).isoformat()}).json()
    fan = customer(api)
    sold = api.post("/bookings", headers=fan["headers"], json={
        "show_id": show["id"], "payment_method": "tok_ok", "seats": [f"2-5-{n}" for n in range(45, 55)]}).json()
    wait_for_booking(api, fan["headers"], sold["id"], status="PAID")
    page = browser(width=1500, height=960)
    page.open(f"{api.base}/shows/{show['id']}/seats.svg")
    size = page.evaluate("[document.documentElement.width.baseVal.value, document.documentElement.height.baseVal.value]")
    assert size[0] <= 1500 and size[1] <= 960, size  # the whole map at its natural size, on one screen
    assert page.evaluate("document.querySelectorAll('g.seats use').length") == 5000
    page.screenshot(ARTIFACTS / "seat-map-5000.png", full_page=False)


def test_the_waiting_room_is_waited_in_until_the_admission(stack, api, admin, browser):
    on_sale = datetime.now(timezone.utc) + timedelta(seconds=12)
    show = api.post("/shows", headers=admin["headers"], json={
        "title": "Idol tour: the pages", "venue": "KSPO Dome", "starts_at": (on_sale + timedelta(days=60)).isoformat(),
        "price": 132000, "capacity": 500, "on_sale_at": on_sale.isoformat(),
        "waiting_room": {"admit_per_minute": 20, "session_minutes": 10}}).json()
    for _ in range(4):  # others in the line: the draw orders all who joined before the sale
        assert api.post(f"/shows/{show['id']}/queue", headers=customer(api)["headers"]).status_code == 201
    fan = customer(api)

    english = browser(accept_language="en-US,en")
    english.open(f"{api.base}/shows/{show['id']}/waiting-room")
    assert english.evaluate("document.documentElement.lang") == "en"
    assert english.evaluate("document.querySelector('h1').textContent").startswith("Waiting room")
    assert_accessible(english, "the waiting room's sign-in (English)")

    page = browser(accept_language="ko-KR,ko;q=0.9,en;q=0.5")
    page.open(f"{api.base}/shows/{show['id']}/waiting-room")
    assert page.evaluate("document.documentElement.lang") == "ko"
    page.screenshot(ARTIFACTS / "waiting-room-signin.png")
    assert_accessible(page, "the waiting room's sign-in")
    sign_in_with_the_keyboard(page, fan["email"], fan["password"])

    page.wait_for("document.getElementById('room').dataset.state === 'waiting' && "
                  "document.getElementById('position').textContent !== '–'", 20, "the place in line")
    before_draw = page.evaluate("!document.getElementById('before-draw').hidden")
    assert before_draw, "joined before the sale: no place until the draw"
    page.screenshot(ARTIFACTS / "waiting-room-before-draw.png")
    assert_accessible(page, "the waiting room before the draw")

    seen_place = None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        state = page.evaluate("document.getElementById('room').dataset.state")
        if state == "admitted":
            break
        position = page.evaluate("document.getElementById('before-draw').hidden && "
                                 "document.getElementById('position').textContent")
        if state == "waiting" and position and seen_place is None:
            seen_place = position
            page.screenshot(ARTIFACTS / "waiting-room-in-line.png")
            assert page.evaluate("document.getElementById('wait').textContent") != "–"
        time.sleep(0.3)
    assert page.evaluate("document.getElementById('room').dataset.state") == "admitted", "never admitted"
    page.wait_for("document.getElementById('time-left').textContent !== '–'", 5)
    admission = page.evaluate("document.getElementById('admission-token').value")
    assert admission.count(".") == 2  # a JWT
    link = page.evaluate("document.getElementById('shop').href")
    assert link == SHOP_URL_TEMPLATE.format(show_id=show["id"], token=admission)
    assert page.focused() == "admitted-title"  # the news is where the keyboard is
    page.screenshot(ARTIFACTS / "waiting-room-admitted.png")
    assert_accessible(page, "the waiting room once admitted")
    booked = api.post("/bookings", headers={**fan["headers"], "Admission-Token": admission},
                      json={"show_id": show["id"], "qty": 1, "payment_method": "tok_ok"})
    assert booked.status_code == 202, booked.text


def test_the_dashboard_follows_a_small_rush(stack, api, admin, browser):
    show = reserved_show(api, admin)
    fans = [customer(api) for _ in range(8)]
    seat_ids = [seat["id"] for seat in api.get(f"/shows/{show['id']}/seats").json()["seats"]]

    page = browser(width=1280, height=1000)
    page.open(f"{api.base}/admin/dashboard")
    assert_accessible(page, "the dashboard's sign-in")
    sign_in_with_the_keyboard(page, admin["email"], admin["password"])
    page.wait_for("document.getElementById('dashboard').dataset.state === 'shown' && "
                  f"!!document.querySelector('[data-show=\"{show['id']}\"]')", 20, "the dashboard")
    page.wait_for(f"(document.getElementById('map-{show['id']}') || {{}}).naturalWidth > 0", 20, "the seat map")
    first_map = page.evaluate(f"document.getElementById('map-{show['id']}').dataset.etag")

    def rush():
        for round_ in range(4):
            for index, fan in enumerate(fans):
                start = (round_ * len(fans) + index) * 3
                api.post("/bookings", headers=fan["headers"], json={
                    "show_id": show["id"], "payment_method": "tok_ok", "seats": seat_ids[start:start + 3]})
            time.sleep(1.5)
    rushing = threading.Thread(target=rush)
    rushing.start()
    try:
        page.wait_for(f"document.getElementById('map-{show['id']}').dataset.etag !== {first_map!r}", 30,
                      "the seat map to change as seats sell")
        page.wait_for("Number(document.getElementById('bps').textContent) > 0", 30, "bookings per second")
        page.screenshot(ARTIFACTS / "dashboard.png")
    finally:
        rushing.join()
    assert_accessible(page, "the dashboard during a rush")
    page.wait_for(f"[...document.querySelectorAll('[data-show=\"{show['id']}\"] tbody tr')]"
                  ".map(r => r.cells[1].textContent).join() !== ''", 10)
    left = len(seat_ids) - 96
    wait_until(lambda: api.get(f"/shows/{show['id']}").json()["remaining"] == left, 60, 0.5, "the rush sold")
    page.wait_for(f"document.querySelector('[data-show=\"{show['id']}\"] caption').textContent.includes(' {left} ')", 20,
                  "the dashboard to show what remains")
    # Beat measures the charges and the consistency report every 20 s: wait for one measurement.
    page.wait_for("document.getElementById('charges-pending').textContent !== '–' && "
                  "document.getElementById('consistency').textContent.includes('violations: none')", 60,
                  "the measured gauges, with no violation")
    page.screenshot(ARTIFACTS / "dashboard-after-rush.png")


def test_the_vendored_axe_core_is_the_published_one():
    """tests/e2e/vendor/axe-core/README.md names the version and the sha256 of the npm package's file."""
    import hashlib
    import re

    from tests.e2e.browser import AXE
    readme = (AXE.parent / "README.md").read_text()
    version = re.search(r"# axe-core (\d+\.\d+\.\d+)", readme).group(1)
    digest = re.search(r"sha256 of axe.min.js: ([0-9a-f]{64})", readme).group(1)
    assert AXE.read_text().startswith(f"/*! axe v{version}")
    assert hashlib.sha256(AXE.read_bytes()).hexdigest() == digest
    assert "Mozilla Public License" in (AXE.parent / "LICENSE").read_text()
