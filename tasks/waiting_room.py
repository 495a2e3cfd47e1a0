"""The waiting rooms' admission job (services/waiting_room.py), a beat tick on its own queue and
worker. Two ticks at once, or one killed half-way, admit no one twice: each admission is a move
under the room's row lock, and a killed tick's transaction is rolled back."""
from celery import shared_task

from services import waiting_room


@shared_task(name="waiting_room.admit", acks_late=False, ignore_result=True, count_starts=False)
def admit() -> int:
    # acks_late off, starts not counted: a tick lost with its worker is not worth redelivering
    # (nor can it loop, killing workers); the next one admits whatever came due meanwhile.
    return waiting_room.admit_due()
