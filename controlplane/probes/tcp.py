"""`tcp` checks: the port accepts a connection; optionally a verified TLS handshake on it.

For certificate expiry, thresholds, version and issuer rules use the `tls` kind; with
``tls: true`` this kind only asks "does it speak TLS with a chain we trust for this name".
"""

from __future__ import annotations

import argparse
from typing import Literal

from controlplane.deadline import Deadline
from controlplane.probes.base import CheckConfig, Outcome, Probe
from controlplane.probes.tlsconn import (
    EndpointConfig,
    Unreachable,
    adhoc_id,
    connect,
    handshake,
    hostname_problem,
    load_trust,
    split_target,
    usage_problem,
    verify_chain,
)
from controlplane.results import Status, Step


class TcpCheckConfig(EndpointConfig):
    kind: Literal["tcp"] = "tcp"
    tls: bool = False  # with tls: servername, ca_file and verify_hostname apply


class TcpProbe(Probe[TcpCheckConfig]):
    kind = "tcp"
    config_model = TcpCheckConfig
    cli_name = "tcp"

    def check(self) -> Outcome:
        c = self.config
        deadline = Deadline(c.timeout)
        if c.tls:
            return self._check_tls(deadline)
        try:
            sock, connect_s = connect(c.host, c.port, deadline)
        except Unreachable as exc:
            return _failed("connect", str(exc))
        except TimeoutError:
            return _failed("connect", f"cannot connect to {c.target}: timed out after "
                           f"{c.timeout:g}s")
        sock.close()
        return Outcome(Status.OK, f"{c.target}: connected in {connect_s * 1000:.1f} ms",
                       metrics={"connect_s": round(connect_s, 6)},
                       steps=[Step(name="connect", status=Status.OK,
                                   duration_s=round(connect_s, 6))])

    def _check_tls(self, deadline: Deadline) -> Outcome:
        c = self.config
        name = c.servername or c.host
        store = load_trust(c.ca_file)
        try:
            hs = handshake(c.host, c.port, name, deadline)
        except Unreachable as exc:
            return _failed(exc.stage, str(exc))
        except TimeoutError:
            return _failed("handshake", f"{c.target}: no TLS handshake within {c.timeout:g}s")
        metrics: dict[str, float | None] = {"connect_s": round(hs.connect_s, 6),
                                            "handshake_s": round(hs.handshake_s, 6)}
        details = {"tls_version": hs.version, "cipher": hs.cipher,
                   "subject": hs.chain[0].subject.rfc4514_string(),
                   "issuer": hs.chain[0].issuer.rfc4514_string()}
        steps = [Step(name="connect", status=Status.OK, duration_s=metrics["connect_s"] or 0.0),
                 Step(name="handshake", status=Status.OK,
                      duration_s=metrics["handshake_s"] or 0.0,
                      message=f"{hs.version} {hs.cipher}")]
        problem = verify_chain(hs, store) or usage_problem(hs.chain[0]) or (
            hostname_problem(hs.chain[0], name) if c.verify_hostname else None)
        if problem:
            steps.append(Step(name="verify", status=Status.FAILING, message=problem))
            return Outcome(Status.FAILING, problem, metrics, details, steps)
        steps.append(Step(name="verify", status=Status.OK))
        return Outcome(Status.OK, f"{c.target}: connected, {hs.version} with a trusted "
                       f"certificate for {name}", metrics, details, steps)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("target", metavar="HOST:PORT")
        parser.add_argument("--tls", action="store_true", help="also do a verified TLS handshake")
        parser.add_argument("--servername", help="with --tls: SNI name (default: HOST)")
        parser.add_argument("--ca-file", help="with --tls: PEM bundle of trusted CAs")
        parser.add_argument("--timeout", default="10s", metavar="S",
                            help="a duration, e.g. 10s or 1m (default 10s)")

    @classmethod
    def config_from_args(cls, args: argparse.Namespace) -> CheckConfig:
        split_target(args.target)  # a plain message on bad input, before pydantic's
        return TcpCheckConfig(id=adhoc_id("tcp", args.target), target=args.target, tls=args.tls,
                              servername=args.servername, ca_file=args.ca_file,
                              timeout=args.timeout)


def _failed(step: str, message: str) -> Outcome:
    return Outcome(Status.FAILING, message,
                   steps=[Step(name=step, status=Status.FAILING, message=message)])
