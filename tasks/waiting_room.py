"""The waiting rooms' admission job (services/waiting_room.py), a beat tick on its own queue and
worker. Two ticks at once, or one killed half-way, admit no one twice: each admission is a move
under the room's row lock, and a killed tick's transaction is rolled back."""
from celery import shared_task

from services import waiting_room


@shared_task(name="waiting_room.admit", ignore_result=True, count_starts=False, autoretry_for=())
def admit() -> int:
    # A tick lost with its worker comes back past its expiry (beat's options: 1 s) and is dropped:
    # the next tick admits whatever came due meanwhile; nor is a failed tick retried. Its starts
    # are not counted (no database write per tick): an expired tick cannot loop, killing workers.
    return waiting_room.admit_due()
