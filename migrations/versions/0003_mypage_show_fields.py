"""my page: the show's venue, and an index by show so a show's change reaches its entries in one
set-based UPDATE (models/mypage.py refresh_show)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 11:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    # Added nullable, backfilled from the shows, then made NOT NULL: one release, no default left behind.
    op.add_column('mypage_entries', sa.Column('venue', sa.String(length=200), nullable=True))
    op.execute("UPDATE mypage_entries AS m SET venue = s.venue FROM shows AS s WHERE s.id = m.show_id")
    op.execute("UPDATE mypage_entries SET venue = '' WHERE venue IS NULL")
    op.alter_column('mypage_entries', 'venue', nullable=False)
    op.create_index(op.f('ix_mypage_entries_show_id'), 'mypage_entries', ['show_id'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_mypage_entries_show_id'), table_name='mypage_entries')
    op.drop_column('mypage_entries', 'venue')
