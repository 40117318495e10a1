"""A real PostgreSQL for tests, the bench and trying the lake (D1), on 127.0.0.1 in one folder.

Like the devserver's Dovecot, the project starts it itself: ``PostgresServer(root).start()``
finds the server binaries (``/usr/lib/postgresql/<version>/bin``, ``pg_config --bindir``,
``initdb`` on PATH), installs Debian's ``postgresql`` with apt when none is found, runs
``initdb`` in ROOT/data as an unprivileged user (``initdb`` refuses root: as root the
``postgres`` system user the package creates, else ``nobody``; ROOT is made theirs),
``pg_ctl start`` on a free 127.0.0.1 port with the Unix socket in ROOT (``-k``; the default
one needs /var/run/postgresql), and creates a database. ``dsn`` is what psycopg and the
store door take (``ducklake:`` + dsn); ``stop()`` stops it, ``stop(remove=True)`` deletes ROOT.

Authentication is ``trust`` on 127.0.0.1: a throwaway cluster for one machine's tests and
demos, never a production database. ``mailops devserver postgres start|stop|status`` runs
the same class for a shell (``pg_ctl`` detaches the server; ROOT/postgres.json says where).
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mailops.dev.devserver import free_port, pid_alive
from mailops.errors import DevServerError

__all__ = [
    "POSTGRES_PACKAGES",
    "PgState",
    "PostgresServer",
    "ensure_postgres",
    "find_bindir",
    "status",
]

POSTGRES_PACKAGES = ["postgresql"]
#: Where Debian puts the server binaries (one folder per major version).
DEFAULT_SEARCH = ("/usr/lib/postgresql/*/bin",)
#: Overrides the search (folders or globs, ``:``-separated): a test points it at an empty
#: folder to exercise the install path.
SEARCH_ENV = "MAILOPS_PG_BINDIR"
STATE_FILE = "postgres.json"
SUPERUSER = "postgres"  # the cluster's superuser role (initdb -U)
DEFAULT_DB = "mailops"
_NEEDED = ("initdb", "pg_ctl", "postgres", "createdb")


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path)) or (0,)


def _usable(folder: str) -> bool:
    return all(os.access(os.path.join(folder, name), os.X_OK) for name in _NEEDED)


def find_bindir(search: Sequence[str] | None = None, *, use_env: bool = True) -> str | None:
    """The newest folder holding initdb, pg_ctl, postgres and createdb, or None.

    SEARCH (folders or globs) replaces the default order: ``$MAILOPS_PG_BINDIR`` (unless
    not USE_ENV), else /usr/lib/postgresql/*/bin (newest version first), ``pg_config
    --bindir``, then the folder of ``initdb`` on PATH."""
    if search is None and use_env and os.environ.get(SEARCH_ENV):
        search = os.environ[SEARCH_ENV].split(os.pathsep)
    explicit = search is not None
    candidates: list[str] = []
    for pattern in search if search is not None else DEFAULT_SEARCH:
        candidates += sorted(glob.glob(pattern), key=_version_key, reverse=True)
    if not explicit:
        pg_config = shutil.which("pg_config")
        if pg_config:
            done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
            if done.returncode == 0 and done.stdout.strip():
                candidates.append(done.stdout.strip())
        initdb = shutil.which("initdb")
        if initdb:
            candidates.append(os.path.dirname(initdb))
    return next((c for c in candidates if _usable(c)), None)


def _apt_install(packages: Sequence[str]) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
            raise DevServerError(f"installing PostgreSQL failed: {' '.join(cmd)}: {tail[0]}")


def ensure_postgres(install: bool = True, search: Sequence[str] | None = None) -> str:
    """The folder of the PostgreSQL server binaries; installs Debian's ``postgresql`` with
    apt when SEARCH (default: the usual places) finds none."""
    found = find_bindir(search)
    if found:
        return found
    how = "apt-get install -y " + " ".join(POSTGRES_PACKAGES)
    if not install:
        raise DevServerError("PostgreSQL is not installed", guidance=how)
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise DevServerError(
            "PostgreSQL is not installed and cannot be installed here (needs root and apt-get)",
            guidance="sudo " + how,
        )
    _apt_install(POSTGRES_PACKAGES)
    # where apt put it (the usual places, whatever SEARCH or $MAILOPS_PG_BINDIR said)
    found = find_bindir(search) or find_bindir(None, use_env=False)
    if not found:
        raise DevServerError(
            "PostgreSQL still missing after apt-get install",
            guidance=f"no initdb/pg_ctl in {', '.join(search or DEFAULT_SEARCH)}",
        )
    return found


@dataclass
class PgState:
    """Where a running cluster is (no secrets: the cluster trusts 127.0.0.1)."""

    root: str
    port: int
    dbname: str = DEFAULT_DB
    bindir: str = ""
    os_user: str = ""  # who owns ROOT/data and runs the server
    pid: int = 0  # the postmaster
    host: str = "127.0.0.1"
    user: str = SUPERUSER

    @property
    def dsn(self) -> str:
        """A libpq URI (psycopg, DuckDB's postgres extension, ``ducklake:`` + dsn)."""
        return self.dsn_for(self.dbname)

    def dsn_for(self, dbname: str) -> str:
        return f"postgres://{self.user}@{self.host}:{self.port}/{dbname}"

    @property
    def conninfo(self) -> str:
        """The same as libpq keywords (``dbname=... host=... port=... user=...``)."""
        return f"dbname={self.dbname} host={self.host} port={self.port} user={self.user}"

    def store_url(self, data_path: str | os.PathLike[str] | None = None) -> str:
        """The store door's name for a DuckLake with this cluster as its catalog."""
        url = f"ducklake:{self.dsn}"
        return f"{url}?data={os.fspath(data_path)}" if data_path is not None else url

    @property
    def log_file(self) -> str:
        return os.path.join(self.root, "postgres.log")

    def save(self) -> None:
        Path(self.root, STATE_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, root: str) -> PgState | None:
        try:
            return cls(**json.loads(Path(root, STATE_FILE).read_text()))
        except (OSError, ValueError, TypeError):
            return None


class PostgresServer:
    """One throwaway PostgreSQL cluster in ROOT (a new folder under /tmp by default).

    ``start()`` -> ``PgState``; ``new_database()`` -> the DSN of a fresh, empty database
    (one per test); ``stop(remove=...)``. A ROOT that already holds a cluster is started
    again (its data kept)."""

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        dbname: str = DEFAULT_DB,
        port: int = 0,
        install: bool = True,
        search: Sequence[str] | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.root = os.fspath(root) if root is not None else ""
        self._own_root = root is None
        self.dbname = dbname
        self.port = port
        self.install = install
        self.search = search
        self.settings = dict(settings or {})
        self.state: PgState | None = None
        self._count = 0

    # -- who runs it ------------------------------------------------------------------
    @staticmethod
    def os_user() -> pwd.struct_passwd:
        """The user initdb and the server run as: ourselves, or (as root, which initdb
        refuses) the ``postgres`` system user, else ``nobody``."""
        if os.geteuid() != 0:
            return pwd.getpwuid(os.geteuid())
        for name in ("postgres", "nobody"):
            try:
                return pwd.getpwnam(name)
            except KeyError:
                continue
        raise DevServerError(
            "no unprivileged user to run PostgreSQL as (initdb refuses root)",
            guidance="apt-get install -y postgresql creates the postgres user",
        )

    def _run(
        self, argv: Sequence[str], *, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        who = self.os_user()
        kw: dict[str, Any] = {}
        if os.geteuid() == 0:
            kw = {"user": who.pw_uid, "group": who.pw_gid, "extra_groups": []}
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": self.root,
            "LC_ALL": "C",
            "LANG": "C",
            "TZ": "UTC",
        }
        try:
            done = subprocess.run(
                list(argv),
                cwd=self.root,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                umask=0o077,
                **kw,
            )
        except subprocess.TimeoutExpired:
            raise DevServerError(
                f"{os.path.basename(argv[0])} did not finish in {timeout:.0f}s"
            ) from None
        if check and done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
            raise DevServerError(
                f"{os.path.basename(argv[0])} failed (exit {done.returncode}): {tail[0]}",
                guidance=f"see {os.path.join(self.root, 'postgres.log')}",
            )
        return done

    # -- start / stop -------------------------------------------------------------------
    def start(self) -> PgState:
        bindir = ensure_postgres(self.install, self.search)
        who = self.os_user()
        if not self.root:
            self.root = tempfile.mkdtemp(prefix="mailops-pg-", dir="/tmp")
        root = Path(self.root)
        root.mkdir(parents=True, exist_ok=True)
        self.root = str(root.resolve())
        if os.geteuid() == 0:
            os.chown(self.root, who.pw_uid, who.pw_gid)
        os.chmod(self.root, 0o700)
        data = os.path.join(self.root, "data")
        if not os.path.exists(os.path.join(data, "PG_VERSION")):
            self._run(
                [
                    f"{bindir}/initdb",
                    "-D",
                    data,
                    "-A",
                    "trust",
                    "-U",
                    SUPERUSER,
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            )
        saved = PgState.load(self.root)
        last_error: DevServerError | None = None
        for attempt in range(3):  # a free port can be taken between choosing and binding
            port = self.port or (saved.port if saved and attempt == 0 else free_port())
            try:
                self._pg_ctl_start(bindir, data, port)
                break
            except DevServerError as e:
                last_error = e
                if self.port or "already in use" not in self._log_tail(20):
                    raise
        else:
            assert last_error is not None
            raise last_error
        self.state = PgState(
            root=self.root,
            port=port,
            dbname=self.dbname,
            bindir=bindir,
            os_user=who.pw_name,
            pid=self._postmaster_pid(data),
        )
        self.state.save()
        self._createdb(self.dbname)
        return self.state

    def _pg_ctl_start(self, bindir: str, data: str, port: int) -> None:
        opts = [
            f"-p {port}",
            f"-k {shlex.quote(self.root)}",
            "-c listen_addresses=127.0.0.1",
            *(f"-c {shlex.quote(f'{k}={v}')}" for k, v in self.settings.items()),
        ]
        self._run(
            [
                f"{bindir}/pg_ctl",
                "-D",
                data,
                "-l",
                os.path.join(self.root, "postgres.log"),
                "-w",
                "-t",
                "60",
                "-o",
                " ".join(opts),
                "start",
            ]
        )

    def _log_tail(self, n: int) -> str:
        try:
            lines = Path(self.root, "postgres.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    @staticmethod
    def _postmaster_pid(data: str) -> int:
        try:
            return int(Path(data, "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return 0

    def _createdb(self, name: str) -> None:
        st = self.state
        assert st is not None
        done = self._run(
            [f"{st.bindir}/createdb", "-h", st.host, "-p", str(st.port), "-U", st.user, name],
            check=False,
        )
        if done.returncode != 0 and "already exists" not in done.stderr:
            tail = done.stderr.strip().splitlines()[-1:] or ["?"]
            raise DevServerError(f"createdb {name} failed: {tail[0]}")

    def restart(self) -> None:
        """Stop the cluster (fast: sessions are cut) and start it again on the same port,
        data kept -- what a database failover or a crash looks like to its clients."""
        st = self.state
        if st is None:
            raise DevServerError("the PostgreSQL cluster is not running")
        data = os.path.join(self.root, "data")
        self._run([f"{st.bindir}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"])
        self._pg_ctl_start(st.bindir, data, st.port)
        st.pid = self._postmaster_pid(data)
        st.save()

    def new_database(self, prefix: str = "t") -> str:
        """The DSN of a new, empty database in the running cluster."""
        if self.state is None:
            raise DevServerError("the PostgreSQL cluster is not running")
        self._count += 1
        name = f"{prefix}_{os.getpid()}_{self._count}_{int(time.time() * 1000) % 10**8}"
        self._createdb(name)
        return self.state.dsn_for(name)

    def stop(self, *, remove: bool | None = None) -> None:
        """Stop the cluster (fast shutdown: sessions are cut). REMOVE deletes ROOT (default:
        when ROOT was made by this object)."""
        remove = self._own_root if remove is None else remove
        data = os.path.join(self.root, "data") if self.root else ""
        if data and os.path.exists(os.path.join(data, "postmaster.pid")):
            bindir = (self.state.bindir if self.state else "") or find_bindir(self.search) or ""
            if bindir:
                self._run([f"{bindir}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"], check=False)
            pid = self._postmaster_pid(data)
            deadline = time.monotonic() + 20
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if pid_alive(pid):
                os.kill(pid, 9)
        self.state = None
        if remove and self.root:  # else ROOT/postgres.json stays: a restart reuses the port
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgState:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def status(root: str) -> PgState | None:
    """The state of the cluster running in ROOT, or None."""
    st = PgState.load(root)
    if st is None:
        return None
    pid = PostgresServer._postmaster_pid(os.path.join(root, "data"))
    if not pid_alive(pid):
        return None
    try:
        socket.create_connection((st.host, st.port), 1).close()
    except OSError:
        return None
    st.pid = pid
    return st
