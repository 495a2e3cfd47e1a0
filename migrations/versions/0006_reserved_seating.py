"""reserved seating (SPEC §8): seat maps, shows that are general or reserved with price
categories, purchase limits and an on-sale time, the seats each live booking holds (one row per
seat: the database refuses a second holder), the seat-state read model, and a reject reason on
every rejected booking

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 15:00:00

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

# The seat-state read model's bytes change in one statement per show and commit: set each byte
# named, bump the version (models/seats.py). Written in SQL so concurrent writers never lose an
# update: the row lock orders them.
SET_SEAT_STATES = """
CREATE FUNCTION boxoffice_set_seat_states(p_show varchar, p_index integer[], p_state integer[])
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    seat_states bytea;
    new_version bigint;
BEGIN
    SELECT states INTO seat_states FROM show_seat_states WHERE show_id = p_show FOR UPDATE;
    FOR i IN 1 .. coalesce(array_length(p_index, 1), 0) LOOP
        seat_states := set_byte(seat_states, p_index[i], p_state[i]);
    END LOOP;
    UPDATE show_seat_states SET states = seat_states, version = version + 1 WHERE show_id = p_show
    RETURNING version INTO new_version;
    RETURN new_version;
END $$;
"""


def upgrade():
    op.create_table('seat_maps',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('seat_count', sa.Integer(), nullable=False),
    sa.Column('categories', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('body', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_seat_maps'))
    )
    op.add_column('shows', sa.Column('seating', sa.String(length=16), server_default='general', nullable=False))
    op.add_column('shows', sa.Column('seat_map_id', sa.String(length=36), nullable=True))
    op.add_column('shows', sa.Column('max_per_customer', sa.Integer(), nullable=True))
    op.add_column('shows', sa.Column('on_sale_at', sa.DateTime(timezone=True), nullable=True))
    op.alter_column('shows', 'price', existing_type=sa.BigInteger(), nullable=True)
    op.create_foreign_key(op.f('fk_shows_seat_map_id_seat_maps'), 'shows', 'seat_maps', ['seat_map_id'], ['id'])
    op.create_check_constraint(op.f('ck_shows_seating_known'), 'shows', "seating IN ('general', 'reserved')")
    op.create_check_constraint(
        op.f('ck_shows_seating_fields'), 'shows',
        "(seating = 'general' AND price IS NOT NULL AND seat_map_id IS NULL) OR "
        "(seating = 'reserved' AND seat_map_id IS NOT NULL)")
    op.create_check_constraint(op.f('ck_shows_limit_positive'), 'shows',
                               "max_per_customer IS NULL OR max_per_customer >= 1")
    op.create_table('show_categories',
    sa.Column('show_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('price', sa.BigInteger(), nullable=False),
    sa.Column('capacity', sa.Integer(), nullable=False),
    sa.Column('remaining', sa.Integer(), nullable=False),
    sa.CheckConstraint('price >= 0', name=op.f('ck_show_categories_price_not_negative')),
    sa.CheckConstraint('remaining >= 0', name=op.f('ck_show_categories_remaining_not_negative')),
    sa.CheckConstraint('remaining <= capacity', name=op.f('ck_show_categories_remaining_within_capacity')),
    sa.ForeignKeyConstraint(['show_id'], ['shows.id'], name=op.f('fk_show_categories_show_id_shows')),
    sa.PrimaryKeyConstraint('show_id', 'name', name=op.f('pk_show_categories'))
    )
    op.create_table('seat_holds',
    sa.Column('show_id', sa.String(length=36), nullable=False),
    sa.Column('seat_id', sa.String(length=32), nullable=False),
    sa.Column('booking_id', sa.String(length=36), nullable=True),
    sa.ForeignKeyConstraint(['booking_id'], ['bookings.id'], name=op.f('fk_seat_holds_booking_id_bookings')),
    sa.ForeignKeyConstraint(['show_id'], ['shows.id'], name=op.f('fk_seat_holds_show_id_shows')),
    sa.PrimaryKeyConstraint('show_id', 'seat_id', name=op.f('pk_seat_holds'))
    )
    op.create_index(op.f('ix_seat_holds_booking_id'), 'seat_holds', ['booking_id'], unique=False)
    op.create_table('show_seat_states',
    sa.Column('show_id', sa.String(length=36), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.Column('states', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['show_id'], ['shows.id'], name=op.f('fk_show_seat_states_show_id_shows')),
    sa.PrimaryKeyConstraint('show_id', name=op.f('pk_show_seat_states'))
    )
    op.add_column('bookings', sa.Column('category', sa.String(length=32), nullable=True))
    op.add_column('bookings', sa.Column('seats', postgresql.ARRAY(sa.String(length=32)), nullable=True))
    op.add_column('bookings', sa.Column('reject_reason', sa.String(length=32), nullable=True))
    op.create_index('ix_bookings_show_customer_held', 'bookings', ['show_id', 'customer_id'], unique=False,
                    postgresql_where=sa.text('seats_held'))
    op.execute(SET_SEAT_STATES)


def downgrade():
    op.execute("DROP FUNCTION boxoffice_set_seat_states(varchar, integer[], integer[])")
    op.drop_index('ix_bookings_show_customer_held', table_name='bookings', postgresql_where=sa.text('seats_held'))
    op.drop_column('bookings', 'reject_reason')
    op.drop_column('bookings', 'seats')
    op.drop_column('bookings', 'category')
    op.drop_table('show_seat_states')
    op.drop_index(op.f('ix_seat_holds_booking_id'), table_name='seat_holds')
    op.drop_table('seat_holds')
    op.drop_table('show_categories')
    op.drop_constraint(op.f('ck_shows_limit_positive'), 'shows', type_='check')
    op.drop_constraint(op.f('ck_shows_seating_fields'), 'shows', type_='check')
    op.drop_constraint(op.f('ck_shows_seating_known'), 'shows', type_='check')
    op.drop_constraint(op.f('fk_shows_seat_map_id_seat_maps'), 'shows', type_='foreignkey')
    op.alter_column('shows', 'price', existing_type=sa.BigInteger(), nullable=False)
    op.drop_column('shows', 'on_sale_at')
    op.drop_column('shows', 'max_per_customer')
    op.drop_column('shows', 'seat_map_id')
    op.drop_column('shows', 'seating')
    op.drop_table('seat_maps')
