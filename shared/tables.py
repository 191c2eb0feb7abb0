"""The database schema, defined once (SQLAlchemy Core). Runs on MySQL/MariaDB and SQLite."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql

metadata = MetaData()

# Binary collation: room and user names are case-sensitive keys ("Lobby" is not "lobby"), and a
# case-insensitive collation would turn two rooms' (room, seq) into one duplicate.
_MYSQL: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}
_TIME = DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql", "mariadb")
_ID = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER only

chat_room = Table(
    "chat_room",
    metadata,
    Column("room_id", String(64), primary_key=True),
    Column("created_at", _TIME, nullable=False),
    Column("deleted_at", _TIME, nullable=True),
    **_MYSQL,
)

chat_participant = Table(
    "chat_participant",
    metadata,
    Column("room_id", String(64), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("joined_at", _TIME, nullable=False),
    Column("exited_at", _TIME, nullable=True),
    # When the last applied join or leave happened: an older one arriving later is ignored
    # (migration 0003; NULL for rows from before it).
    Column("changed_at", _TIME, nullable=True),
    PrimaryKeyConstraint("room_id", "user_id"),
    **_MYSQL,
)

message = Table(
    "message",
    metadata,
    Column("message_id", _ID, primary_key=True, autoincrement=True),
    Column("room_id", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("sender_id", String(64), nullable=False),
    Column("content", Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"), nullable=False),
    Column("created_at", _TIME, nullable=False),
    UniqueConstraint("room_id", "seq", name="uq_message_room_seq"),
    **_MYSQL,
)

# A message that arrived with the (room, seq) of another, different message: kept, not dropped
# (shared/store.py; migration 0002).
message_conflict = Table(
    "message_conflict",
    metadata,
    Column("conflict_id", _ID, primary_key=True, autoincrement=True),
    Column("room_id", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("sender_id", String(64), nullable=False),
    Column("content", Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"), nullable=False),
    Column("created_at", _TIME, nullable=False),
    Column("detected_at", _TIME, nullable=False),
    Index("ix_message_conflict_room_seq", "room_id", "seq"),
    **_MYSQL,
)
