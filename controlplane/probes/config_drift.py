"""`config_drift`: does an environment's front end point at its own environment?

Fetches the front end's ``appconfig.json`` and judges every URL in it against the
environment's hosts (``environments.<env>.hosts``). A URL whose host belongs to another
environment is drift (failing): the 0.1.27-r121 production image shipped staging URLs.

A host is judged in this order:
1. one of an environment's configured hosts: that environment's (ours: ok, another: drift);
2. matched by ``allowed_hosts`` (shell-style patterns, for third parties): allowed;
3. inside the platform's own domains (the parent domains of the configured hosts, e.g.
   ``techhalo.ai``, ``halo360.ai``) with a label naming another environment (say
   ``hub-staging.techhalo.ai``): drift; the guess is never applied to foreign domains, where
   ``dev.azure.com`` or ``cdn.release.example.com`` say nothing about our environments;
4. anything else is unknown, judged by ``unknown_hosts``.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field

from controlplane.probes.base import CheckConfig, Outcome, Probe, ProbeError
from controlplane.probes.sitefetch import Fetcher, FetchError
from controlplane.results import Status

URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


class ConfigDriftConfig(CheckConfig):
    kind: Literal["config_drift"] = "config_drift"
    url: str | None = Field(default=None, description="default https://<frontend host><path>")
    path: str = "/assets/appconfig.json"
    frontend_role: str = "idcard_frontend"
    allowed_hosts: list[str] = Field(default_factory=list)
    unknown_hosts: Literal["ignore", "degraded", "failing"] = "degraded"
    ca_file: str | None = None
    nameserver: str | None = Field(default=None, pattern=r"^[0-9a-fA-F.:\[\]]+$")


class ConfigDriftProbe(Probe[ConfigDriftConfig]):
    kind = "config_drift"
    config_model = ConfigDriftConfig

    def check(self) -> Outcome:
        cfg = self.config
        envs = self.context.environments
        own = envs.get(cfg.env)
        if own is None:
            raise ProbeError(f"config_drift needs env set to a configured environment "
                             f"(got {cfg.env!r}; known: {', '.join(sorted(envs)) or 'none'})")
        url = cfg.url or f"https://{self._frontend(own)}/{cfg.path.lstrip('/')}"
        try:
            got = Fetcher(cfg.ca_file, cfg.nameserver, cfg.timeout).request(
                "GET", url, headers={"Accept": "application/json"})
        except FetchError as exc:
            raise ProbeError(f"cannot fetch appconfig.json: {exc}") from None
        if got.status != 200:
            raise ProbeError(f"{url} answered {got.status}; cannot judge drift")
        try:
            data = json.loads(got.body)
        except ValueError:
            return Outcome(Status.FAILING, f"{url} is not valid JSON ({len(got.body)} bytes)",
                           details={"url": url})
        rows = [self._judge(key, value) for key, value in _urls(data)]
        return self._verdict(url, rows)

    def _frontend(self, env: Any) -> str:
        try:
            return str(env.host(self.config.frontend_role))
        except KeyError:
            raise ProbeError(f"environment {self.config.env!r} has no "
                             f"{self.config.frontend_role} host; add it or set url") from None

    def _judge(self, key: str, value: str) -> dict[str, Any]:
        host = (urlsplit(value).hostname or "").lower()
        row: dict[str, Any] = {"key": key, "value": _safe(value), "host": host}
        own = self.config.env
        owner = self._configured_owner(host)
        allowed = owner is None and self._allowed(host)
        if owner is None and not allowed:
            owner = self._named_owner(host)
        if owner == own:
            row["verdict"] = "ok"
        elif owner is not None:
            row["verdict"], row["env"] = "other_env", owner
        elif allowed:
            row["verdict"] = "allowed"
        else:
            row["verdict"] = "unknown"
        return row

    def _configured_owner(self, host: str) -> str | None:
        """The environment that lists ``host`` among its hosts: a definite answer, so no
        allowed_hosts pattern (say ``*.techhalo.ai``) can hide another environment's host."""
        return next((name for name, env in self.context.environments.items()
                     if host in {_hostname(h) for h in env.hosts.values()}), None)

    def _allowed(self, host: str) -> bool:
        return any(fnmatch.fnmatch(host, p.lower()) for p in self.config.allowed_hosts)

    def _named_owner(self, host: str) -> str | None:
        """Another environment named by a label of ``host``, for hosts in our own domains only.

        ``hub-staging.techhalo.ai`` is staging's; ``dev.azure.com`` is nobody's."""
        envs = self.context.environments
        domains = platform_domains(envs)
        if not any(host.endswith("." + d) for d in domains):
            return None
        own = self.config.env
        labels = set(re.split(r"[.-]", host))
        named = [name for name in envs if name != own and name in labels]
        return named[0] if named and own not in labels else None

    def _verdict(self, url: str, rows: list[dict[str, Any]]) -> Outcome:
        cfg = self.config
        drift = [r for r in rows if r["verdict"] == "other_env"]
        unknown = [r for r in rows if r["verdict"] == "unknown"]
        metrics: dict[str, float | None] = {"urls": len(rows), "drifted": len(drift),
                                            "unknown": len(unknown)}
        details = {"url": url, "urls": rows}
        if drift:
            by_env: dict[str, list[str]] = {}
            for r in drift:
                by_env.setdefault(r["env"], []).append(f"{r['key']}={r['value']}")
            parts = "; ".join(f"{env}: {', '.join(v)}" for env, v in by_env.items()) \
                if len(by_env) > 1 else ", ".join(next(iter(by_env.values())))
            return Outcome(Status.FAILING, f"{cfg.env} appconfig.json points at "
                           f"{', '.join(by_env)}: {parts}", metrics, details)
        if not rows:
            return Outcome(Status.DEGRADED, f"no URLs found in {url}; check path", metrics,
                           details)
        if unknown and cfg.unknown_hosts != "ignore":
            listing = ", ".join(f"{r['key']}={r['value']}" for r in unknown)
            return Outcome(Status(cfg.unknown_hosts), f"{cfg.env} appconfig.json has hosts no "
                           f"environment claims (add them to allowed_hosts if expected): "
                           f"{listing}", metrics, details)
        return Outcome(Status.OK, f"all {len(rows)} URLs in appconfig.json point at {cfg.env}",
                       metrics, details)


def platform_domains(environments: Mapping[str, Any]) -> set[str]:
    """The platform's own domains: each configured host's parent domain.

    ``api-halo-task.techhalo.ai`` gives ``techhalo.ai``; a two-label host (``example.com``)
    stands for itself, so a short host never widens the domain to a whole top-level domain.
    """
    out: set[str] = set()
    for env in environments.values():
        for raw in env.hosts.values():
            labels = _hostname(raw).split(".")
            if len(labels) >= 2:
                out.add(".".join(labels[1:]) if len(labels) > 2 else ".".join(labels))
    return out


def _hostname(host: str) -> str:
    """A configured host without port, lower case (roles may carry ``host:port``)."""
    return (urlsplit(f"//{host}").hostname or host).lower()


def _urls(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, value) of every URL-looking string, depth first in document order."""
    out: list[tuple[str, str]] = []
    if isinstance(data, dict):
        for k, v in data.items():
            out += _urls(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _urls(v, f"{prefix}[{i}]")
    elif isinstance(data, str) and URL.match(data.strip()):
        out.append((prefix, data.strip()))
    return out


def _safe(url: str) -> str:
    """The URL without credentials or query string: config files carry keys in both."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{netloc}{parts.path}"
