"""task starts: every start of a step is counted, so a step whose worker dies on every delivery
is given up (RELIABILITY row 3)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 17:45:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('task_starts',
    sa.Column('task_id', sa.String(length=64), nullable=False),
    sa.Column('task', sa.String(length=64), nullable=False),
    sa.Column('booking_id', sa.String(length=36), nullable=True),
    sa.Column('retries', sa.Integer(), nullable=False),
    sa.Column('starts', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('task_id', name=op.f('pk_task_starts'))
    )
    op.create_index(op.f('ix_task_starts_updated_at'), 'task_starts', ['updated_at'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_task_starts_updated_at'), table_name='task_starts')
    op.drop_table('task_starts')
