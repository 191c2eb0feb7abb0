"""The message store: idempotent batch writes and history reads over any SQLAlchemy URL.

Blocking by design (SQLAlchemy Core + pymysql/sqlite3); async callers run these methods in a
worker thread. The persister writes through it; the gateway reads history through it (and writes
in ``sync`` persist mode).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Engine,
    case,
    create_engine,
    event,
    func,
    or_,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from shared import events
from shared.tables import chat_participant, chat_room, message, message_conflict

MESSAGE_ROW = ("room_id", "seq", "sender_id", "content", "created_at")  # keys of a message row


class CommitUnknown(Exception):
    """A write failed while committing (e.g. the connection dropped with the commit's answer
    unread): it may or may not be stored. Writing the same entries again settles it."""


def to_datetime(ts_ms: int) -> datetime:
    """Milliseconds since the epoch → naive UTC datetime (the column type)."""
    return datetime.fromtimestamp(ts_ms / 1000, UTC).replace(tzinfo=None)


def to_mysql_datetime(ts_ms: int) -> str:
    """Milliseconds since the epoch → the text of a MySQL ``DATETIME(3)`` in UTC: what pymysql
    would send for ``to_datetime(ts_ms)``, at half the cost (the persister writes one per row)."""
    seconds, ms = divmod(ts_ms, 1000)
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(seconds))}.{ms:03d}"


def to_ms(value: datetime) -> int:
    """Naive UTC datetime → milliseconds since the epoch."""
    return round(value.replace(tzinfo=UTC).timestamp() * 1000)


class Store:
    """Tables, idempotent writes of persist entries, and reads by ``(room_id, seq)``."""

    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=3600)
            if url.startswith("mysql"):
                kwargs["connect_args"] = {"charset": "utf8mb4", "connect_timeout": 5}
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._dialect = self.engine.dialect.name
        self._known_rooms: set[str] = set()  # rooms whose chat_room row is committed
        insert = self._insert(message)
        # A row whose (room_id, seq) exists is skipped, and the statement's row count says how
        # many were new: fewer than sent means redeliveries, or a collision (checked then).
        self._message_insert = (
            insert.on_conflict_do_nothing()
            if self._dialect == "sqlite"
            else insert.prefix_with("IGNORE")
        )
        # MySQL: the insert compiled once and run by the driver's executemany (one multi-row
        # statement, values escaped and bound by pymysql), skipping SQLAlchemy's per-row
        # parameter processing, which cost a third of a batch's time.
        self._message_sql = (
            str(self._message_insert.compile(dialect=self.engine.dialect, column_keys=MESSAGE_ROW))
            if self._dialect in ("mysql", "mariadb")
            and self.engine.dialect.paramstyle == "pyformat"
            else None
        )

    def migrate(self) -> str:
        """Bring the schema to the newest migration, creating a missing database when allowed
        (see :mod:`shared.migrations`); returns the revision. Raises ``MigrationError``."""
        from shared import migrations  # Alembic is loaded only by the processes that migrate

        return migrations.upgrade(self.engine)

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()

    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    # -- writes -----------------------------------------------------------------------------

    def write(
        self,
        entries: Iterable[Mapping[str, Any]],
        on_conflict: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> int:
        """Apply persist entries in one transaction; returns the number of message entries.

        Entries are ``{"type": "message", room, seq, user, text, ts}`` or
        ``{"type": "join" | "leave", room, user, ts}``. Replaying a batch is a no-op: messages
        are unique on ``(room_id, seq)``. A message whose ``(room_id, seq)`` is already held by a
        *different* message is never dropped as a replay: it is kept in ``message_conflict``
        and reported to ``on_conflict`` (its row, as stored there).

        Raises :class:`CommitUnknown` when the failure came while committing; any other
        exception means nothing of this write was committed.
        """
        rooms: dict[str, int] = {}
        rows: list[dict[str, Any]] = []
        # The driver's own statement takes the time as text; SQLAlchemy's wants a datetime.
        created_at = to_datetime if self._message_sql is None else to_mysql_datetime
        members: list[Mapping[str, Any]] = []
        for entry in entries:
            rooms.setdefault(entry["room"], entry["ts"])
            if entry["type"] == "message":
                rows.append(
                    {
                        "room_id": entry["room"],
                        "seq": entry["seq"],
                        "sender_id": entry["user"],
                        "content": entry["text"],
                        "created_at": created_at(entry["ts"]),
                    }
                )
            else:
                members.append(entry)
        new_rooms = {r: ts for r, ts in rooms.items() if r not in self._known_rooms}
        committing = False
        try:
            with self.engine.begin() as conn:
                if new_rooms:
                    self._insert_rooms(conn, new_rooms)
                if rows:
                    for conflict in self._insert_messages(conn, rows):
                        if on_conflict is not None:
                            on_conflict(conflict)
                for entry in members:
                    self._apply_membership(conn, entry)
                committing = True  # leaving the block commits
        except Exception as exc:
            if committing:
                raise CommitUnknown(f"{type(exc).__name__}: {exc}") from exc
            raise  # before the commit was sent: nothing of this write is stored
        # Rooms are never deleted: once a room row is committed, later batches skip it.
        self._known_rooms.update(new_rooms)
        return len(rows)

    def _insert(self, table: Any) -> Any:
        if self._dialect == "sqlite":
            return sqlite.insert(table)
        if self._dialect in ("mysql", "mariadb"):
            return mysql.insert(table)
        raise NotImplementedError(f"unsupported database dialect: {self._dialect}")

    def _insert_rooms(self, conn: Connection, rooms: Mapping[str, int]) -> None:
        stmt = self._insert(chat_room)
        stmt = (
            stmt.on_conflict_do_nothing()
            if self._dialect == "sqlite"
            else stmt.on_duplicate_key_update(room_id=stmt.inserted.room_id)
        )
        conn.execute(
            stmt, [{"room_id": r, "created_at": to_datetime(ts)} for r, ts in rooms.items()]
        )

    def _insert_messages(
        self, conn: Connection, rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Insert new rows; returns the colliding ones (kept in ``message_conflict``)."""
        if self._message_sql is not None:
            inserted = conn.exec_driver_sql(self._message_sql, rows).rowcount
        else:
            inserted = conn.execute(self._message_insert, rows).rowcount
        if 0 <= inserted == len(rows):
            return []
        # Some rows were skipped: replays of what is stored (fine), or collisions (not fine).
        keys = [(row["room_id"], row["seq"]) for row in rows]
        query = select(
            message.c.room_id, message.c.seq, message.c.sender_id, message.c.content
        ).where(tuple_(message.c.room_id, message.c.seq).in_(keys))
        stored = {(r.room_id, r.seq): (r.sender_id, r.content) for r in conn.execute(query)}
        now = datetime.now(UTC).replace(tzinfo=None)
        conflicts = [
            {**row, "detected_at": now}
            for row in rows
            if stored.get((row["room_id"], row["seq"]), (row["sender_id"], row["content"]))
            != (row["sender_id"], row["content"])
        ]
        if conflicts:
            conn.execute(message_conflict.insert(), conflicts)
        return conflicts

    def _apply_membership(self, conn: Connection, entry: Mapping[str, Any]) -> None:
        """Apply a join or leave only if it is newer than the row's last transition: entries
        may arrive out of order (two persister replicas, a redelivery after a claim). A leave
        wins a tie (the same millisecond); ``joined_at`` keeps the earliest join."""
        at = to_datetime(entry["ts"])
        row = chat_participant.c
        joining = entry["type"] == "join"
        newer = or_(
            row.changed_at.is_(None), row.changed_at < at if joining else row.changed_at <= at
        )
        # Listed in this order on purpose: MySQL assigns left to right, so exited_at must be
        # decided before changed_at moves (SQLite reads the old row for every assignment).
        changes = [
            (
                "joined_at",
                case((row.joined_at > at, at), else_=row.joined_at) if joining else row.joined_at,
            ),
            ("exited_at", case((newer, None if joining else at), else_=row.exited_at)),
            ("changed_at", case((newer, at), else_=row.changed_at)),
        ]
        stmt = self._insert(chat_participant).values(
            room_id=entry["room"],
            user_id=entry["user"],
            joined_at=at,
            exited_at=None if joining else at,
            changed_at=at,
        )
        stmt = (
            stmt.on_conflict_do_update(index_elements=["room_id", "user_id"], set_=dict(changes))
            if self._dialect == "sqlite"
            else stmt.on_duplicate_key_update(changes)
        )
        conn.execute(stmt)

    # -- reads ------------------------------------------------------------------------------

    def history(
        self, room: str, before: int | None, limit: int
    ) -> tuple[list[events.Message], bool]:
        """Up to ``limit`` messages older than ``before`` (newest last), and whether more exist."""
        query = select(message.c.seq, message.c.sender_id, message.c.content, message.c.created_at)
        query = query.where(message.c.room_id == room)
        if before is not None:
            query = query.where(message.c.seq < before)
        query = query.order_by(message.c.seq.desc()).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        more = len(rows) > limit
        return [_message(room, row) for row in reversed(rows[:limit])], more

    def after(self, room: str, since: int, limit: int) -> list[events.Message]:
        """Up to ``limit`` messages with ``seq > since``, oldest first."""
        query = (
            select(message.c.seq, message.c.sender_id, message.c.content, message.c.created_at)
            .where(message.c.room_id == room, message.c.seq > since)
            .order_by(message.c.seq)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_message(room, row) for row in conn.execute(query)]

    def last_seq(self, room: str) -> int:
        """The highest stored seq of a room (0 when it has none, including when the database
        was never migrated: it then holds no message, so live chat need not wait for it)."""
        query = select(func.max(message.c.seq)).where(message.c.room_id == room)
        try:
            with self.engine.connect() as conn:
                return int(conn.execute(query).scalar_one() or 0)
        except DBAPIError as exc:
            if _never_migrated(exc):
                return 0
            raise

    def room_heads(self) -> dict[str, int]:
        """Every stored room with its highest stored seq (0 for a room without messages)."""
        with self.engine.connect() as conn:
            heads = {row[0]: 0 for row in conn.execute(select(chat_room.c.room_id))}
            query = select(message.c.room_id, func.max(message.c.seq)).group_by(message.c.room_id)
            heads.update({row[0]: int(row[1]) for row in conn.execute(query)})
        return heads

    def count_messages(self, room: str | None = None) -> int:
        """Number of stored messages (in one room, or in all)."""
        query = select(func.count()).select_from(message)
        if room is not None:
            query = query.where(message.c.room_id == room)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())


def _message(room: str, row: Any) -> events.Message:
    return events.message(room, int(row.seq), row.sender_id, row.content, to_ms(row.created_at))


# MySQL/MariaDB: 1146 no such table, 1049 unknown database.
_NOTHING_STORED = (1146, 1049)


def _never_migrated(exc: DBAPIError) -> bool:
    """Whether ``exc`` says the tables (or the database) do not exist, rather than that the
    database cannot be reached."""
    code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
    return code in _NOTHING_STORED or "no such table" in str(exc.orig)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets history reads run while the persister writes.
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
