"""chat_participant.changed_at: when the transition last applied to the row happened.

Join and leave entries can reach the database out of order (two persister replicas, a late
redelivery after a claim); with this column only a newer transition is applied (shared/store.py).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_TIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql", "mariadb")


def upgrade() -> None:
    with op.batch_alter_table("chat_participant") as batch:
        batch.add_column(sa.Column("changed_at", _TIME, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("chat_participant") as batch:
        batch.drop_column("changed_at")
