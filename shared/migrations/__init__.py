"""Schema migrations with Alembic, configured in code (no alembic.ini).

:func:`upgrade` brings a database to the newest revision (``head``):

- a missing MySQL/MariaDB database is created (``utf8mb4``, binary collation) when the account
  may; otherwise :class:`MigrationError` says so in one line, password masked;
- a database made by the old ``create_all`` (the tables, no ``alembic_version``) is stamped at
  the initial revision, which is exactly that schema, instead of being created again;
- on MySQL/MariaDB a named lock makes replicas that start together migrate one at a time.

The scripts live beside this file: ``env.py`` and ``versions/``. A new revision:
``alembic.command.revision(config(conn), "what changes", autogenerate=True)`` with ``conn``
connected to a database at head (see README.md, "Schema migrations").
"""

from __future__ import annotations

import logging

# Alembic logs at INFO, on import and again for every command, which plugins and which
# implementation it set up: keep it at WARNING (set before it is imported) unless the
# application chose a level. What changed is logged here instead.
if logging.getLogger("alembic").level == logging.NOTSET:
    logging.getLogger("alembic").setLevel(logging.WARNING)

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import URL, Engine, create_engine, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

SCRIPTS = Path(__file__).resolve().parent
INITIAL = "0001"  # the schema create_all made before migrations existed
INITIAL_TABLES = frozenset({"chat_room", "chat_participant", "message"})
LOCK_NAME = "chat_backend_schema_migrations"
LOCK_TIMEOUT_S = 300

# MySQL/MariaDB error numbers.
ER_DBACCESS_DENIED = 1044  # access denied for user to database
ER_ACCESS_DENIED = 1045  # wrong user or password
ER_BAD_DB = 1049  # unknown database
ER_TABLEACCESS_DENIED = 1142
ER_SPECIFIC_ACCESS_DENIED = 1227
DENIED = {ER_DBACCESS_DENIED, ER_ACCESS_DENIED, ER_TABLEACCESS_DENIED, ER_SPECIFIC_ACCESS_DENIED}


class MigrationError(Exception):
    """The database cannot be brought to head: one line for the operator, and an exit code
    (2: a setting or a privilege to fix; 1: the database could not be reached)."""

    def __init__(self, line: str, exit_code: int = 2) -> None:
        super().__init__(line)
        self.exit_code = exit_code


def config(connection: Connection | None = None, script_location: Path = SCRIPTS) -> Config:
    """Alembic's configuration, without a file. ``env.py`` runs on ``connection``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """The newest revision."""
    revision = ScriptDirectory.from_config(config()).get_current_head()
    assert revision is not None
    return revision


def current(connection: Connection) -> str | None:
    """The revision the database is at (None: no migration history)."""
    return MigrationContext.configure(connection).get_current_revision()


def describe(url: URL) -> str:
    """``database 'chat' at mysql+pymysql://chat:***@host/chat``: the password masked (an SQLite
    URL is its own name)."""
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite":
        return f"database {shown}"
    return f"database {url.database!r} at {shown}"


def upgrade(engine: Engine) -> str:
    """Bring the database behind ``engine`` to head; returns the revision it is at.

    Raises :class:`MigrationError` when that is impossible (missing database the account may
    not create, access denied, server unreachable, tables of unknown origin).
    """
    _prepare_sqlite(engine.url)
    with _connect(engine) as conn:
        try:
            with _locked(conn):
                _adopt_unversioned(conn)
                before = current(conn)
                conn.commit()
                command.upgrade(config(conn), "head")
                revision = current(conn)
                conn.commit()
        except CommandError as exc:  # e.g. at a revision this code does not know (newer)
            raise MigrationError(f"cannot migrate {describe(engine.url)}: {exc}") from None
        except DBAPIError as exc:  # e.g. an account that may not CREATE TABLE; a lost server
            code = 2 if _error_code(exc) in DENIED else 1
            raise MigrationError(
                f"cannot migrate {describe(engine.url)}: {_reason(exc)}", code
            ) from None
    assert revision is not None
    if before == revision:
        log.info("%s is at the newest revision, %s", describe(engine.url), revision)
    else:
        log.info(
            "%s migrated from revision %s to %s", describe(engine.url), before or "(none)", revision
        )
    return revision


def upgrade_or_exit(engine: Engine) -> str:
    """:func:`upgrade` for an entry point: on failure print the one line on stderr and exit
    with its code (no traceback)."""
    try:
        return upgrade(engine)
    except MigrationError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(exc.exit_code) from None


# -- the steps ------------------------------------------------------------------------------


def _prepare_sqlite(url: URL) -> None:
    """An SQLite file's folder is created (the file itself is created on connect)."""
    name = url.database or ":memory:"
    if url.get_backend_name() != "sqlite" or name == ":memory:" or name.startswith("file:"):
        return  # not a file, or a URI (which names more than a path)
    Path(name).parent.mkdir(parents=True, exist_ok=True)


def _connect(engine: Engine) -> Connection:
    try:
        return engine.connect()
    except DBAPIError as exc:
        code = _error_code(exc)
        if code == ER_BAD_DB:
            _create_database(engine.url)
            return engine.connect()
        if code == ER_DBACCESS_DENIED:
            raise MigrationError(
                f"cannot migrate: this account may not use {describe(engine.url)} (if it does "
                "not exist, create it with CHARACTER SET utf8mb4 COLLATE utf8mb4_bin; grant the "
                f"account access): {_reason(exc)}"
            ) from None
        raise MigrationError(
            f"cannot migrate: cannot connect to {describe(engine.url)}: {_reason(exc)}",
            2 if code in DENIED else 1,
        ) from None


def _create_database(url: URL) -> None:
    """CREATE DATABASE on the server of ``url`` (utf8mb4, binary collation like the tables)."""
    name = url.database
    assert name
    server_url = URL.create(  # url.set(database=None) would keep the database
        url.drivername, url.username, url.password, url.host, url.port, None, url.query
    )
    server = create_engine(server_url, poolclass=NullPool, connect_args={"connect_timeout": 10})
    quoted = server.dialect.identifier_preparer.quote_identifier(name)
    try:
        with server.begin() as conn:
            conn.execute(
                text(
                    f"CREATE DATABASE IF NOT EXISTS {quoted} "
                    "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
                )
            )
    except DBAPIError as exc:
        if _error_code(exc) in DENIED:
            raise MigrationError(
                f"cannot migrate: {describe(url)} does not exist and this account may not "
                f"create it ({_reason(exc)}): create it with CHARACTER SET utf8mb4 COLLATE "
                "utf8mb4_bin, or grant CREATE"
            ) from None
        raise MigrationError(
            f"cannot migrate: {describe(url)} does not exist and creating it failed: "
            f"{_reason(exc)}",
            1,
        ) from None
    finally:
        server.dispose()
    log.warning("created %s (utf8mb4, utf8mb4_bin)", describe(url))


@contextlib.contextmanager
def _locked(conn: Connection) -> Iterator[None]:
    """On MySQL/MariaDB, hold a named server lock: one migration at a time per server.
    (SQLite serves one process: the embedded server or a test.)"""
    if conn.dialect.name not in ("mysql", "mariadb"):
        yield
        return
    got = conn.execute(
        text("SELECT GET_LOCK(:name, :timeout)"), {"name": LOCK_NAME, "timeout": LOCK_TIMEOUT_S}
    ).scalar()
    conn.commit()
    if got != 1:
        raise MigrationError(
            f"cannot migrate {describe(conn.engine.url)}: another migration held the lock "
            f"{LOCK_NAME!r} for {LOCK_TIMEOUT_S} s",
            1,
        )
    try:
        yield
    finally:
        with contextlib.suppress(DBAPIError):
            conn.rollback()
            conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": LOCK_NAME})
            conn.commit()


def _adopt_unversioned(conn: Connection) -> None:
    """A database without migration history that holds the initial tables was made by the old
    ``create_all``: record it as being at the initial revision rather than create them again."""
    if current(conn) is not None:
        return
    present = INITIAL_TABLES & set(inspect(conn).get_table_names())
    conn.commit()  # end the transaction the reads began
    if not present:
        return
    if present != INITIAL_TABLES:
        raise MigrationError(
            f"cannot migrate {describe(conn.engine.url)}: it has the tables {sorted(present)} "
            f"but not {sorted(INITIAL_TABLES - present)}, and no migration history: complete "
            "or drop them by hand"
        )
    command.stamp(config(conn), INITIAL)
    conn.commit()
    log.warning(
        "%s had the tables but no migration history (made before migrations): stamped at "
        "revision %s",
        describe(conn.engine.url),
        INITIAL,
    )


def _error_code(exc: DBAPIError) -> int | None:
    """The server's error number (pymysql puts it first in the exception's args)."""
    args: tuple[object, ...] = getattr(exc.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _reason(exc: DBAPIError) -> str:
    """The driver's message, on one line."""
    args: tuple[object, ...] = getattr(exc.orig, "args", ())
    message = args[1] if len(args) > 1 and isinstance(args[1], str) else str(exc.orig)
    return " ".join(message.split())
