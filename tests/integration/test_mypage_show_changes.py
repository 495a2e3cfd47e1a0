"""A show's title, venue and start time on the my page follow PATCH /shows/{id} (issue 10, part 1):
the rows change in the PATCH's own transaction, with one statement whatever the number of
bookings; a row made stale behind the app's back is reported by the consistency check and
repaired by the convergence job, run by a real worker."""
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from tests.integration.observed_stack import statements
from tests.processes import wait_until

pytestmark = pytest.mark.usefixtures("worker")


def my_page_row(app, customer, booking_id):
    rows = app.test_client().get("/me/bookings?page_size=100", headers=customer["headers"]).json
    return next((row for row in rows if row["booking_id"] == booking_id), None)


def settled_row(app, customer, booking_id):
    return wait_until(lambda: (row := my_page_row(app, customer, booking_id)) and row["ticket_status"] == "ISSUABLE"
                      and row, 60, 0.1, "the my page to show the settled booking")


def test_patching_a_show_changes_its_title_venue_and_start_on_the_my_page(
        app, admin_headers, new_customer, make_show, book, wait_for):
    show = make_show(capacity=10)
    customers = [new_customer() for _ in range(3)]
    bookings = [book(c, show["id"], qty=1).json["id"] for c in customers]
    for customer, booking_id in zip(customers, bookings):
        wait_for(booking_id, status="PAID", ticket_status="ISSUABLE")
        row = settled_row(app, customer, booking_id)
        assert (row["show_title"], row["venue"]) == (show["title"], "Hall")

    starts_at = (datetime.now(timezone.utc) + timedelta(days=60)).replace(microsecond=0)
    change = {"title": "Hamlet (new cast)", "venue": "Main Stage", "starts_at": starts_at.isoformat()}
    with statements(app) as seen:
        response = app.test_client().patch(f"/shows/{show['id']}", headers=admin_headers, json=change)
    assert response.status_code == 200, response.json
    # One set-based statement for the show's entries, however many bookings it has.
    assert len([s for s in seen if "mypage_entries" in s]) == 1

    for customer, booking_id in zip(customers, bookings):
        row = my_page_row(app, customer, booking_id)  # at once: same transaction as the PATCH
        assert row["show_title"] == "Hamlet (new cast)" and row["venue"] == "Main Stage"
        assert datetime.fromisoformat(row["starts_at"]) == starts_at
        assert (row["status"], row["payment_status"], row["ticket_status"]) == ("PAID", "PAID", "ISSUABLE")

    from models import db
    from models.consistency import mypage_mismatches
    with app.app_context():
        assert not set(bookings) & set(mypage_mismatches())
        db.session.remove()

    # A change of price or capacity alone leaves the my page's rows alone.
    with statements(app) as seen:
        assert app.test_client().patch(f"/shows/{show['id']}", headers=admin_headers,
                                       json={"capacity": 12}).status_code == 200
    assert not [s for s in seen if "mypage_entries" in s]


def test_a_stale_show_copy_is_reported_and_repaired_by_the_convergence_job(
        app, customer, make_show, book, wait_for):
    show = make_show(capacity=5)
    booking_id = book(customer, show["id"], qty=2).json["id"]
    wait_for(booking_id, status="PAID", ticket_status="ISSUABLE")
    settled_row(app, customer, booking_id)

    from models import db
    from models.consistency import mypage_mismatches
    from models.mypage import stale_booking_ids
    with app.app_context():  # behind the app's back: the row keeps an old copy of the show
        db.session.execute(text("UPDATE mypage_entries SET show_title = 'Old title', venue = 'Old hall', "
                                "starts_at = starts_at - interval '1 day' WHERE booking_id = :id"),
                           {"id": booking_id})
        db.session.commit()
        assert booking_id in mypage_mismatches()
        assert booking_id in stale_booking_ids(limit=100_000)
        db.session.remove()
    assert my_page_row(app, customer, booking_id)["show_title"] == "Old title"

    app.extensions["celery"].send_task("maintenance.converge_mypage", queue="maintenance")

    def repaired():
        row = my_page_row(app, customer, booking_id)
        return row if row["show_title"] == show["title"] else None
    row = wait_until(repaired, 60, 0.2, "the convergence job to repair the row")
    assert row["venue"] == "Hall"
    assert datetime.fromisoformat(row["starts_at"]) == datetime.fromisoformat(show["starts_at"])
    with app.app_context():
        assert booking_id not in mypage_mismatches()
        db.session.remove()
