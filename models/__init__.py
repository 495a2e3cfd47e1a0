"""Data and domain rules, one module per bounded context. Importing this package registers every table."""
from models.database import db  # noqa: F401
from models import (users, shows, seats, waiting_room, bookings, payments, tickets, checkin_keys,  # noqa: F401
                    mypage, outbox, task_failures, events, webhooks, mail)
