"""one name per step: every booking step takes a list of bookings, so the batch twins
(payments.charge_many, tickets.make_issuable_many) merge into their steps, and seats.reserve is
the show's reservation; an outbox row may ask to go out alone (a batch handing a booking over)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 14:30:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

RENAMED = {"payments.charge_many": "payments.charge", "tickets.make_issuable_many": "tickets.make_issuable"}


def upgrade():
    op.add_column('outbox_messages', sa.Column('alone', sa.Boolean(), server_default=sa.false(), nullable=False))
    for old, new in RENAMED.items():
        op.execute(sa.text("UPDATE outbox_messages SET task = :new WHERE task = :old").bindparams(old=old, new=new))
        op.execute(sa.text("UPDATE task_failures SET task = :new WHERE task = :old").bindparams(old=old, new=new))
    # A booking's seats.reserve row asked for its show's reservation; the relay asks for every
    # show with bookings pending, so these rows are no longer needed.
    op.execute("DELETE FROM outbox_messages WHERE task = 'seats.reserve'")


def downgrade():
    op.drop_column('outbox_messages', 'alone')
