"""The SQLAlchemy handle shared by every context, and the few column helpers they all use."""
import uuid
from datetime import datetime, timezone

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

# Named constraints, so Alembic migrations can refer to them and errors name the rule broken.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# expire_on_commit=False: a response shows the state its own transaction committed (202 PENDING),
# not whatever a worker made of it a millisecond later. Sessions live for one request or one
# task, and every decision is taken on rows re-read under a lock (populate_existing), so no
# decision is made on a stale copy.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})


def new_id() -> str:
    """Opaque identifiers: random, so they reveal neither volume nor order."""
    return str(uuid.uuid4())


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
