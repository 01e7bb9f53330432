"""Backup images: pg_dump/pg_restore of an instance's databases (see gcpsim.pg, "Images")."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pg8000.native

from gcpsim.pg.server import PgServer
from gcpsim.pg.sql import Image, PgError, ident, log


class PgImages(PgServer):
    """Images (backups and snapshots) of instances on the server."""

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
            c.run(f"DROP DATABASE IF EXISTS {ident(tmp)} WITH (FORCE)")
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
                    c.run(f"DROP DATABASE IF EXISTS {ident(tmp)} WITH (FORCE)")
                raise
            for logical, tmp in staged.items():
                self._adopt(c, tmp, uid, logical)
            for logical, name in self.databases(uid).items():
                if logical not in image.databases:
                    c.run(f"DROP DATABASE IF EXISTS {ident(name)} WITH (FORCE)")

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

    def snapshot(self, uid: str) -> Image:
        ms = int(time.time() * 1000)
        return self._dump(uid, self.pitr_dir / uid / str(ms))

    def _safe_snapshot(self, uid: str) -> None:
        try:
            self.snapshot(uid)
        except Exception as e:
            log.warning("snapshot of %s failed: %s", uid, e)
