"""A real local mail server for tests and the demo, all on 127.0.0.1, all in one directory.

Pieces: Dovecot (IMAP with STARTTLS and IMAPS, LMTP on a unix socket, PLAIN and
XOAUTH2/OAUTHBEARER through ``passdb oauth2``), an aiosmtpd submission server delivering into
Dovecot over LMTP, and a local OAuth 2.0 / OIDC token service (HTTPS for MSAL and
google-auth, plain HTTP for Dovecot's introspection). One local CA (``ROOT/ssl/ca.pem``)
signs every server certificate.

``DevServer(root).start()`` runs them in this process (pytest); ``mailops devserver start``
runs the same class in a detached process (``python -m mailops.dev.devserver``) and writes
``ROOT/state.json``; ``stop`` signals it and waits until no process is left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mailops.errors import DevServerError
from mailops.providers import LocalServer

HERE = Path(__file__).resolve().parent
DOVECOT_PACKAGES = ["dovecot-imapd", "dovecot-lmtpd"]
STATE_FILE = "state.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise DevServerError(f"dovecot exited with code {proc.returncode} while starting")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise DevServerError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


def dovecot_binary() -> str | None:
    return shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin:/sbin")


def ensure_dovecot(install: bool = True) -> str:
    """Path of the dovecot binary; installs the Debian packages with apt when missing."""
    found = dovecot_binary()
    if found:
        return found
    if not install:
        raise DevServerError(
            "Dovecot is not installed", guidance="apt-get install -y " + " ".join(DOVECOT_PACKAGES)
        )
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise DevServerError(
            "Dovecot is not installed and cannot be installed here (needs root and apt-get)",
            guidance="sudo apt-get install -y " + " ".join(DOVECOT_PACKAGES),
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", *DOVECOT_PACKAGES],
    ):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
            raise DevServerError(f"installing Dovecot failed: {' '.join(cmd)}: {tail[0]}")
    found = dovecot_binary()
    if not found:
        raise DevServerError("Dovecot still missing after apt-get install")
    return found


@dataclass
class DevServerState:
    """What clients need to reach a running devserver (no secrets)."""

    root: str
    host: str = "127.0.0.1"
    imap_port: int = 0
    imaps_port: int = 0
    smtp_port: int = 0
    oauth_url: str = (
        ""  # HTTPS base URL of the token service (MSAL authority = oauth_url + "/organizations")
    )
    oauth_http_url: str = ""  # plain HTTP base (introspection, test helpers)
    ca_file: str = ""
    pid: int = 0  # process running the DevServer
    dovecot_pid: int = 0
    started_at: float = 0.0

    @property
    def introspect_url(self) -> str:
        return self.oauth_http_url + "/introspect"

    @property
    def microsoft_authority(self) -> str:
        return self.oauth_url + "/organizations"

    @property
    def token_url(self) -> str:
        return self.oauth_url + "/organizations/oauth2/v2.0/token"

    @property
    def authorize_url(self) -> str:
        return self.oauth_url + "/organizations/oauth2/v2.0/authorize"

    @property
    def log_file(self) -> str:
        return os.path.join(self.root, "log", "dovecot.log")

    # -- test / demo helpers over the token service's plain-HTTP side ----------------------
    def _post(self, _endpoint: str, **form: Any) -> dict[str, Any]:
        data = urllib.parse.urlencode({k: v for k, v in form.items() if v is not None}).encode()
        request = urllib.request.Request(
            self.oauth_http_url + _endpoint,
            data=data,
            headers={ADMIN_HEADER: read_admin_secret(self.root)},
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            return dict(json.load(r))

    def issue_token(self, username: str, ttl: int | None = None) -> dict[str, Any]:
        return self._post("/issue", username=username, ttl=ttl)

    def approve(self, user_code: str, username: str, deny: bool = False) -> bool:
        try:
            self._post(
                "/approve", user_code=user_code, username=username, deny="1" if deny else None
            )
            return True
        except urllib.error.HTTPError:
            return False

    def revoke(self, username: str | None = None, token: str | None = None) -> None:
        self._post("/revoke", username=username, token=token)

    def configure(self, **form: Any) -> dict[str, Any]:
        return self._post("/config", **form)

    def fault(
        self,
        path: str,
        status: int = 500,
        error: str = "server_error",
        count: int = 1,
        description: str = "",
    ) -> None:
        self._post(
            "/fault",
            path=path,
            status=status,
            error=error,
            count=count,
            description=description or None,
        )

    # -- users and mail ---------------------------------------------------------------
    def add_users(self, users: dict[str, str]) -> None:
        add_users(self.root, users)

    def users(self) -> dict[str, str]:
        return read_users(self.root)

    def doveadm(self, *args: str) -> str:
        binary = shutil.which("doveadm") or shutil.which("doveadm", path="/usr/bin:/usr/sbin")
        if not binary:
            raise DevServerError("doveadm not found")
        done = subprocess.run(
            [binary, "-c", os.path.join(self.root, "dovecot.conf"), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise DevServerError(f"doveadm {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def deliver(self, mail_from: str, rcpt: str, data: bytes) -> None:
        """Deliver one message straight into RCPT's INBOX over LMTP."""
        with smtplib.LMTP(os.path.join(self.root, "run", "lmtp"), timeout=30) as lmtp:
            lmtp.sendmail(mail_from or "<>", [rcpt], data)

    def save(self) -> None:
        """Write ``state.json`` (this wing's) and ``endpoints.json`` (the product's
        ``providers.LocalServer``, what ``--devserver`` reads)."""
        Path(self.root, STATE_FILE).write_text(json.dumps(asdict(self), indent=2))
        LocalServer(
            host=self.host,
            imaps_port=self.imaps_port,
            smtp_port=self.smtp_port,
            microsoft_authority=self.microsoft_authority,
            authorize_url=self.authorize_url,
            token_url=self.token_url,
            ca_file=self.ca_file,
        ).save(self.root)

    @staticmethod
    def forget(root: str) -> None:
        Path(root, STATE_FILE).unlink(missing_ok=True)
        LocalServer.forget(root)

    @classmethod
    def load(cls, root: str) -> DevServerState | None:
        path = Path(root, STATE_FILE)
        if not path.exists():
            return None
        try:
            return cls(**json.loads(path.read_text()))
        except (ValueError, TypeError):
            return None


def read_users(root: str) -> dict[str, str]:
    users: dict[str, str] = {}
    path = Path(root, "users")
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                name, pw = line.split(":")[:2]
                users[name] = pw.removeprefix("{PLAIN}")
    return users


#: Dovecot's auth process runs as this user and reads the passwd-file itself.
AUTH_USER = "dovecot"


def private_users_file(path: Path) -> None:
    """The users file holds every devserver password: 0600, owned by Dovecot's auth user
    (root, who writes it, needs no permission bits)."""
    path.chmod(0o600)
    if os.geteuid() == 0:
        shutil.chown(path, AUTH_USER, AUTH_USER)


ADMIN_SECRET_FILE = "admin-secret"
ADMIN_HEADER = "X-Devserver-Secret"  # = TokenService.ADMIN_HEADER


def admin_secret(root: str) -> str:
    """The secret the token service's helpers (/issue, /config, /fault, /revoke, /approve)
    require: ``ROOT/admin-secret``, 0600, made once and kept across restarts."""
    path = Path(root, ADMIN_SECRET_FILE)
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        text = ""
    if text:
        path.chmod(0o600)
        return text
    import secrets as _secrets

    text = _secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    return text


def read_admin_secret(root: str) -> str:
    try:
        return Path(root, ADMIN_SECRET_FILE).read_text().strip()
    except OSError:
        raise DevServerError(
            f"cannot read the devserver secret in {root}",
            guidance="run as the user who started the devserver (its admin-secret file is 0600)",
        ) from None


def add_users(root: str, users: dict[str, str]) -> None:
    """Create (or re-password) mail users. Dovecot re-reads the passwd-file at most once a
    second, so wait that long before the new users can log in."""
    current = read_users(root)
    changed = {k.lower(): v for k, v in users.items() if current.get(k.lower()) != v}
    if not changed:
        return
    for k, v in changed.items():
        if ":" in k or ":" in v or "\n" in k + v:
            raise DevServerError(f"user or password may not contain ':' or newlines: {k}")
    current.update(changed)
    path = Path(root, "users")
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in sorted(current.items())))
    private_users_file(tmp)
    tmp.replace(path)
    if Path(root, "run", "master.pid").exists():
        time.sleep(1.1)


PORT_NAMES = ("OAUTH_PORT", "OAUTH_HTTP_PORT", "IMAP_PORT", "IMAPS_PORT", "SMTP_PORT")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _stable_ports(root: Path, names: tuple[str, ...]) -> dict[str, int]:
    """The ports recorded in ROOT/ports.json where still free, new free ones otherwise."""
    path = root / "ports.json"
    try:
        saved = {k: int(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        saved = {}
    ports: dict[str, int] = {}
    for name in names:
        port = saved.get(name, 0)
        if not (port and port not in ports.values() and _port_free(port)):
            port = free_port()
            while port in ports.values():
                port = free_port()
        ports[name] = port
    path.write_text(json.dumps(ports, indent=2))
    return ports


def _render(template: Path, dest: Path, values: dict[str, str]) -> None:
    text = template.read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    dest.write_text(text)


@dataclass
class DevServer:
    """Start/stop the three pieces in this process. ``state`` tells clients where they are."""

    root: str
    users: dict[str, str] = field(default_factory=dict)
    install: bool = True
    state: DevServerState | None = None
    _proc: subprocess.Popen[bytes] | None = None
    _servers: list[Any] = field(default_factory=list)
    _smtp: Any = None
    svc: Any = None  # the TokenService, for in-process tests

    def start(self) -> DevServerState:
        # Dovecot's unprivileged processes must walk into ROOT's folders: whatever the
        # caller's umask (mailops narrows it to 077, C5), create them 755 and start Dovecot
        # with 022 as before; the users file alone is made private (``private_users_file``).
        old = os.umask(0o022)
        try:
            return self._start()
        finally:
            os.umask(old)

    def _start(self) -> DevServerState:
        from mailops.dev.devserver.smtp import make_controller
        from mailops.dev.devserver.tokens import TokenService, make_tls_files

        binary = ensure_dovecot(self.install)
        root = Path(self.root).resolve()
        for sub in ("run", "state", "log", "mail", "ssl"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        root.chmod(0o755)  # dovecot's auth (user dovecot) and mail (nobody) processes walk in
        shutil.chown(root / "mail", "nobody", "nogroup")
        if not (root / "ssl" / "ca.pem").exists():
            make_tls_files(str(root / "ssl"))
        for name in ("ca.pem", "server.pem"):
            (root / "ssl" / name).chmod(0o644)
        (root / "ssl" / "server.key").chmod(0o600)  # read by Dovecot's root master and us
        users_file = root / "users"
        if not users_file.exists():
            users_file.write_text("")
        private_users_file(users_file)
        if self.users:
            add_users(str(root), self.users)

        # 1. token service: HTTPS for OAuth clients, HTTP for Dovecot and helpers
        self.svc = TokenService(
            state_file=str(root / "oauth-tokens.json"), admin_secret=admin_secret(str(root))
        )
        ssl_dir = root / "ssl"
        # A restart reuses the ports of the last run when they are free: connected
        # mailboxes keep their endpoints (host, ports, OAuth authority) across restarts.
        ports = _stable_ports(root, PORT_NAMES)
        cert = (str(ssl_dir / "server.pem"), str(ssl_dir / "server.key"))
        https = self.svc.serve(ports.pop("OAUTH_PORT"), cert)
        http = self.svc.serve(ports.pop("OAUTH_HTTP_PORT"))
        self._servers = [https, http]
        smtp_port = ports.pop("SMTP_PORT")

        # 2. dovecot, foreground child: its pid is the master
        values = {
            "ROOT": str(root),
            "MAIL_USER": "nobody",
            "MAIL_GROUP": "nogroup",
            "LOGIN_USER": "dovenull",
            "INTERNAL_USER": AUTH_USER,
            "OAUTH_PORT": str(http.server_address[1]),
            **{k: str(v) for k, v in ports.items()},
        }
        _render(HERE / "dovecot.conf.template", root / "dovecot.conf", values)
        _render(HERE / "dovecot-oauth2.conf.ext.template", root / "dovecot-oauth2.conf.ext", values)
        errlog = open(root / "log" / "dovecot.stderr", "ab")
        try:
            self._proc = subprocess.Popen(
                [binary, "-F", "-c", str(root / "dovecot.conf")],
                stdout=errlog,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            errlog.close()
        try:
            wait_port(ports["IMAP_PORT"], self._proc)
            # 3. SMTP submission -> LMTP
            self._smtp = make_controller(
                str(root), port=smtp_port, oauth_url=http.url + "/introspect", tls=True
            )
            self._smtp.start()
        except BaseException:
            self.stop()
            raise
        self.state = DevServerState(
            root=str(root),
            imap_port=ports["IMAP_PORT"],
            imaps_port=ports["IMAPS_PORT"],
            smtp_port=self._smtp.port,
            oauth_url=https.url,
            oauth_http_url=http.url,
            ca_file=str(ssl_dir / "ca.pem"),
            pid=os.getpid(),
            dovecot_pid=self._proc.pid,
            started_at=time.time(),
        )
        return self.state

    @property
    def smtp_messages(self) -> list[tuple[str, list[str], bytes]]:
        return list(self._smtp.handler_obj.messages) if self._smtp else []

    def stop(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.stop()
            except Exception:  # noqa: BLE001 - best effort on shutdown
                pass
            self._smtp = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(5)
            self._proc = None
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
        self._servers = []

    def __enter__(self) -> DevServerState:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the detached process behind `mailops devserver start` ------------------------------------
def pid_alive(pid: int) -> bool:
    """Is PID a live process (a zombie is not: its parent is gone and nobody reaped it)?"""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def status(root: str) -> DevServerState | None:
    """The state of a running devserver at ROOT, or None."""
    st = DevServerState.load(root)
    if st is None or not pid_alive(st.pid) or not pid_alive(st.dovecot_pid):
        return None
    try:
        socket.create_connection((st.host, st.imap_port), 1).close()
    except OSError:
        return None
    return st


def start_detached(root: str, timeout: float = 60) -> DevServerState:
    """Start the devserver in its own session (survives this process); idempotent."""
    running = status(root)
    if running:
        return running
    stop_detached(root)  # leftovers of a killed run
    ensure_dovecot(True)
    Path(root).mkdir(parents=True, exist_ok=True)
    DevServerState.forget(root)
    log = open(Path(root) / "devserver.log", "ab")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailops.dev.devserver", root],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = status(root)
        if st:
            return st
        if proc.poll() is not None:
            tail = (
                (Path(root) / "devserver.log").read_text(errors="replace").strip().splitlines()[-1:]
            )
            raise DevServerError(
                f"devserver exited while starting: {tail[0] if tail else '?'}",
                guidance=f"see {root}/devserver.log and {root}/log/dovecot.log",
            )
        time.sleep(0.1)
    raise DevServerError(
        f"devserver did not come up in {timeout:.0f}s", guidance=f"see {root}/devserver.log"
    )


def stop_detached(root: str, timeout: float = 20) -> list[int]:
    """Stop the devserver at ROOT and anything it left; return the pids that were stopped."""
    pids: list[int] = []
    st = DevServerState.load(root)
    if st and pid_alive(st.pid):
        os.kill(st.pid, signal.SIGTERM)
        pids.append(st.pid)
    master = Path(root, "run", "master.pid")
    dpid = st.dovecot_pid if st else 0
    if not dpid and master.exists():
        try:
            dpid = int(master.read_text().strip() or 0)
        except ValueError:
            dpid = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids + [dpid]):
        time.sleep(0.1)
    for p in [*pids, dpid]:  # still there: no mercy
        if pid_alive(p):
            os.kill(p, signal.SIGKILL)
    if dpid and dpid not in pids and dpid > 0:
        pids.append(dpid)
    DevServerState.forget(root)
    return [p for p in pids if p]


def serve(root: str) -> None:
    """Run a DevServer until SIGTERM/SIGINT (the body of ``python -m mailops.dev.devserver``)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = DevServer(root)
    state = server.start()
    state.save()
    print(
        f"READY imap={state.imap_port} smtp={state.smtp_port} oauth={state.oauth_url}", flush=True
    )
    try:
        while not stop.wait(1.0):
            if server._proc is not None and server._proc.poll() is not None:
                print(f"dovecot exited with {server._proc.returncode}; stopping", flush=True)
                break
    finally:
        server.stop()
        DevServerState.forget(root)
