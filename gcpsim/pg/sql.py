"""Settings, names, schemas and SQL helpers shared by the Postgres modules (see gcpsim.pg)."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pg8000.native

log = logging.getLogger("gcpsim.sql")

DEFAULT_ROWS_PER_SECOND = 2.0
DEFAULT_SNAPSHOT_SECONDS = 10.0
OS_USER = "embedded_postgres"
SUPERUSER = "postgres"
HOST = "127.0.0.1"
REPLAY_MARGIN_SECONDS = 5.0
REFERENCE_TABLES = ("cases", "parties", "party_issue_selections")

_config: dict[str, float] = {
    "rows_per_second": DEFAULT_ROWS_PER_SECOND,
    "snapshot_seconds": DEFAULT_SNAPSHOT_SECONDS,
}


def configure(
    *, rows_per_second: float | None = None, snapshot_seconds: float | None = None
) -> None:
    """Set the row writer's rate (rows/s per database; 0 stops it) and the PITR snapshot
    interval (seconds). Takes effect on the running threads within a tick."""
    if rows_per_second is not None:
        if rows_per_second < 0:
            raise ValueError("rows_per_second must be >= 0")
        _config["rows_per_second"] = float(rows_per_second)
    if snapshot_seconds is not None:
        if snapshot_seconds <= 0:
            raise ValueError("snapshot_seconds must be > 0")
        _config["snapshot_seconds"] = float(snapshot_seconds)


def rows_per_second() -> float:
    return _config["rows_per_second"]


def snapshot_seconds() -> float:
    return _config["snapshot_seconds"]


# Schema of the reference tables; any other table name gets GENERIC_DDL.
REFERENCE_DDL = {
    "cases": """CREATE TABLE IF NOT EXISTS cases (
        id serial PRIMARY KEY,
        title text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now())""",
    "parties": """CREATE TABLE IF NOT EXISTS parties (
        id serial PRIMARY KEY,
        case_id integer REFERENCES cases(id),
        name text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now())""",
    "party_issue_selections": """CREATE TABLE IF NOT EXISTS party_issue_selections (
        id serial PRIMARY KEY,
        party_id integer REFERENCES parties(id),
        issue text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now())""",
}
GENERIC_DDL = """CREATE TABLE IF NOT EXISTS {table} (
    id serial PRIMARY KEY,
    title text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now())"""

INSERT_SQL = {
    "cases": "INSERT INTO cases (title, created_at) VALUES (:v, COALESCE(:ts, now()))",
    "parties": "INSERT INTO parties (case_id, name, created_at) "
    "VALUES ((SELECT max(id) FROM cases), :v, COALESCE(:ts, now()))",
    "party_issue_selections": "INSERT INTO party_issue_selections (party_id, issue, created_at) "
    "VALUES ((SELECT max(id) FROM parties), :v, COALESCE(:ts, now()))",
}
ISSUES = ("custody", "support", "visitation", "property", "protection-order", "name-change")


class PgError(RuntimeError):
    """A data operation failed (the message is safe to show in an operation error)."""


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def as_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def pg_database_name(uid: str, logical: str) -> str:
    """The Postgres database that holds logical database `logical` of instance `uid`."""
    slug = re.sub(r"[^a-z0-9_]", "_", logical.lower())[:40]
    if slug != logical:
        slug = f"{slug}_{hashlib.sha1(logical.encode()).hexdigest()[:6]}"
    return f"i{uid}_{slug}"


@dataclass(frozen=True)
class Image:
    path: Path
    uid: str
    taken_at: float
    databases: dict[str, str]  # logical name -> dump file name


@dataclass(frozen=True)
class ConnectionInfo:
    host: str
    port: int
    user: str
    password: str


# ---------------------------------------------------------------------- SQL helpers


def created_at_tables(c: pg8000.native.Connection) -> list[str]:
    rows = c.run(
        "SELECT c.table_name FROM information_schema.columns c "
        "JOIN information_schema.tables t USING (table_schema, table_name) "
        "WHERE c.table_schema = 'public' AND c.column_name = 'created_at' "
        "AND t.table_type = 'BASE TABLE' ORDER BY c.table_name"
    )
    names = [str(r[0]) for r in rows]
    ordered = [t for t in REFERENCE_TABLES if t in names]
    return ordered + [t for t in names if t not in REFERENCE_TABLES]


def writable_tables(c: pg8000.native.Connection) -> list[str]:
    """Tables the writer can fill: the reference tables, and others with a `title` column."""
    names = created_at_tables(c)
    titled = {
        str(r[0])
        for r in c.run(
            "SELECT table_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND column_name = 'title'"
        )
    }
    return [t for t in names if t in REFERENCE_TABLES or t in titled]


def insert_row(c: pg8000.native.Connection, table: str, value: str, ts: datetime | None) -> None:
    sql = INSERT_SQL.get(table)
    if sql is None:
        sql = f"INSERT INTO {ident(table)} (title, created_at) VALUES (:v, COALESCE(:ts, now()))"
    if table == "party_issue_selections":
        value = ISSUES[sum(map(ord, value)) % len(ISSUES)]
    c.run(sql, v=value, ts=ts)


def columns(c: pg8000.native.Connection, table: str) -> list[str]:
    rows = c.run(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = :t ORDER BY ordinal_position",
        t=table,
    )
    return [str(r[0]) for r in rows]


def reset_sequences(c: pg8000.native.Connection) -> None:
    rows = c.run(
        "SELECT cl.relname, a.attname, "
        "pg_get_serial_sequence(quote_ident(n.nspname) || '.' || quote_ident(cl.relname), "
        "a.attname) FROM pg_attribute a JOIN pg_class cl ON cl.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = cl.relnamespace "
        "WHERE n.nspname = 'public' AND cl.relkind = 'r' AND a.attnum > 0 "
        "AND NOT a.attisdropped"
    )
    for table, col, seq in rows:
        if seq:
            c.run(
                f"SELECT setval(:s, COALESCE((SELECT max({ident(col)}) FROM {ident(table)}), 0)"
                " + 1, false)",
                s=seq,
            )
