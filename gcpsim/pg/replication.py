"""Read replicas on the embedded server (an approximation of streaming replication).

A replica is an instance of its own (its own `uid`, its own databases) created as a live copy of
its primary. Its databases default to read-only transactions
(`ALTER DATABASE ... SET default_transaction_read_only = on`), so an application's INSERT fails
with Postgres' own "cannot execute INSERT in a read-only transaction", as on a hot standby.
`replicate(primary, replica, lo, hi)` copies the primary's rows with `created_at` in (lo, hi]
into the replica (skipping rows already there), in a session that lifts the read-only default:
the API layer calls it with hi = now - lag, so the replica holds every row created up to hi
(inserts only: updates and deletes on the primary after the copy are not replayed).
`promote(replica)` lifts the read-only default, ends the sessions that still have it and resets
the serial sequences, so the promoted instance takes writes.
"""

from __future__ import annotations

from gcpsim.pg.pitr import PgPitr, replay_rows
from gcpsim.pg.sql import ident, reset_sequences


class PgReplication(PgPitr):
    """Replica creation, row replication and promotion."""

    def create_replica(self, primary_uid: str, replica_uid: str) -> dict[str, str]:
        """The replica's databases as a copy of the primary's now, read-only by default."""
        self.clone(primary_uid, replica_uid, None)
        self.set_read_only(replica_uid, True)
        return self.databases(replica_uid)

    def set_read_only(self, uid: str, read_only: bool) -> None:
        """Make new sessions on `uid`'s databases read-only (or writable again), and end the
        sessions that run with the old default."""
        with self._conn() as c:
            for name in self.databases(uid).values():
                if read_only:
                    c.run(f"ALTER DATABASE {ident(name)} SET default_transaction_read_only = on")
                else:
                    c.run(f"ALTER DATABASE {ident(name)} RESET default_transaction_read_only")
                c.run(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :d AND pid <> pg_backend_pid()",
                    d=name,
                )

    def replicate(self, primary_uid: str, replica_uid: str, lo: float, hi: float) -> int:
        """Copy the primary's rows created in (lo, hi] into the replica; returns how many."""
        src_dbs = self.databases(primary_uid)
        copied = 0
        for logical, dst_name in self.databases(replica_uid).items():
            src_name = src_dbs.get(logical)
            if src_name is None:
                continue
            with self._conn(src_name) as src, self._conn(dst_name) as dst:
                dst.run("SET default_transaction_read_only = off")
                dst.run("SET session_replication_role = replica")  # no FK checks, as a standby
                copied += replay_rows(src, dst, lo, hi)
        return copied

    def promote(self, uid: str) -> dict[str, str]:
        """Turn a replica's databases into a primary's: writable, sequences past the max id."""
        self.set_read_only(uid, False)
        for name in self.databases(uid).values():
            with self._conn(name) as c:
                reset_sequences(c)
        return self.databases(uid)
