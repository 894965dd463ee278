"""A real IMAP server on loopback: Debian's Dovecot 2.3, one instance per test with its own config.

Fixtures: ``imap_server`` (Dovecot alone) and ``mail_system`` (the aiosmtpd relay of
tests/services/smtp.py delivering into it). ``dovecot_running(certs)`` starts
``dovecot -F -c OWN.conf`` on free loopback ports: IMAP with STARTTLS (Dovecot counts a
loopback client as secure, so a plain LOGIN is not refused here; the probe always starts
TLS), IMAPS, and LMTP over TCP, which is how the
SMTP test server (tests/services/smtp.py) hands a mail on to the mailbox, as a relay's
delivery agent would. One user, ``INBOX_USER``, with a Maildir under a fresh directory.

Dovecot refuses to deliver mail as root, so the mail is owned by the ``dovecot`` system
user the package creates; the directory therefore lives in a world-traversable temp dir
(pytest's tmp_path is 0700 to root).
"""

from __future__ import annotations

import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.services.certs import CertFactory
from tests.services.common import free_port
from tests.services.smtp import SmtpServer, smtp_running

DOVECOT = "/usr/sbin/dovecot"
INBOX_USER, INBOX_PASSWORD = "inbox@techhalo.test", "imap-secret-password"

CONFIG = """\
base_dir = {dir}/run
state_dir = {dir}/state
instance_name = controlplane-test-{imap_port}
log_path = {dir}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = {uid}
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {dir}/users
}}
userdb {{
  driver = passwd-file
  args = {dir}/users
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
"""


@dataclass
class ImapServer:
    host: str
    imap_port: int
    """plain IMAP; STARTTLS required before LOGIN"""
    imaps_port: int
    """implicit TLS"""
    lmtp_port: int
    ca_file: str
    user: str
    password: str
    log_file: Path

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


@contextmanager
def dovecot_running(certs: CertFactory, names: list[str] | None = None) -> Iterator[ImapServer]:
    """Dovecot with a certificate for ``names`` (default 127.0.0.1 and localhost)."""
    files = certs.server(names or ["127.0.0.1", "localhost"])
    owner = pwd.getpwnam("dovecot")
    root = Path(tempfile.mkdtemp(prefix="controlplane-dovecot-"))
    root.chmod(0o755)
    try:
        home = root / "mail" / INBOX_USER
        home.mkdir(parents=True)
        for path in (root / "mail", home):
            shutil.chown(path, owner.pw_uid, owner.pw_gid)
        (root / "users").write_text(f"{INBOX_USER}:{{PLAIN}}{INBOX_PASSWORD}:"
                                    f"{owner.pw_uid}:{owner.pw_gid}::{home}::\n")
        # login processes run as dovenull and read the key before dropping privileges
        ports = {"imap_port": free_port(), "imaps_port": free_port(), "lmtp_port": free_port()}
        conf = root / "dovecot.conf"
        conf.write_text(CONFIG.format(dir=root, cert=files.cert_file, key=files.key_file,
                                      uid=owner.pw_uid, **ports))
        proc = subprocess.Popen([DOVECOT, "-F", "-c", str(conf)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        server = ImapServer("127.0.0.1", ports["imap_port"], ports["imaps_port"],
                            ports["lmtp_port"], str(files.ca_file), INBOX_USER, INBOX_PASSWORD,
                            root / "dovecot.log")
        try:
            _await(proc, server)
            yield server
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _await(proc: subprocess.Popen[bytes], server: ImapServer) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"dovecot exited ({proc.returncode}): {out}\n{server.log()}")
        try:
            for port in (server.imap_port, server.imaps_port, server.lmtp_port):
                socket.create_connection((server.host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"dovecot did not listen within 15s:\n{server.log()}")


@dataclass
class MailSystem:
    """The SMTP relay (aiosmtpd) delivering by LMTP into the IMAP server (Dovecot)."""

    smtp: SmtpServer
    imap: ImapServer


@pytest.fixture
def imap_server(certs: CertFactory) -> Iterator[ImapServer]:
    with dovecot_running(certs) as server:
        yield server


@pytest.fixture
def mail_system(certs: CertFactory, imap_server: ImapServer) -> Iterator[MailSystem]:
    with smtp_running(certs) as smtp:
        smtp.box.relay_lmtp = (imap_server.host, imap_server.lmtp_port)
        yield MailSystem(smtp, imap_server)
