"""The sandbox entry point: one call starts every simulated part on loopback.

Parts: halo-task API, bic-agent and voice360 over TLS from a local CA, the Twilio fake over
TLS, a DNS server for the platform's hostnames, and the control API for faults.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import ssl
import tempfile
from typing import Any

from twilio.rest import Client

from controlplane.probes.twilio_api import twilio_client
from controlplane.sandbox import bic_agent, control, halo_task, voice360
from controlplane.sandbox.ca import LocalCA
from controlplane.sandbox.dns_server import DnsServer
from controlplane.sandbox.faults import FaultSwitch
from controlplane.sandbox.halo_task import IdCardLink
from controlplane.sandbox.platform import ENVIRONMENTS, SandboxEnv, env_by_host, env_by_phone
from controlplane.sandbox.servers import AppServer
from controlplane.sandbox.twilio_fake import Delivery, TwilioFake

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


def default_state_dir() -> str:
    """$CONTROLPLANE_SANDBOX_DIR, else $CONTROLPLANE_CACHE/sandbox (~/.cache/controlplane)."""
    if os.environ.get("CONTROLPLANE_SANDBOX_DIR"):
        return os.environ["CONTROLPLANE_SANDBOX_DIR"]
    cache = os.environ.get("CONTROLPLANE_CACHE") or os.path.expanduser("~/.cache/controlplane")
    return os.path.join(cache, "sandbox")


class Sandbox:
    """The simulated 360Voice platform. ``start()`` then read ``info()``; ``stop()`` at the end.

    ``card_page`` picks bic-agent's card page: ``server`` (rendered on the server, the
    default), ``spa`` (the app shell whose script adds the link, as the real front end
    does) or ``spa-blob`` (the control is a button saving a blob); it may be changed while
    running (bic_agent.CARD_PAGES).

    ``sms_webhook_url``, when given, is set as every synthetic phone's ``SmsUrl`` so the
    Twilio fake calls it (signed) for each delivered SMS, as Twilio does.
    """

    def __init__(self, directory: str | None = None, sms_webhook_url: str | None = None,
                 ports: dict[str, int] | None = None, card_page: str = "server") -> None:
        if card_page not in bic_agent.CARD_PAGES:
            raise ValueError(f"card_page {card_page!r} is not one of "
                             f"{', '.join(bic_agent.CARD_PAGES)}")
        self.card_page = card_page
        self.directory = directory or tempfile.mkdtemp(prefix="cp-sandbox-")
        self.sms_webhook_url = sms_webhook_url
        self._want_ports = ports or {}
        self.faults = FaultSwitch()
        self.halo_token = secrets.token_urlsafe(24)
        self.links: dict[str, IdCardLink] = {}
        self.ca: LocalCA | None = None
        self.twilio: TwilioFake | None = None
        self.servers: dict[str, AppServer] = {}
        self.dns: DnsServer | None = None
        self._twilio_client: Client | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Sandbox:
        self.ca = LocalCA(os.path.join(self.directory, "ca"))
        self.twilio = TwilioFake(policy=self._delivery, ca_file=self.ca.ca_file)
        for env in ENVIRONMENTS:
            self.twilio.set_sms_url(env.phone, self.sms_webhook_url)
        try:
            self._start_servers()
        except Exception:
            self.stop()
            raise
        self.write_state()
        return self

    def _start_servers(self) -> None:
        assert self.ca is not None and self.twilio is not None
        parts: list[tuple[str, Any, list[str]]] = [
            ("twilio", self.twilio.app, ["api.twilio.com", "localhost"]),
            ("halo_task", halo_task.create_app(self), [e.api for e in ENVIRONMENTS]),
            ("bic_agent", bic_agent.create_app(self),
             [h for e in ENVIRONMENTS for h in (e.frontend, e.bic_agent)]),
            ("voice360", voice360.create_app(), [e.voice for e in ENVIRONMENTS]),
        ]
        for part, app, names in parts:
            names = [*names, LOOPBACK]
            base = self.ca._make_context(names, "valid")
            self.servers[part] = AppServer(part, app, LOOPBACK, self._want_ports.get(part, 0),
                                           ssl_context=base,
                                           sni=functools.partial(self._pick_cert, names=names)
                                           ).start()
        self.servers["control"] = AppServer("control", control.create_app(self), LOOPBACK,
                                            self._want_ports.get("control", 0)).start()
        self.dns = DnsServer(self._resolve, LOOPBACK, self._want_ports.get("dns", 0)).start()

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()
        if self.dns is not None:
            self.dns.stop()
            self.dns = None
        if self.twilio is not None:
            self.twilio.stop()
        state = os.path.join(self.directory, "state.json")
        if os.path.exists(state):
            os.unlink(state)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- behaviour hooks the parts call ----------------------------------------------------------

    def _pick_cert(self, server_name: str | None, names: list[str]) -> ssl.SSLContext | None:
        if not server_name or self.ca is None:
            return None
        for fault, validity in (("cert_expired", "expired"), ("cert_expiring", "expiring")):
            if self.faults.for_host(fault, server_name) is not None:
                return self.ca.server_context([server_name], validity)
        # One certificate per host, as cert-manager issues one per ingress host.
        if server_name.lower() in names:
            return self.ca.server_context([server_name.lower()], "valid")
        return None

    def _resolve(self, name: str) -> str | None:
        if env_by_host(name) is None:
            return None
        wrong = self.faults.for_host("dns_wrong_ip", name)
        return wrong["ip"] if wrong else LOOPBACK

    def _delivery(self, from_: str, to: str) -> Delivery:
        env = env_by_phone(to) or env_by_phone(from_)
        if env is None:
            return Delivery()
        if self.faults.active("sms_dropped", env) is not None:
            return Delivery(dropped=True)
        if self.faults.active("sms_undelivered", env) is not None:
            return Delivery(undelivered=True)
        delayed = self.faults.active("sms_delayed", env)
        if delayed is not None:
            return Delivery(delay_s=float(delayed["delay"]))
        return Delivery()

    def twilio_client(self) -> Client:
        """How halo-task talks to Twilio: the real SDK, pointed at the fake."""
        if self._twilio_client is None:
            assert self.twilio is not None and self.ca is not None
            self._twilio_client = twilio_client(self.twilio.account_sid, self.twilio.auth_token,
                                                self.url("twilio"), self.ca.ca_file)
        return self._twilio_client

    # -- addresses -------------------------------------------------------------------------------

    def port(self, part: str) -> int:
        return self.servers[part].port

    def url(self, part: str) -> str:
        return self.servers[part].url

    def env_url(self, env: SandboxEnv, role: str, path: str = "/") -> str:
        """``https://<env host for role>:<port>`` + path; role is frontend, api, voice, bic."""
        host, part = {"frontend": (env.frontend, "bic_agent"), "bic": (env.bic_agent, "bic_agent"),
                      "api": (env.api, "halo_task"), "voice": (env.voice, "voice360")}[role]
        return f"https://{host}:{self.port(part)}{path}"

    @property
    def ca_file(self) -> str:
        assert self.ca is not None
        return self.ca.ca_file

    @property
    def nameserver(self) -> str:
        assert self.dns is not None
        return self.dns.address

    def info(self, secrets: bool = False) -> dict[str, Any]:
        assert self.twilio is not None
        data: dict[str, Any] = {
            "control_url": self.url("control"), "ca_file": self.ca_file,
            "state_file": os.path.join(self.directory, "state.json"),
            "nameserver": self.nameserver, "card_page": self.card_page,
            "twilio_api_base": self.url("twilio"),
            "twilio_account_sid": self.twilio.account_sid,
            "ports": {p: s.port for p, s in self.servers.items()} | {"dns": self.dns_port},
            "environments": {e.name: {"hosts": e.hosts, "phone": e.phone, "sender": e.sender}
                             for e in ENVIRONMENTS},
        }
        if secrets:
            data["twilio_auth_token"] = self.twilio.auth_token
            data["halo_task_token"] = self.halo_token
        return data

    @property
    def dns_port(self) -> int:
        assert self.dns is not None
        return self.dns.port

    def write_state(self) -> str:
        """Write ``state.json`` (0600: it holds the fakes' tokens) for the CLI and the demo."""
        path = os.path.join(self.directory, "state.json")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(self.info(secrets=True), fh, indent=2)
        return path
