"""Shows: an admin creates and changes them (POST and PATCH /shows)."""
from __future__ import annotations

from models import db
from models.mypage import refresh_show
from models.shows import Show
from services.unit_of_work import UnitOfWork


def create_show(fields: dict) -> Show:
    with UnitOfWork() as uow:
        show = Show(**fields)
        db.session.add(show)
        uow.commit()
    return show


def change_show(show_id: str, changes: dict) -> Show:
    """Change a show; capacity cannot drop below the seats held. The my page's copy of the title,
    venue and start time changes in the same transaction."""
    changes = dict(changes)
    with UnitOfWork() as uow:
        show = uow.lock_shows([show_id])[show_id]
        capacity = changes.pop("capacity", None)
        if capacity is not None:
            show.change_capacity(capacity)
        for field, value in changes.items():
            setattr(show, field, value)
        if changes.keys() & {"title", "venue", "starts_at"}:
            refresh_show(show.id)
        uow.commit()
    return show
