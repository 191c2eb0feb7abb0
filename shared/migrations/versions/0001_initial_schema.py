"""The initial schema: rooms, participants, messages (what create_all made before migrations).

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# The types of shared/tables.py as they are at this revision, copied rather than imported: a
# revision keeps describing its own step when the live schema moves on.
_MYSQL: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}
_TIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql", "mariadb")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_CONTENT = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "chat_room",
        sa.Column("room_id", sa.String(64), primary_key=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("deleted_at", _TIME, nullable=True),
        **_MYSQL,
    )
    op.create_table(
        "chat_participant",
        sa.Column("room_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("joined_at", _TIME, nullable=False),
        sa.Column("exited_at", _TIME, nullable=True),
        sa.PrimaryKeyConstraint("room_id", "user_id"),
        **_MYSQL,
    )
    op.create_table(
        "message",
        sa.Column("message_id", _ID, primary_key=True, autoincrement=True),
        sa.Column("room_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("sender_id", sa.String(64), nullable=False),
        sa.Column("content", _CONTENT, nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.UniqueConstraint("room_id", "seq", name="uq_message_room_seq"),
        **_MYSQL,
    )


def downgrade() -> None:
    op.drop_table("message")
    op.drop_table("chat_participant")
    op.drop_table("chat_room")
