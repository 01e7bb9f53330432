"""gcpsim's embedded Postgres starts whatever the umask it runs with (the embedded stack starts
its other components with 077), and initdb's password file is never readable by other users."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gcpsim.pg.cluster import PgCluster
from gcpsim.pg.sql import OS_USER
from testing.paths import ROOT


@pytest.mark.parametrize("umask", [0o077, 0o022])
def test_the_password_file_is_private_to_the_user_initdb_runs_as(
    tmp_path: Path, umask: int
) -> None:
    cluster = PgCluster(tmp_path / "pg")
    pwfile = tmp_path / ".pwfile"
    old = os.umask(umask)
    try:
        cluster._write_pwfile(pwfile, "secret")
    finally:
        os.umask(old)
    st = pwfile.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    if os.geteuid() == 0:
        import pwd

        assert st.st_uid == pwd.getpwnam(OS_USER).pw_uid
    assert pwfile.read_text() == "secret\n"


def test_initdb_and_start_under_umask_077(tmp_path: Path) -> None:
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "os.umask(0o077)\n"
        "from gcpsim.pg.cluster import PgCluster\n"
        "c = PgCluster(Path(sys.argv[1]))\n"
        "try:\n"
        "    c.start()\n"
        "    assert not (c.home / '.pwfile').exists()\n"
        "finally:\n"
        "    c.stop()\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "pg")],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
