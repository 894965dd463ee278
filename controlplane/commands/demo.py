"""`controlplane demo`: the simulated platform plus the control plane, on one machine."""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import threading
from types import FrameType

from controlplane.cli import EXIT_ERROR, EXIT_OK, err


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run the simulated platform and the control plane watching "
                       "it, with a scripted fault timeline")
    p.add_argument("--host", default="127.0.0.1", help="web host (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="web port (default 8080; 0 = any)")
    p.add_argument("--no-timeline", action="store_true", help="inject no faults by script")
    p.add_argument("--speed", type=float, default=1.0,
                   help="run the fault timeline this many times faster (default 1)")
    p.set_defaults(handler=cmd_demo)


def _port_busy(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be served, checked before anything starts; None if free."""
    if port == 0:
        return None
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def cmd_demo(args: argparse.Namespace) -> int:
    if args.speed <= 0:
        err("--speed must be greater than 0")
        return EXIT_ERROR
    busy = _port_busy(args.host, args.port)
    if busy:
        err(f"cannot serve on {args.host}:{args.port}: {busy}; pass another --port")
        return EXIT_ERROR
    from controlplane.config import ConfigError
    from controlplane.sandbox.demo import Demo
    from controlplane.server import serve

    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    demo = Demo(args.host, args.port, say=lambda line: print(line, flush=True))
    try:
        cfg = demo.start()
    except ConfigError as exc:
        demo.stop()
        for problem in exc.problems:
            err(str(problem))
        return EXIT_ERROR
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        demo.stop()
        err(f"the demo could not start: {exc}")
        return EXIT_ERROR
    except BaseException:
        demo.stop()  # whatever went wrong, nothing the demo started outlives it
        raise
    print(f"demo: sandbox up ({demo.sandbox.url('control')}/faults), "
          f"{len(cfg.checks)} checks configured", flush=True)

    def on_ready(url: str) -> None:
        print(f"demo: control plane on {url}", flush=True)
        for line in demo.guide(url):
            print(line, flush=True)
        if not args.no_timeline:
            demo.start_timeline(args.speed)
        demo.prime_dr()

    code = EXIT_OK
    try:
        serve(cfg, stop, on_ready)
    except OSError as exc:
        err(f"cannot serve on {args.host}:{args.port}: {exc.strerror}; pass another --port")
        code = EXIT_ERROR
    finally:
        demo.stop()
    print("demo: stopped", flush=True)
    return code
