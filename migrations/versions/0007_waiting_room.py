"""the waiting room (SPEC §9): a show's room with its rate, draw and schedule, one queue entry per
customer and show, and the admission each booking of such a show was let in by

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 17:30:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('waiting_rooms',
    sa.Column('show_id', sa.String(length=36), nullable=False),
    sa.Column('admit_per_minute', sa.Integer(), nullable=False),
    sa.Column('session_minutes', sa.Integer(), nullable=False),
    sa.Column('drawn_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('draw_seed', sa.String(length=64), nullable=True),
    sa.Column('early_joiners', sa.Integer(), nullable=False),
    sa.Column('schedule_from', sa.DateTime(timezone=True), nullable=True),
    sa.Column('schedule_base', sa.BigInteger(), nullable=False),
    sa.Column('slots_used', sa.BigInteger(), nullable=False),
    sa.Column('admitted', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('admit_per_minute BETWEEN 1 AND 1000000', name=op.f('ck_waiting_rooms_rate_in_range')),
    sa.CheckConstraint('session_minutes BETWEEN 1 AND 1440', name=op.f('ck_waiting_rooms_session_in_range')),
    sa.ForeignKeyConstraint(['show_id'], ['shows.id'], name=op.f('fk_waiting_rooms_show_id_shows')),
    sa.PrimaryKeyConstraint('show_id', name=op.f('pk_waiting_rooms'))
    )
    op.execute("CREATE SEQUENCE queue_arrival_seq")
    op.create_table('queue_entries',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('show_id', sa.String(length=36), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('joined_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('arrival_seq', sa.BigInteger(), server_default=sa.text("nextval('queue_arrival_seq')"), nullable=False),
    sa.Column('early', sa.Boolean(), nullable=False),
    sa.Column('draw_rank', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('admission_seq', sa.BigInteger(), nullable=True),
    sa.Column('admitted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('admitted_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('left_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("state IN ('WAITING', 'ADMITTED', 'LEFT')", name=op.f('ck_queue_entries_state_known')),
    sa.CheckConstraint("state <> 'ADMITTED' OR admission_seq IS NOT NULL", name=op.f('ck_queue_entries_admitted_has_seq')),
    sa.ForeignKeyConstraint(['customer_id'], ['users.id'], name=op.f('fk_queue_entries_customer_id_users')),
    sa.ForeignKeyConstraint(['show_id'], ['waiting_rooms.show_id'], name=op.f('fk_queue_entries_show_id_waiting_rooms')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_queue_entries')),
    sa.UniqueConstraint('show_id', 'admission_seq', name='uq_queue_entries_admitted_once'),
    sa.UniqueConstraint('show_id', 'customer_id', name='uq_queue_entries_one_per_customer')
    )
    op.create_index('ix_queue_entries_waiting', 'queue_entries', ['show_id', 'draw_rank', 'arrival_seq'],
                    unique=False, postgresql_where=sa.text("state = 'WAITING'"))
    op.add_column('bookings', sa.Column('admission_id', sa.String(length=36), nullable=True))
    op.create_foreign_key(op.f('fk_bookings_admission_id_queue_entries'), 'bookings', 'queue_entries',
                          ['admission_id'], ['id'])
    op.create_index('uq_bookings_one_per_admission', 'bookings', ['admission_id'], unique=True, postgresql_where=sa.text(
        "admission_id IS NOT NULL AND status NOT IN ('REJECTED', 'PAYMENT_FAILED', 'EXPIRED')"))


def downgrade():
    op.drop_index('uq_bookings_one_per_admission', table_name='bookings')
    op.drop_constraint(op.f('fk_bookings_admission_id_queue_entries'), 'bookings', type_='foreignkey')
    op.drop_column('bookings', 'admission_id')
    op.drop_index('ix_queue_entries_waiting', table_name='queue_entries')
    op.drop_table('queue_entries')
    op.execute("DROP SEQUENCE queue_arrival_seq")
    op.drop_table('waiting_rooms')
