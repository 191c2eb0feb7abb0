"""message_conflict: a message that arrived with a (room, seq) another message already has.

The persister never lets such a collision pass as a redelivery: it keeps the newcomer here,
counts it and logs it (shared/store.py). Seqs are never issued twice by design (gateway/seqs.py);
this table is where the evidence would land if that promise were ever broken.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

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
        "message_conflict",
        sa.Column("conflict_id", _ID, primary_key=True, autoincrement=True),
        sa.Column("room_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("sender_id", sa.String(64), nullable=False),
        sa.Column("content", _CONTENT, nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("detected_at", _TIME, nullable=False),
        **_MYSQL,
    )
    op.create_index("ix_message_conflict_room_seq", "message_conflict", ["room_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_message_conflict_room_seq", table_name="message_conflict")
    op.drop_table("message_conflict")
