"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-25 21:31:32.839614
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0001'
down_revision: str | None = None
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    op.create_table('jurisdiction',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('short_name', sa.String(length=50), nullable=False),
    sa.Column('level', sa.Enum('prefecture', 'county', 'township', name='level', native_enum=False, length=20), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('office_unit_id', sa.Integer(), nullable=True),
    # SQLite accepts a reference to a table created later; PostgreSQL gets it below.
    *([sa.ForeignKeyConstraint(['office_unit_id'], ['unit.id'], name='fk_jurisdiction_office_unit_id_unit')] if _sqlite() else []),
    sa.ForeignKeyConstraint(['parent_id'], ['jurisdiction.id'], name=op.f('fk_jurisdiction_parent_id_jurisdiction')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jurisdiction')),
    sa.UniqueConstraint('code', name=op.f('uq_jurisdiction_code'))
    )
    op.create_table('person',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('title', sa.String(length=100), nullable=False),
    sa.Column('email', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_person'))
    )
    op.create_table('process_version',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('process_id', sa.String(length=100), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('sources', sa.JSON(), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('deployed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deployed_by', sa.String(length=100), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_process_version')),
    sa.UniqueConstraint('content_hash', name=op.f('uq_process_version_content_hash')),
    sa.UniqueConstraint('process_id', 'version', name=op.f('uq_process_version_process_id'))
    )
    op.create_table('plan',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('list_title', sa.String(length=100), nullable=False),
    sa.Column('document_number', sa.String(length=100), nullable=False),
    sa.Column('issued_on', sa.Date(), nullable=True),
    sa.Column('jurisdiction_id', sa.Integer(), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('imported_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['jurisdiction_id'], ['jurisdiction.id'], name=op.f('fk_plan_jurisdiction_id_jurisdiction')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_plan')),
    sa.UniqueConstraint('key', name=op.f('uq_plan_key'))
    )
    op.create_table('unit',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('jurisdiction_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.Enum('department', 'party', 'government', 'local_government', 'people_org', 'other', name='unitkind', native_enum=False, length=20), nullable=False),
    sa.Column('member', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['jurisdiction_id'], ['jurisdiction.id'], name=op.f('fk_unit_jurisdiction_id_jurisdiction')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_unit')),
    sa.UniqueConstraint('jurisdiction_id', 'name', name=op.f('uq_unit_jurisdiction_id'))
    )
    if not _sqlite():
        op.create_foreign_key(
            'fk_jurisdiction_office_unit_id_unit', 'jurisdiction', 'unit', ['office_unit_id'], ['id']
        )
    op.create_table('plan_task',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('plan_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['plan_id'], ['plan.id'], name=op.f('fk_plan_task_plan_id_plan')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_plan_task')),
    sa.UniqueConstraint('plan_id', 'number', name=op.f('uq_plan_task_plan_id'))
    )
    op.create_table('position',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('liaison', 'head', 'member', 'convener', 'deputy_convener', 'office_director', 'office_staff', 'reviewer', name='positionkind', native_enum=False, length=20), nullable=False),
    sa.Column('title', sa.String(length=100), nullable=False),
    sa.ForeignKeyConstraint(['unit_id'], ['unit.id'], name=op.f('fk_position_unit_id_unit')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_position')),
    sa.UniqueConstraint('unit_id', 'kind', name=op.f('uq_position_unit_id'))
    )
    op.create_table('unit_alias',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=False),
    sa.Column('jurisdiction_id', sa.Integer(), nullable=False),
    sa.Column('alias', sa.String(length=100), nullable=False),
    sa.ForeignKeyConstraint(['jurisdiction_id'], ['jurisdiction.id'], name=op.f('fk_unit_alias_jurisdiction_id_jurisdiction')),
    sa.ForeignKeyConstraint(['unit_id'], ['unit.id'], name=op.f('fk_unit_alias_unit_id_unit')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_unit_alias')),
    sa.UniqueConstraint('jurisdiction_id', 'alias', name=op.f('uq_unit_alias_jurisdiction_id'))
    )
    op.create_table('holding',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('position_id', sa.Integer(), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], name=op.f('fk_holding_person_id_person')),
    sa.ForeignKeyConstraint(['position_id'], ['position.id'], name=op.f('fk_holding_position_id_position')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_holding'))
    )
    with op.batch_alter_table('holding', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_holding_person_id'), ['person_id'], unique=False)
        batch_op.create_index('ix_holding_position_open', ['position_id', 'ended_at'], unique=False)

    op.create_table('instance',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('process_version_id', sa.Integer(), nullable=False),
    sa.Column('process_id', sa.String(length=100), nullable=False),
    sa.Column('business_key', sa.String(length=200), nullable=False),
    sa.Column('plan_task_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.Enum('running', 'completed', 'cancelled', name='instancestatus', native_enum=False, length=20), nullable=False),
    sa.Column('state', sa.LargeBinary(), nullable=False),
    sa.Column('serializer_version', sa.String(length=10), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('root_id', sa.Integer(), nullable=True),
    sa.Column('parent_task_id', sa.String(length=36), nullable=True),
    sa.Column('parent_element_id', sa.String(length=100), nullable=True),
    sa.Column('has_children', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['parent_id'], ['instance.id'], name=op.f('fk_instance_parent_id_instance')),
    sa.ForeignKeyConstraint(['root_id'], ['instance.id'], name=op.f('fk_instance_root_id_instance')),
    sa.UniqueConstraint('parent_task_id', name=op.f('uq_instance_parent_task_id')),
    sa.ForeignKeyConstraint(['plan_task_id'], ['plan_task.id'], name=op.f('fk_instance_plan_task_id_plan_task')),
    sa.ForeignKeyConstraint(['process_version_id'], ['process_version.id'], name=op.f('fk_instance_process_version_id_process_version')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_instance')),
    )
    with op.batch_alter_table('instance', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_instance_plan_task_id'), ['plan_task_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_instance_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_instance_root_id'), ['root_id'], unique=False)
        batch_op.create_index('ix_instance_siblings', ['parent_id', 'parent_element_id', 'status'], unique=False)
        batch_op.create_index('uq_instance_top_level_key', ['process_id', 'business_key'], unique=True,
                              sqlite_where=sa.text('parent_id IS NULL'),
                              postgresql_where=sa.text('parent_id IS NULL'))

    op.create_table('plan_task_unit',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('plan_task_id', sa.Integer(), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.Enum('lead', 'support', 'implement', name='role', native_enum=False, length=20), nullable=False),
    sa.Column('ordinal', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['plan_task_id'], ['plan_task.id'], name=op.f('fk_plan_task_unit_plan_task_id_plan_task')),
    sa.ForeignKeyConstraint(['unit_id'], ['unit.id'], name=op.f('fk_plan_task_unit_unit_id_unit')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_plan_task_unit')),
    sa.UniqueConstraint('plan_task_id', 'role', 'unit_id', name=op.f('uq_plan_task_unit_plan_task_id'))
    )
    with op.batch_alter_table('plan_task_unit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_plan_task_unit_unit_id'), ['unit_id'], unique=False)

    op.create_table('human_task',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('instance_id', sa.Integer(), nullable=False),
    sa.Column('spiff_task_id', sa.String(length=36), nullable=False),
    sa.Column('element_id', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('form', sa.String(length=50), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=False),
    sa.Column('position_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.Enum('ready', 'completed', 'cancelled', name='taskstate', native_enum=False, length=20), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('claimed_by_id', sa.Integer(), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed_by_id', sa.Integer(), nullable=True),
    sa.Column('form_data', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['claimed_by_id'], ['person.id'], name=op.f('fk_human_task_claimed_by_id_person')),
    sa.ForeignKeyConstraint(['completed_by_id'], ['person.id'], name=op.f('fk_human_task_completed_by_id_person')),
    sa.ForeignKeyConstraint(['instance_id'], ['instance.id'], name=op.f('fk_human_task_instance_id_instance')),
    sa.ForeignKeyConstraint(['position_id'], ['position.id'], name=op.f('fk_human_task_position_id_position')),
    sa.ForeignKeyConstraint(['unit_id'], ['unit.id'], name=op.f('fk_human_task_unit_id_unit')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_human_task')),
    sa.UniqueConstraint('spiff_task_id', name=op.f('uq_human_task_spiff_task_id'))
    )
    with op.batch_alter_table('human_task', schema=None) as batch_op:
        batch_op.create_index('ix_human_task_due', ['state', 'due_at'], unique=False)
        batch_op.create_index('ix_human_task_inbox', ['unit_id', 'state', 'due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_human_task_instance_id'), ['instance_id'], unique=False)

    op.create_table('history',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('instance_id', sa.Integer(), nullable=False),
    sa.Column('human_task_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=50), nullable=False),
    sa.Column('actor_person_id', sa.Integer(), nullable=True),
    sa.Column('actor_position_id', sa.Integer(), nullable=True),
    sa.Column('actor_label', sa.String(length=200), nullable=False),
    sa.Column('data', sa.JSON(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['actor_person_id'], ['person.id'], name=op.f('fk_history_actor_person_id_person')),
    sa.ForeignKeyConstraint(['actor_position_id'], ['position.id'], name=op.f('fk_history_actor_position_id_position')),
    sa.ForeignKeyConstraint(['human_task_id'], ['human_task.id'], name=op.f('fk_history_human_task_id_human_task')),
    sa.ForeignKeyConstraint(['instance_id'], ['instance.id'], name=op.f('fk_history_instance_id_instance')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_history'))
    )
    with op.batch_alter_table('history', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_history_instance_id'), ['instance_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('history', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_history_instance_id'))

    op.drop_table('history')
    with op.batch_alter_table('human_task', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_human_task_instance_id'))
        batch_op.drop_index('ix_human_task_inbox')
        batch_op.drop_index('ix_human_task_due')

    op.drop_table('human_task')
    with op.batch_alter_table('plan_task_unit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_plan_task_unit_unit_id'))

    op.drop_table('plan_task_unit')
    with op.batch_alter_table('instance', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_instance_status'))
        batch_op.drop_index(batch_op.f('ix_instance_plan_task_id'))

    op.drop_table('instance')
    with op.batch_alter_table('holding', schema=None) as batch_op:
        batch_op.drop_index('ix_holding_position_open')
        batch_op.drop_index(batch_op.f('ix_holding_person_id'))

    op.drop_table('holding')
    op.drop_table('unit_alias')
    op.drop_table('position')
    op.drop_table('plan_task')
    if not _sqlite():
        op.drop_constraint('fk_jurisdiction_office_unit_id_unit', 'jurisdiction', type_='foreignkey')
    op.drop_table('unit')
    op.drop_table('plan')
    op.drop_table('process_version')
    op.drop_table('person')
    op.drop_table('jurisdiction')
