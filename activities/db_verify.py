"""Database validation queries: row count and newest timestamp per table, after a restore, a
point-in-time clone or in a DR drill.

Connections:
- gcpsim: the instance's `instances.get` answer carries a simulator-only `gcpsimConnection`
  (host, port, user, password and the real database name behind each Cloud SQL database);
- gcp: the Cloud SQL Python Connector with pg8000. Credentials come from the worker's
  environment only: `STAGECOACH_DB_USER` plus `STAGECOACH_DB_PASSWORD`, or, without a password,
  IAM database authentication as `STAGECOACH_DB_USER`. `STAGECOACH_DB_IP_TYPE` picks
  PUBLIC (default), PRIVATE or PSC. Credentials never appear in inputs, results or logs.

A table that is missing, empty or without the timestamp column is reported as a problem (the
report's `ok` is False); it does not fail the activity. Connection failures do (transiently).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any

from googleapiclient.errors import HttpError
from temporalio import activity

from activities.errors import api_errors, permanent, transient
from stagecoach.clients import Clients, clients_for
from stagecoach.contract import Activity
from stagecoach.payloads.common import Target
from stagecoach.payloads.sql import TableCount, ValidateDatabaseInput, ValidationReport

USER_ENV = "STAGECOACH_DB_USER"
PASSWORD_ENV = "STAGECOACH_DB_PASSWORD"
IP_TYPE_ENV = "STAGECOACH_DB_IP_TYPE"
CONNECT_TIMEOUT = 30


def quote_ident(name: str) -> str:
    """A safely quoted SQL identifier; `schema.table` quotes each part."""
    parts = name.split(".")
    if not name or any(not p for p in parts):
        raise ValueError(f"invalid table name {name!r}")
    return ".".join('"' + p.replace('"', '""') + '"' for p in parts)


def _aware(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None


class DatabaseActivities:
    """Database validation. Holds nothing but the client factory."""

    def __init__(self, clients: Callable[[Target], Clients] = clients_for) -> None:
        self._clients = clients

    def _instance(self, input: ValidateDatabaseInput) -> dict[str, Any]:
        ref = input.ref
        try:
            inst: dict[str, Any] = (
                self._clients(ref.target)
                .sqladmin()
                .instances()
                .get(project=ref.project, instance=ref.instance)
                .execute(num_retries=3)
            )
        except HttpError as e:
            if e.status_code == 404:
                raise permanent(
                    f"Cloud SQL instance {ref.instance} does not exist in {ref.project}", "NotFound"
                ) from e
            raise
        if inst.get("state") not in (None, "RUNNABLE"):
            raise transient(f"instance {ref.instance} is {inst.get('state')}", "NotRunnable")
        return inst

    def _connect(
        self, input: ValidateDatabaseInput, inst: dict[str, Any]
    ) -> AbstractContextManager[Any]:
        if input.ref.target.kind == "gcpsim":
            return self._connect_gcpsim(input, inst)
        return self._connect_gcp(input, inst)

    @staticmethod
    @contextmanager
    def _connect_gcpsim(input: ValidateDatabaseInput, inst: dict[str, Any]) -> Any:
        import pg8000.dbapi

        conn_info = inst.get("gcpsimConnection")
        if not conn_info:
            raise permanent(
                f"gcpsim instance {input.ref.instance} reports no gcpsimConnection",
                "FailedPrecondition",
            )
        databases = conn_info.get("databases") or {}
        if databases and input.database not in databases:
            raise permanent(
                f"database {input.database!r} does not exist on {input.ref.instance}", "NotFound"
            )
        conn = pg8000.dbapi.connect(
            user=conn_info["user"],
            password=conn_info.get("password"),
            host=conn_info.get("host", "127.0.0.1"),
            port=int(conn_info.get("port", 5432)),
            database=databases.get(input.database, input.database),
            timeout=CONNECT_TIMEOUT,
            application_name="stagecoach-validate",
        )
        try:
            yield conn
        finally:
            conn.close()

    @staticmethod
    @contextmanager
    def _connect_gcp(input: ValidateDatabaseInput, inst: dict[str, Any]) -> Any:
        from google.cloud.sql.connector import Connector

        user = os.environ.get(USER_ENV, "")
        password = os.environ.get(PASSWORD_ENV) or None
        if not user:
            raise permanent(
                f"set {USER_ENV} (and {PASSWORD_ENV}, or use IAM database auth) on the worker",
                "FailedPrecondition",
            )
        connection_name = inst.get("connectionName") or (
            f"{input.ref.project}:{inst.get('region', '')}:{input.ref.instance}"
        )
        ip_type = os.environ.get(IP_TYPE_ENV, "PUBLIC").upper()
        with Connector(ip_type=ip_type, enable_iam_auth=password is None) as connector:
            kwargs: dict[str, Any] = {"user": user, "db": input.database}
            if password is not None:
                kwargs["password"] = password
            conn = connector.connect(connection_name, "pg8000", **kwargs)
            try:
                yield conn
            finally:
                conn.close()

    @activity.defn(name=Activity.VALIDATE_DATABASE)
    @api_errors
    def validate_database(self, input: ValidateDatabaseInput) -> ValidationReport:
        """Row count and newest `timestamp_column` of each table; problems listed, not raised."""
        inst = self._instance(input)
        tables: list[TableCount] = []
        problems: list[str] = []
        try:
            with self._connect(input, inst) as conn:
                for table in input.tables:
                    activity.heartbeat(table)
                    count, problem = self._count(conn, table, input.timestamp_column)
                    if count is not None:
                        tables.append(count)
                    if problem:
                        problems.append(problem)
        except Exception as exc:
            if exc.__class__.__module__.startswith("pg8000") and _is_connect_error(exc):
                raise transient(
                    f"cannot connect to {input.database} on {input.ref.instance}: "
                    f"{type(exc).__name__}",
                    "Connection",
                ) from exc
            raise
        report = ValidationReport(
            instance=input.ref.instance, tables=tables, ok=not problems, problems=problems
        )
        activity.logger.info(
            "validated %s/%s: %s",
            input.ref.instance,
            input.database,
            ", ".join(f"{t.table}={t.rows}" for t in tables) or "no tables",
        )
        return report

    @staticmethod
    def _count(conn: Any, table: str, column: str) -> tuple[TableCount | None, str]:
        import pg8000.dbapi

        try:
            name = quote_ident(table)
            col = quote_ident(column) if column else ""
        except ValueError as exc:
            return None, str(exc)
        cur = conn.cursor()
        try:
            if col:
                try:
                    cur.execute(f"SELECT count(*), max({col}) FROM {name}")
                    rows, newest = cur.fetchone()
                    tc = TableCount(table=table, rows=int(rows), newest=_aware(newest))
                    return tc, "" if rows else f"table {table} is empty"
                except pg8000.dbapi.DatabaseError as exc:
                    conn.rollback()
                    if _sqlstate(exc) != "42703":  # undefined_column: count rows alone
                        return None, _table_problem(table, exc)
            try:
                cur.execute(f"SELECT count(*) FROM {name}")
                (rows,) = cur.fetchone()
            except pg8000.dbapi.DatabaseError as exc:
                conn.rollback()
                return None, _table_problem(table, exc)
            problem = f"table {table} has no column {column}" if col else ""
            if not rows:
                problem = "; ".join(p for p in (problem, f"table {table} is empty") if p)
            return TableCount(table=table, rows=int(rows)), problem
        finally:
            cur.close()


def _sqlstate(exc: Exception) -> str:
    arg = exc.args[0] if exc.args else None
    if isinstance(arg, dict):
        return str(arg.get("C", ""))
    return ""


def _table_problem(table: str, exc: Exception) -> str:
    if _sqlstate(exc) == "42P01":
        return f"table {table} does not exist"
    arg = exc.args[0] if exc.args else None
    message = arg.get("M", "") if isinstance(arg, dict) else str(exc)
    return f"table {table}: {message}"[:300]


def _is_connect_error(exc: Exception) -> bool:
    import pg8000.dbapi

    return isinstance(exc, pg8000.dbapi.InterfaceError) and not isinstance(
        exc, pg8000.dbapi.DatabaseError
    )
