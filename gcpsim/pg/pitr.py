"""Point-in-time recovery: snapshots, their thinning, and clones as of a time (see gcpsim.pg,
"Point in time")."""

from __future__ import annotations

import contextlib
import shutil
import time
import uuid
from pathlib import Path

import pg8000.native

from gcpsim.pg.images import PgImages
from gcpsim.pg.sql import (
    REPLAY_MARGIN_SECONDS,
    Image,
    as_datetime,
    columns,
    created_at_tables,
    ident,
    reset_sequences,
)


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


def replay_rows(
    src: pg8000.native.Connection, dst: pg8000.native.Connection, lo: float, hi: float
) -> int:
    """Copy rows with created_at in (lo, hi] from src to dst, skipping existing keys."""
    copied = 0
    src_tables = set(created_at_tables(src))
    for table in created_at_tables(dst):
        if table not in src_tables:
            continue
        cols = [col for col in columns(dst, table) if col in set(columns(src, table))]
        collist = ", ".join(ident(col) for col in cols)
        rows = src.run(
            f"SELECT {collist} FROM {ident(table)} "
            "WHERE created_at > :lo AND created_at <= :hi ORDER BY created_at",
            lo=as_datetime(lo),
            hi=as_datetime(hi),
        )
        params = ", ".join(f":p{i}" for i in range(len(cols)))
        sql = f"INSERT INTO {ident(table)} ({collist}) VALUES ({params}) ON CONFLICT DO NOTHING"
        for row in rows:
            dst.run(sql, **{f"p{i}": v for i, v in enumerate(row)})
            copied += 1
    return copied


class PgPitr(PgImages):
    """Snapshots and (point-in-time) clones."""

    # ------------------------------------------------------------------ point in time

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
                                replay_rows(src, dst, lo, t)
                        for table in created_at_tables(dst):
                            dst.run(
                                f"DELETE FROM {ident(table)} WHERE created_at > :t",
                                t=as_datetime(t),
                            )
                        reset_sequences(dst)
            except BaseException:
                for name in staged.values():
                    c.run(f"DROP DATABASE IF EXISTS {ident(name)} WITH (FORCE)")
                raise
            finally:
                for name in temporary:
                    c.run(f"DROP DATABASE IF EXISTS {ident(name)} WITH (FORCE)")
            for logical, tmp in staged.items():
                self._adopt(c, tmp, dst_uid, logical)
