"""`controlplane probe KIND TARGET [options] [--json]`: one ad-hoc probe, no config needed."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from controlplane.cli import EXIT_ERROR, err

if TYPE_CHECKING:  # loaded when a probe runs, so `controlplane --help` stays quick
    from controlplane.probes.base import CheckConfig, ProbeContext
    from controlplane.results import Result

# CLI name -> check kind. A kind is offered here when its Probe implements config_from_args.
PROBE_COMMANDS: dict[str, str] = {
    "tls": "tls",
    "http": "http",
    "dns": "dns",
    "tcp": "tcp",
    "kafka-lag": "kafka_lag",
    "kafka-cluster": "kafka_cluster",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("probe", help="run one ad-hoc probe",
                       description="Kinds: " + ", ".join(PROBE_COMMANDS)
                       + ". `controlplane probe KIND --help` shows a kind's options.")
    p.add_argument("kind", choices=sorted(PROBE_COMMANDS), metavar="KIND")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="target and options of KIND")
    p.set_defaults(handler=cmd_probe)


def cmd_probe(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from controlplane.probes import probe_class
    from controlplane.probes.base import ProbeContext

    cls = probe_class(PROBE_COMMANDS[args.kind])
    parser = argparse.ArgumentParser(prog=f"controlplane probe {args.kind}")
    cls.add_arguments(parser)
    if not any(a.dest == "json" for a in parser._actions):
        parser.add_argument("--json", action="store_true", help="print the Result as JSON")
    try:
        kargs = parser.parse_args(args.rest)
    except SystemExit as exc:  # argparse exits 2 on bad input, 0 on --help
        return int(exc.code or 0)
    try:
        config = cls.config_from_args(kargs)
    except (ValidationError, ValueError) as exc:
        err(_short(exc))
        return EXIT_ERROR
    return run_and_print(config, ProbeContext(), kargs.json)


def run_and_print(check: CheckConfig, context: ProbeContext, as_json: bool) -> int:
    """Run one check once, with the scheduler's hard timeout; print it; return the exit code."""
    from controlplane.scheduler import CheckRunner

    runner = CheckRunner(check, context)
    try:
        result = runner.run()
    finally:
        runner.close()
    print_result(result, as_json)
    return result.status.exit_code


def print_result(result: Result, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.to_json_dict(), indent=2))
        return
    print(f"{result.status.value.upper()}  {result.check}  {result.message}")
    for step in result.steps:
        print(f"  {step.status.value:<8} {step.name:<24} {step.duration_s:.3f}s  {step.message}")
    for key, value in result.metrics.items():
        print(f"  {key} = {value}")


def _short(exc: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: "
                         f"{str(e['msg']).removeprefix('Value error, ')}" for e in exc.errors())
    return str(exc)
