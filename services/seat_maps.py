"""Seat maps (POST /seat-maps): a hall's sections, rows and seats, each seat in a category."""
from __future__ import annotations

from models.seats import SeatMapRecord, create_seat_map
from services.unit_of_work import UnitOfWork


def add_seat_map(body: dict) -> SeatMapRecord:
    """Validate and store a seat map (InvalidInput, naming the field, if it is not one)."""
    with UnitOfWork() as uow:
        record, _ = create_seat_map(body)
        uow.commit()
    return record
