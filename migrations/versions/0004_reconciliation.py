"""reconciliation: the job that refunds captures no step gave back keeps its cursor into the
gateway's charges, the captures it waits to judge, and a record of every refund it made

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 12:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('reconciliation_cursors',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('position', sa.String(length=64), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_reconciliation_cursors'))
    )
    op.create_table('reconciliation_watch',
    sa.Column('charge_id', sa.String(length=64), nullable=False),
    sa.Column('booking_id', sa.String(length=36), nullable=False),
    sa.Column('seen_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['booking_id'], ['bookings.id'], name=op.f('fk_reconciliation_watch_booking_id_bookings')),
    sa.PrimaryKeyConstraint('charge_id', name=op.f('pk_reconciliation_watch'))
    )
    op.create_index(op.f('ix_reconciliation_watch_booking_id'), 'reconciliation_watch', ['booking_id'], unique=False)
    op.create_table('reconciled_refunds',
    sa.Column('charge_id', sa.String(length=64), nullable=False),
    sa.Column('booking_id', sa.String(length=36), nullable=False),
    sa.Column('booking_status', sa.String(length=16), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('refund_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['booking_id'], ['bookings.id'], name=op.f('fk_reconciled_refunds_booking_id_bookings')),
    sa.PrimaryKeyConstraint('charge_id', name=op.f('pk_reconciled_refunds'))
    )
    op.create_index(op.f('ix_reconciled_refunds_booking_id'), 'reconciled_refunds', ['booking_id'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_reconciled_refunds_booking_id'), table_name='reconciled_refunds')
    op.drop_table('reconciled_refunds')
    op.drop_index(op.f('ix_reconciliation_watch_booking_id'), table_name='reconciliation_watch')
    op.drop_table('reconciliation_watch')
    op.drop_table('reconciliation_cursors')
