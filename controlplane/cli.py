"""The `controlplane` command. Exit codes: 0 ok/degraded, 1 failing, 2 error.

Each command family lives in its own module exposing ``register(subparsers)``; a
command handler takes the parsed args and returns the exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from controlplane import __version__

# One line per command family; each module has register(subparsers).
COMMAND_MODULES = [
    "controlplane.commands.core",
    "controlplane.commands.db",
    "controlplane.commands.probe",
    "controlplane.commands.silence",
    "controlplane.commands.oncall",
    "controlplane.commands.backup",
    "controlplane.commands.runbook",
    "controlplane.commands.sandbox",
    "controlplane.commands.demo",
    "controlplane.commands.smoke",
    "controlplane.commands.manifest",
    "controlplane.commands.secrets",
]

EXIT_OK, EXIT_FAILING, EXIT_ERROR = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="controlplane",
                                     description="360Voice observability and DR control plane")
    parser.add_argument("--log-level", default="WARNING",
                        help="DEBUG, INFO, WARNING (default) or ERROR")
    parser.add_argument("--version", action="version", version=f"controlplane {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from controlplane.logs import setup_logging

    setup_logging(args.log_level)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    return code


def err(message: str) -> None:
    print(f"controlplane: {message}", file=sys.stderr)


log = logging.getLogger(__name__)
