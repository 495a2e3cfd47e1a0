"""task redeliveries: a database attempt counter for steps whose worker died

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 10:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('task_redeliveries',
    sa.Column('task_id', sa.String(length=64), nullable=False),
    sa.Column('task', sa.String(length=64), nullable=False),
    sa.Column('booking_id', sa.String(length=36), nullable=True),
    sa.Column('retries', sa.Integer(), nullable=False),
    sa.Column('redeliveries', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('task_id', name=op.f('pk_task_redeliveries'))
    )


def downgrade():
    op.drop_table('task_redeliveries')
