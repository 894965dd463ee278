"""500 TLS endpoints on loopback, each with a certificate of its own, served by one asyncio
process (so the servers' CPU is neither prober's).

Kinds, by index: every 20th is expired, the next expiring in 10 days (inside the warning
window, still valid), the next serves no intermediate (a bad chain: the client trusts only
the root), the next is self-signed; the rest are valid with expiries spread over a year.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import ssl
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.services.certs import CertFactory, days

NAME = "service.test"
KINDS = ("expired", "expiring", "missing_intermediate", "self_signed")


@dataclass
class Endpoint:
    index: int
    kind: str
    cert_file: str
    key_file: str
    up: bool              # what both probers must say (handshake and chain verify)
    not_after: int | None  # the earliest expiry presented, when up
    port: int = 0


def kind_of(i: int) -> str:
    return KINDS[i % 20] if i % 20 < len(KINDS) else "valid"


def make_fleet(directory: Path, n: int) -> tuple[list[Endpoint], Path]:
    certs = CertFactory(directory)
    root = certs.ca("Fleet Root CA")
    inter = certs.ca("Fleet Intermediate CA", root)
    ca_file = certs.write("ca", root)
    out = []
    for i in range(n):
        kind = kind_of(i)
        if kind == "self_signed":
            leaf = certs.leaf([NAME])
            chain = [leaf]
        else:
            nb, na = ((days(-30), days(-1)) if kind == "expired" else
                      (None, days(10)) if kind == "expiring" else (None, days(30 + i % 330)))
            leaf = certs.leaf([NAME], inter, not_before=nb, not_after=na)
            chain = [leaf] if kind == "missing_intermediate" else [leaf, inter]
        up = kind in ("valid", "expiring")
        out.append(Endpoint(i, kind, str(certs.write("chain", *chain)),
                            str(certs.write_key(leaf)), up, leaf.not_after if up else None))
    return out, ca_file


async def _serve(endpoints: list[dict[str, object]], ports_file: str) -> None:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, _ctx: None)  # rejected handshakes are expected

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(reader.read(1), 30)
        except (OSError, TimeoutError, ssl.SSLError):
            pass
        finally:
            writer.close()

    ports = []
    for ep in endpoints:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(ep["cert_file"]), str(ep["key_file"]))
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx, backlog=256)
        ports.append(server.sockets[0].getsockname()[1])
    Path(ports_file).write_text(json.dumps(ports))
    await asyncio.Event().wait()


def _main(spec: str, ports_file: str) -> None:
    asyncio.run(_serve(json.loads(Path(spec).read_text()), ports_file))


def start_servers(endpoints: list[Endpoint], directory: Path,
                  timeout: float = 120.0) -> multiprocessing.Process:
    spec, ports_file = directory / "fleet.json", directory / "ports.json"
    spec.write_text(json.dumps([asdict(e) for e in endpoints]))
    proc = multiprocessing.get_context("spawn").Process(
        target=_main, args=(str(spec), str(ports_file)), daemon=True)
    proc.start()
    import time

    deadline = time.monotonic() + timeout
    while not ports_file.exists():
        if time.monotonic() > deadline or not proc.is_alive():
            proc.kill()
            raise RuntimeError("the TLS fleet did not start")
        time.sleep(0.2)
    for ep, port in zip(endpoints, json.loads(ports_file.read_text()), strict=True):
        ep.port = int(port)
    return proc


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2])
