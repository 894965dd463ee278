"""`controlplane sandbox run` and `controlplane sandbox fault set|clear|list`."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

from controlplane.cli import EXIT_ERROR, EXIT_OK, err


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sandbox", help="the simulated 360Voice platform (run it, inject faults)")
    ssub = p.add_subparsers(dest="sandbox_command", metavar="ACTION", required=True)
    run = ssub.add_parser("run", help="start every simulated part and wait for Ctrl-C")
    run.add_argument("--dir", help="where the CA and state.json go "
                     "(default: $CONTROLPLANE_CACHE/sandbox)")
    run.add_argument("--sms-webhook", metavar="URL",
                     help="set as the synthetic phones' SmsUrl (e.g. a control plane's "
                          "http://127.0.0.1:8080/webhooks/twilio/sms)")
    run.add_argument("--card-page", choices=("server", "spa", "spa-blob"), default="server",
                     help="bic-agent's card page: rendered on the server (default) or the "
                          "app shell whose script adds the PDF link, as the real front end (spa; "
                          "spa-blob: a button that saves the PDF from a blob: URL)")
    run.set_defaults(handler=cmd_run)

    fault = ssub.add_parser("fault", help="inject, clear or list faults")
    fsub = fault.add_subparsers(dest="fault_command", metavar="ACTION", required=True)
    fs = fsub.add_parser("set", help="inject a fault")
    fs.add_argument("name", help="fault name (`controlplane sandbox fault list` shows them)")
    fs.add_argument("--env", default="production", help="environment (default production)")
    fs.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="fault parameter, e.g. delay=120 (repeatable)")
    fc = fsub.add_parser("clear", help="clear one fault, or all with --all")
    fc.add_argument("name", nargs="?", help="fault name")
    fc.add_argument("--env", help="only in this environment")
    fc.add_argument("--all", action="store_true", help="clear every fault")
    fl = fsub.add_parser("list", help="active and available faults")
    fl.add_argument("--json", action="store_true", help="print JSON")
    for q in (fs, fc, fl):
        q.add_argument("--url", help="sandbox control URL (default: $CONTROLPLANE_SANDBOX_URL "
                       "or the running sandbox's state.json)")
    fs.set_defaults(handler=cmd_fault_set)
    fc.set_defaults(handler=cmd_fault_clear)
    fl.set_defaults(handler=cmd_fault_list)


def cmd_run(args: argparse.Namespace) -> int:
    from controlplane.sandbox.runner import Sandbox, default_state_dir

    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sb = Sandbox(directory=args.dir or default_state_dir(), sms_webhook_url=args.sms_webhook,
                 card_page=args.card_page)
    sb.start()
    try:
        print_info(sb.info())
        print("sandbox: running; Ctrl-C stops it", flush=True)
        stop.wait()
    finally:
        sb.stop()
    print("sandbox: stopped", flush=True)
    return EXIT_OK


def print_info(info: dict[str, Any]) -> None:
    ports = info["ports"]
    print(f"sandbox: fault API     {info['control_url']}/faults", flush=True)
    print(f"sandbox: DNS           {info['nameserver']} (UDP; answers the platform's hostnames)")
    print(f"sandbox: CA            {info['ca_file']}")
    print(f"sandbox: Twilio fake   {info['twilio_api_base']}")
    print(f"sandbox: bic-agent     https://bic-sky.halo360.ai:{ports['bic_agent']}/ "
          "(and every front-end host)")
    print(f"sandbox: halo-task API https://api-halo-task.techhalo.ai:{ports['halo_task']}/health")
    print(f"sandbox: voice360      https://360voice.techhalo.ai:{ports['voice360']}/")
    print(f"sandbox: tokens        {info['state_file']} (Twilio and halo-task tokens, mode 0600)",
          flush=True)


def control_url(explicit: str | None) -> str | None:
    if explicit:
        return explicit.rstrip("/")
    if os.environ.get("CONTROLPLANE_SANDBOX_URL"):
        return os.environ["CONTROLPLANE_SANDBOX_URL"].rstrip("/")
    from controlplane.sandbox.runner import default_state_dir

    try:
        with open(os.path.join(default_state_dir(), "state.json")) as fh:
            return str(json.load(fh)["control_url"])
    except (OSError, ValueError, KeyError):
        return None


def _call(args: argparse.Namespace, method: str, path: str, **kw: Any) -> Any:
    base = control_url(args.url)
    if base is None:
        err("no running sandbox found: start one with `controlplane sandbox run` or "
            "`controlplane demo`, or pass --url")
        return None
    import requests  # here: `controlplane --help` should not pay for it

    try:
        resp = requests.request(method, base + path, timeout=10, **kw)
    except requests.RequestException as exc:
        err(f"cannot reach the sandbox at {base}: {exc}")
        return None
    body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") \
        else {}
    if resp.status_code >= 400:
        err(body.get("error") or f"sandbox answered {resp.status_code}")
        return None
    return body


def cmd_fault_set(args: argparse.Namespace) -> int:
    params: dict[str, str] = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            err(f"--param {item!r}: write it as KEY=VALUE, e.g. delay=120")
            return EXIT_ERROR
        params[key] = value
    body = _call(args, "POST", "/faults",
                 json={"name": args.name, "env": args.env, "params": params})
    if body is None:
        return EXIT_ERROR
    shown = " ".join(f"{k}={v}" for k, v in body["params"].items() if v)
    print(f"fault set: {body['name']} in {body['env']}" + (f" ({shown})" if shown else ""))
    return EXIT_OK


def cmd_fault_clear(args: argparse.Namespace) -> int:
    if not args.name and not args.all:
        err("name the fault to clear, or pass --all")
        return EXIT_ERROR
    path = "/faults" if args.all and not args.name else f"/faults/{args.name}"
    body = _call(args, "DELETE", path, params={"env": args.env} if args.env else None)
    if body is None:
        return EXIT_ERROR
    print(f"cleared {body['cleared']} fault(s)")
    return EXIT_OK


def cmd_fault_list(args: argparse.Namespace) -> int:
    body = _call(args, "GET", "/faults")
    if body is None:
        return EXIT_ERROR
    if args.json:
        json.dump(body, sys.stdout, indent=2)
        print()
        return EXIT_OK
    print("ACTIVE")
    for f in body["faults"] or []:
        shown = " ".join(f"{k}={v}" for k, v in f["params"].items() if v)
        print(f"  {f['name']:<18} {f['env']:<11} {shown}")
    if not body["faults"]:
        print("  (none)")
    print("AVAILABLE")
    for name, spec in body["available"].items():
        params = " ".join(f"{k}={v or '…'}" for k, v in spec["params"].items())
        print(f"  {name:<18} {spec['description']}" + (f"  [{params}]" if params else ""))
    return EXIT_OK
