"""A TLS handshake after SMTP's STARTTLS, giving the chain as presented (for the tls rules).

The `tls` kind's handshake connects straight into TLS; a mail server on 587 first speaks
plain SMTP. This reads the greeting, says EHLO, asks for STARTTLS, then runs the same
pyOpenSSL handshake (every version accepted, nothing verified) so the `tls` kind's judge
can describe the chain in full.
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING, BinaryIO

from controlplane.deadline import Deadline
from controlplane.lazyimport import lazy_module
from controlplane.probes.tlsconn import (
    Handshake,
    Unreachable,
    _close,
    _drive_handshake,
    _ssl_reason,
    ascii_name,
    connect,
    is_ip,
)

if TYPE_CHECKING:
    from OpenSSL import SSL
else:  # pyOpenSSL (and cryptography) load when a probe runs, not when a config validates
    SSL = lazy_module("OpenSSL.SSL")


def smtp_starttls_handshake(host: str, port: int, servername: str | None,
                            deadline: Deadline) -> Handshake:
    sock, connect_s = connect(host, port, deadline)
    try:
        sock.settimeout(max(deadline.remaining(), 0.001))
        replies = sock.makefile("rb")
        _expect(replies, 220, f"SMTP {host}:{port}: greeting")
        sock.sendall(b"EHLO controlplane\r\n")
        caps = _expect(replies, 250, f"SMTP {host}:{port}: EHLO")
        if not any(line.upper().startswith("STARTTLS") for line in caps):
            raise Unreachable(f"SMTP {host}:{port} does not offer STARTTLS", "starttls")
        sock.sendall(b"STARTTLS\r\n")
        _expect(replies, 220, f"SMTP {host}:{port}: STARTTLS")
    except TimeoutError:
        sock.close()
        raise
    except OSError as exc:
        sock.close()
        raise Unreachable(f"SMTP {host}:{port}: {exc.strerror or exc}", "starttls") from None
    except Unreachable:
        sock.close()
        raise
    return _tls_on(sock, host, port, servername, deadline, connect_s)


def _expect(replies: BinaryIO, code: int, what: str) -> list[str]:
    """The lines of one (multi-line) reply; Unreachable if its code is not ``code``."""
    lines: list[str] = []
    while True:
        raw = replies.readline(1024)
        if not raw:
            raise Unreachable(f"{what}: connection closed by the server", "starttls")
        line = raw.decode("latin-1").rstrip("\r\n")
        lines.append(line[4:])
        if len(line) < 4 or line[3] != "-":
            break
    if not line[:3].isdigit() or int(line[:3]) != code:
        raise Unreachable(f"{what}: expected {code}, got {line[:120]!r}", "starttls")
    return lines


def _tls_on(sock: socket.socket, host: str, port: int, servername: str | None,
            deadline: Deadline, connect_s: float) -> Handshake:
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_VERSION)
    ctx.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    ctx.set_verify(SSL.VERIFY_NONE)
    conn = SSL.Connection(ctx, sock)
    if servername and not is_ip(servername):
        conn.set_tlsext_host_name(ascii_name(servername).encode("ascii"))
    conn.set_connect_state()
    sock.setblocking(False)
    t0 = time.monotonic()
    try:
        _drive_handshake(conn, sock, deadline)
        chain = conn.get_peer_cert_chain(as_cryptography=True) or []
        result = Handshake(connect_s=connect_s, handshake_s=time.monotonic() - t0,
                           version=conn.get_protocol_version_name(),
                           cipher=conn.get_cipher_name() or "", chain=list(chain))
    except SSL.Error as exc:
        raise Unreachable(f"TLS handshake with {host}:{port} failed: {_ssl_reason(exc)}") \
            from None
    finally:
        _close(conn, sock)
    if not result.chain:
        raise Unreachable(f"TLS handshake with {host}:{port}: the server sent no certificate")
    return result
