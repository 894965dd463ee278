"""A TLS handshake after SMTP's STARTTLS, giving the chain as presented (for the tls rules).

The `tls` kind's handshake connects straight into TLS; a mail server on 587 first speaks
plain SMTP. This reads the greeting, says EHLO, asks for STARTTLS, then runs the `tls`
kind's own handshake on that socket (:func:`controlplane.probes.tlsconn.handshake_on`:
every version accepted, nothing verified) so the `tls` kind's judge can describe the chain
in full.
"""

from __future__ import annotations

from typing import BinaryIO

from controlplane.deadline import Deadline
from controlplane.probes.tlsconn import Handshake, Unreachable, connect, handshake_on


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
    return handshake_on(sock, host, port, servername, deadline, connect_s)


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
