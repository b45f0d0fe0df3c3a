"""partial indexes for the inbox

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 23:12:03.002801
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('human_task', schema=None) as batch_op:
        batch_op.create_index('ix_human_task_open_position', ['position_id', 'due_at', 'id'], unique=False, sqlite_where=sa.text("state = 'ready'"), postgresql_where=sa.text("state = 'ready'"))
        batch_op.create_index('ix_human_task_open_unit', ['unit_id', 'due_at', 'id'], unique=False, sqlite_where=sa.text("state = 'ready'"), postgresql_where=sa.text("state = 'ready'"))



def downgrade() -> None:
    with op.batch_alter_table('human_task', schema=None) as batch_op:
        batch_op.drop_index('ix_human_task_open_unit', sqlite_where=sa.text("state = 'ready'"), postgresql_where=sa.text("state = 'ready'"))
        batch_op.drop_index('ix_human_task_open_position', sqlite_where=sa.text("state = 'ready'"), postgresql_where=sa.text("state = 'ready'"))

