"""The fault switch: named faults, each scoped to one environment, with parameters.

Parts of the sandbox ask the switch on every request, so a fault takes effect at once
and clearing it heals the platform at once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from controlplane.sandbox.platform import ENVIRONMENTS, SandboxEnv, env_by_name


@dataclass(frozen=True)
class FaultSpec:
    description: str
    params: dict[str, str] = field(default_factory=dict)  # name -> default ("" = optional)


FAULTS: dict[str, FaultSpec] = {
    "sms_delayed": FaultSpec("SMS delivered late (delay seconds)", {"delay": "90"}),
    "sms_dropped": FaultSpec("SMS accepted by Twilio but never delivered"),
    "sms_undelivered": FaultSpec("the carrier reports the SMS undelivered (error 30003)"),
    "wrong_link_host": FaultSpec("ID-card link points at the wrong host",
                                 {"host": "links.halo360.ai"}),
    "appconfig_staging": FaultSpec("appconfig.json points at another environment "
                                   "(the 0.1.27-r121 bug)", {"target": "staging"}),
    "pdf_broken": FaultSpec("the ID-card PDF is truncated and unreadable"),
    "halo_task_500": FaultSpec("halo-task API answers 500 to everything"),
    "cert_expiring": FaultSpec("certificate expiring in 5 days (host: default the front end)",
                               {"host": ""}),
    "cert_expired": FaultSpec("expired certificate (host: default the front end)", {"host": ""}),
    "dns_wrong_ip": FaultSpec("DNS answers the wrong IP (host: default the front end)",
                              {"host": "", "ip": "127.0.0.2"}),
}

HOST_FAULTS = ("cert_expiring", "cert_expired", "dns_wrong_ip")


class FaultError(ValueError):
    """A bad fault request; the message says what to use instead."""


@dataclass(frozen=True)
class ActiveFault:
    name: str
    env: str
    params: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "env": self.env, "params": dict(self.params),
                "description": FAULTS[self.name].description}


class FaultSwitch:
    def __init__(self) -> None:
        self._active: dict[tuple[str, str], ActiveFault] = {}
        self._lock = threading.Lock()

    def set(self, name: str, env: str = "production",
            params: dict[str, str] | None = None) -> ActiveFault:
        spec = FAULTS.get(name)
        if spec is None:
            raise FaultError(f"unknown fault {name!r}; use one of: {', '.join(FAULTS)}")
        try:
            sandbox_env = env_by_name(env)
        except KeyError as exc:
            raise FaultError(str(exc.args[0])) from None
        given = dict(params or {})
        unknown = sorted(set(given) - set(spec.params))
        if unknown:
            allowed = ", ".join(spec.params) or "none"
            raise FaultError(f"fault {name} has no parameter {unknown[0]!r}; "
                             f"parameters: {allowed}")
        merged = {**spec.params, **given}
        if name in HOST_FAULTS and not merged["host"]:
            merged["host"] = sandbox_env.frontend
        if name in HOST_FAULTS and merged["host"].lower() not in sandbox_env.hosts.values():
            raise FaultError(f"{name}: host {merged['host']!r} is not a {env} hostname; use one "
                             f"of: {', '.join(sandbox_env.hosts.values())}")
        self._validate(name, merged)
        fault = ActiveFault(name, env, merged)
        with self._lock:
            self._active[(name, env)] = fault
        return fault

    @staticmethod
    def _validate(name: str, params: dict[str, str]) -> None:
        if name == "sms_delayed":
            try:
                if float(params["delay"]) < 0:
                    raise ValueError
            except ValueError:
                raise FaultError("sms_delayed: delay must be a number of seconds >= 0") from None
        if name == "appconfig_staging":
            try:
                env_by_name(params["target"])
            except KeyError as exc:
                raise FaultError(f"appconfig_staging: {exc.args[0]}") from None

    def clear(self, name: str | None = None, env: str | None = None) -> int:
        """Clear matching faults (all when both are None); returns how many were cleared."""
        if name is not None and name not in FAULTS:
            raise FaultError(f"unknown fault {name!r}; use one of: {', '.join(FAULTS)}")
        with self._lock:
            keys = [k for k in self._active
                    if (name is None or k[0] == name) and (env is None or k[1] == env)]
            for k in keys:
                del self._active[k]
        return len(keys)

    def list(self) -> list[ActiveFault]:
        with self._lock:
            return sorted(self._active.values(), key=lambda f: (f.name, f.env))

    def active(self, name: str, env: SandboxEnv | str) -> dict[str, str] | None:
        env_name = env if isinstance(env, str) else env.name
        with self._lock:
            fault = self._active.get((name, env_name))
        return dict(fault.params) if fault else None

    def for_host(self, name: str, host: str) -> dict[str, str] | None:
        """Params of a host-scoped fault covering ``host``, if any."""
        host = host.lower()
        with self._lock:
            for (fname, _env), fault in self._active.items():
                if fname == name and fault.params.get("host", "").lower() == host:
                    return dict(fault.params)
        return None


def known_envs() -> list[str]:
    return [e.name for e in ENVIRONMENTS]
