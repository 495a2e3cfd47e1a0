"""partial cancels and cancelled shows (SPEC §11): a booking may have several tickets over time,
one current (the others superseded, VOID); a show may be cancelled; a booking records that it was
cancelled with its show

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 20:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    # Tickets get their own key: booking_id stays, unique among the current ones.
    op.add_column('tickets', sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False))
    op.add_column('tickets', sa.Column('superseded_at', sa.DateTime(timezone=True), nullable=True))
    op.drop_constraint(op.f('pk_tickets'), 'tickets', type_='primary')
    op.create_primary_key(op.f('pk_tickets'), 'tickets', ['id'])
    op.create_index('uq_tickets_current', 'tickets', ['booking_id'], unique=True,
                    postgresql_where=sa.text('superseded_at IS NULL'))
    op.create_check_constraint(op.f('ck_tickets_superseded_is_void'), 'tickets',
                               "superseded_at IS NULL OR status = 'VOID'")
    op.add_column('shows', sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('bookings', sa.Column('cancelled_with_show', sa.Boolean(), server_default='false', nullable=False))
    op.create_index('ix_bookings_cancelled_with_show', 'bookings', ['show_id', 'status'], unique=False,
                    postgresql_where=sa.text('cancelled_with_show'))


def downgrade():
    op.drop_index('ix_bookings_cancelled_with_show', table_name='bookings', postgresql_where=sa.text('cancelled_with_show'))
    op.drop_column('bookings', 'cancelled_with_show')
    op.drop_column('shows', 'cancelled_at')
    # Only the current tickets can stay under the old key (one per booking).
    op.execute("DELETE FROM tickets WHERE superseded_at IS NOT NULL")
    op.drop_constraint(op.f('ck_tickets_superseded_is_void'), 'tickets', type_='check')
    op.drop_index('uq_tickets_current', table_name='tickets', postgresql_where=sa.text('superseded_at IS NULL'))
    op.drop_constraint(op.f('pk_tickets'), 'tickets', type_='primary')
    op.create_primary_key(op.f('pk_tickets'), 'tickets', ['booking_id'])
    op.drop_column('tickets', 'superseded_at')
    op.drop_column('tickets', 'id')
