"""The my page's projection (mypage.project) and its repair (maintenance.converge_mypage).

A unit of work projects the bookings it changed as it commits; these are for the rest: a booking
whose entry is missing, behind, or holds an old copy of its show."""
from __future__ import annotations

from models.mypage import project_ids, stale_booking_ids
from services.batches import as_booking_ids
from services.unit_of_work import UnitOfWork


def project(booking_ids: list[str] | str) -> int:
    """Bring these bookings' entries up to date. Returns how many bookings were found."""
    with UnitOfWork() as uow:
        written = project_ids(as_booking_ids(booking_ids))
        uow.commit()
    return written


def converge() -> int:
    """Project every booking whose entry is missing or behind (a batch of them)."""
    with UnitOfWork() as uow:
        ids = stale_booking_ids()
        written = project_ids(ids) if ids else 0
        uow.commit()
    return written
