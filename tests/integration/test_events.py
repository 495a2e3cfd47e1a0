"""Events (SPEC §12) are written in the transaction of the move they tell of: one per move that
partners hear of, with the booking as that transaction left it, and a mail row beside each one a
customer is told of. The booking steps run in the package's real worker."""
from sqlalchemy import select

from models.events import EventType


def events_and_mails(app, booking_id):
    from models import db
    from models.events import Event
    from models.mail import Mail
    with app.app_context():
        events = db.session.scalars(select(Event).where(Event.booking_id == booking_id)
                                    .order_by(Event.created_at)).all()
        mails = {mail.event_id: mail.kind
                 for mail in db.session.scalars(select(Mail).where(Mail.booking_id == booking_id))}
        found = [(event.type, event.data["status"], mails.get(event.id)) for event in events]
        db.session.remove()
    return found


def test_each_announced_move_records_one_event_with_the_booking_as_committed_and_its_mail(
        app, worker, customer, make_show, book, wait_for):
    from services.checkins import check_in
    show = make_show(capacity=3)
    admitted = book(customer, show["id"], qty=1).json["id"]
    cancelled = book(customer, show["id"], qty=2).json["id"]
    for booking_id in (admitted, cancelled):
        wait_for(booking_id, status="PAID", ticket_status="ISSUABLE")
    rejected = book(customer, show["id"], qty=1).json["id"]
    wait_for(rejected, status="REJECTED")

    qr = app.test_client().post(f"/bookings/{admitted}/ticket", headers=customer["headers"]).json["ticket"]["qr"]
    with app.app_context():
        assert check_in(qr, "north")["result"] == "ADMITTED"
    assert app.test_client().post(f"/bookings/{cancelled}/cancel", headers=customer["headers"]).status_code == 202
    wait_for(cancelled, status="CANCELLED", payment_status="REFUNDED")

    assert events_and_mails(app, admitted) == [
        (EventType.BOOKING_CONFIRMED, "CONFIRMED", None), (EventType.BOOKING_PAID, "PAID", "paid"),
        (EventType.TICKET_ISSUED, "PAID", None), (EventType.CHECKIN_ADMITTED, "PAID", None)]
    assert events_and_mails(app, cancelled) == [
        (EventType.BOOKING_CONFIRMED, "CONFIRMED", None), (EventType.BOOKING_PAID, "PAID", "paid"),
        (EventType.BOOKING_CANCELLED, "CANCELLED", "cancelled")]
    assert events_and_mails(app, rejected) == [(EventType.BOOKING_REJECTED, "REJECTED", "rejected")]


def test_a_rolled_back_change_records_no_event_and_a_committed_one_does(app, make_show):
    from models import db
    from models.events import Event, record_event
    from services.unit_of_work import UnitOfWork
    show = make_show()
    with app.app_context():
        with UnitOfWork() as uow:
            record_event("show.cancelled", {"reason": "rolled back"}, show_id=show["id"])
            uow.rollback()
        with UnitOfWork() as uow:
            uow.lock_shows([show["id"]])
            record_event("show.cancelled", {"reason": "storm"}, show_id=show["id"])
            uow.commit()
        rows = db.session.scalars(select(Event).where(Event.show_id == show["id"])).all()
        assert [(row.type, row.data) for row in rows] == [
            ("show.cancelled", {"reason": "storm", "show_id": show["id"]})]
        db.session.remove()
