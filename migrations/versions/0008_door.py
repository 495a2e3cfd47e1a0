"""tickets at the door (SPEC §10): the check-in keys that sign each show's tickets, a ticket's
door id, QR and check-in, the CHECKED_IN ticket status, and the staff role

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 17:30:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

TICKET_STATUSES = "status IN ('NOT_ISSUABLE', 'ISSUABLE', 'ISSUED', 'CHECKED_IN', 'VOID')"
OLD_TICKET_STATUSES = "status IN ('NOT_ISSUABLE', 'ISSUABLE', 'ISSUED', 'VOID')"


def upgrade():
    op.create_table('checkin_keys',
    sa.Column('kid', sa.String(length=32), nullable=False),
    sa.Column('show_id', sa.String(length=36), nullable=False),
    sa.Column('private_key', sa.LargeBinary(length=32), nullable=False),
    sa.Column('public_x', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('retired', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['show_id'], ['shows.id'], name=op.f('fk_checkin_keys_show_id_shows')),
    sa.PrimaryKeyConstraint('kid', name=op.f('pk_checkin_keys'))
    )
    op.create_index('ix_checkin_keys_show_id', 'checkin_keys', ['show_id'], unique=False)
    op.create_index('uq_checkin_keys_show_signing', 'checkin_keys', ['show_id'], unique=True,
                    postgresql_where=sa.text('NOT retired'))
    op.add_column('tickets', sa.Column('tid', sa.String(length=36), nullable=True))
    op.add_column('tickets', sa.Column('qr', sa.Text(), nullable=True))
    op.add_column('tickets', sa.Column('checked_in_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('tickets', sa.Column('checkin_gate', sa.String(length=64), nullable=True))
    op.create_unique_constraint(op.f('uq_tickets_tid'), 'tickets', ['tid'])
    op.drop_constraint(op.f('ck_tickets_status_known'), 'tickets', type_='check')
    op.create_check_constraint(op.f('ck_tickets_status_known'), 'tickets', TICKET_STATUSES)
    op.create_check_constraint(op.f('ck_tickets_checked_in_has_time'), 'tickets',
                               "status <> 'CHECKED_IN' OR (checked_in_at IS NOT NULL AND qr IS NOT NULL)")
    op.drop_constraint(op.f('ck_users_role_known'), 'users', type_='check')
    op.create_check_constraint(op.f('ck_users_role_known'), 'users', "role IN ('customer', 'admin', 'staff')")


def downgrade():
    # Staff accounts and checked-in tickets have no place in the older schema.
    op.execute("DELETE FROM users WHERE role = 'staff'")
    op.execute("UPDATE tickets SET status = 'ISSUED' WHERE status = 'CHECKED_IN'")
    op.drop_constraint(op.f('ck_users_role_known'), 'users', type_='check')
    op.create_check_constraint(op.f('ck_users_role_known'), 'users', "role IN ('customer', 'admin')")
    op.drop_constraint(op.f('ck_tickets_checked_in_has_time'), 'tickets', type_='check')
    op.drop_constraint(op.f('ck_tickets_status_known'), 'tickets', type_='check')
    op.create_check_constraint(op.f('ck_tickets_status_known'), 'tickets', OLD_TICKET_STATUSES)
    op.drop_constraint(op.f('uq_tickets_tid'), 'tickets', type_='unique')
    op.drop_column('tickets', 'checkin_gate')
    op.drop_column('tickets', 'checked_in_at')
    op.drop_column('tickets', 'qr')
    op.drop_column('tickets', 'tid')
    op.drop_index('uq_checkin_keys_show_signing', table_name='checkin_keys', postgresql_where=sa.text('NOT retired'))
    op.drop_index('ix_checkin_keys_show_id', table_name='checkin_keys')
    op.drop_table('checkin_keys')
