"""The instance table of the first releases, brought to the shape revision 0001 settled on.

0001 was rewritten twice after databases had been made with it: each unit's branch became a
child instance (9b98c15: parent, root and parent task), then branches were grouped by the
element that started them (8060762: parent element, has-children flag). A database made before
8060762 carries revision 0001 with an older instance table (0002 of the one release between
could not run), and every later migration and the runtime need the settled one. 0002 calls
`settle()` first: it adds what is missing and leaves a settled table alone."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


def settle() -> None:
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("instance")}
    if "parent_id" not in columns:
        _children()
    if "has_children" not in columns:
        _branch_groups()


def _children() -> None:
    """One instance held a whole item then; it becomes a top-level instance, its own root."""
    with op.batch_alter_table("instance") as batch:
        batch.add_column(sa.Column("parent_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("root_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("parent_task_id", sa.String(length=36), nullable=True))
        batch.create_foreign_key(
            op.f("fk_instance_parent_id_instance"), "instance", ["parent_id"], ["id"]
        )
        batch.create_foreign_key(
            op.f("fk_instance_root_id_instance"), "instance", ["root_id"], ["id"]
        )
        batch.create_unique_constraint(op.f("uq_instance_parent_task_id"), ["parent_task_id"])
        # A business key now names one top-level instance (children share their parent's).
        batch.drop_constraint(op.f("uq_instance_process_id"), type_="unique")
        batch.create_index(op.f("ix_instance_root_id"), ["root_id"], unique=False)
        batch.create_index(
            "uq_instance_top_level_key",
            ["process_id", "business_key"],
            unique=True,
            sqlite_where=sa.text("parent_id IS NULL"),
            postgresql_where=sa.text("parent_id IS NULL"),
        )
    op.execute("UPDATE instance SET root_id = id")


def _branch_groups() -> None:
    """Children made before branches were grouped keep no element: they form one group per
    parent, which still moves the parent on once all of them have ended."""
    with op.batch_alter_table("instance") as batch:
        batch.add_column(sa.Column("parent_element_id", sa.String(length=100), nullable=True))
        batch.add_column(
            sa.Column("has_children", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.create_index(
            "ix_instance_siblings", ["parent_id", "parent_element_id", "status"], unique=False
        )
    op.execute(
        "UPDATE instance SET has_children = "
        "EXISTS (SELECT 1 FROM instance AS child WHERE child.parent_id = instance.id)"
    )
    with op.batch_alter_table("instance") as batch:  # as 0001 has it: no default
        batch.alter_column("has_children", existing_type=sa.Boolean(), server_default=None)
