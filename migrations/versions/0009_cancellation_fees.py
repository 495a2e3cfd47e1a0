"""cancellation policy and fees (SPEC §11): a show's cancellation_policy, a booking's
cancellation_fee and refunded_amount, and their copies on the my page

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 18:10:00

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('shows', sa.Column('cancellation_policy', postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    for table in ('bookings', 'mypage_entries'):
        op.add_column(table, sa.Column('cancellation_fee', sa.BigInteger(), server_default='0', nullable=False))
        op.add_column(table, sa.Column('refunded_amount', sa.BigInteger(), server_default='0', nullable=False))
    op.create_check_constraint(op.f('ck_bookings_fee_not_negative'), 'bookings', 'cancellation_fee >= 0')
    op.create_check_constraint(op.f('ck_bookings_refunded_not_negative'), 'bookings', 'refunded_amount >= 0')


def downgrade():
    op.drop_constraint(op.f('ck_bookings_refunded_not_negative'), 'bookings', type_='check')
    op.drop_constraint(op.f('ck_bookings_fee_not_negative'), 'bookings', type_='check')
    for table in ('mypage_entries', 'bookings'):
        op.drop_column(table, 'refunded_amount')
        op.drop_column(table, 'cancellation_fee')
    op.drop_column('shows', 'cancellation_policy')
