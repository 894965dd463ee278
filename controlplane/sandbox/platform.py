"""The simulated platform's shape: environments, their hostnames and phone numbers.

Hostnames match ``controlplane.yaml`` so the demo watches the same names as production;
the sandbox DNS server answers them with loopback addresses.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SandboxEnv:
    name: str
    label: str
    frontend: str   # where ID-card links land (bic-sky.halo360.ai)
    bic_agent: str  # the agent front end (halovoice.techhalo.ai)
    api: str        # halo-task-manager-api
    voice: str      # voice360 API
    phone: str      # the synthetic client's phone, owned by the control plane
    sender: str     # halo-task's Twilio sender number

    @property
    def hosts(self) -> dict[str, str]:
        return {"voice360": self.voice, "bic_agent": self.bic_agent,
                "halo_task_api": self.api, "idcard_frontend": self.frontend}


ENVIRONMENTS: tuple[SandboxEnv, ...] = (
    SandboxEnv("production", "Production", "bic-sky.halo360.ai", "halovoice.techhalo.ai",
               "api-halo-task.techhalo.ai", "360voice.techhalo.ai", "+15550100001",
               "+15550199001"),
    SandboxEnv("release", "Release (pre-prod)", "release-sky.halo360.ai",
               "halovoice-release.techhalo.ai", "api-halo-task-release.techhalo.ai",
               "360voice-release.techhalo.ai", "+15550100002", "+15550199002"),
    SandboxEnv("staging", "Staging", "staging-sky.halo360.ai", "halovoice-staging.techhalo.ai",
               "api-halo-task-staging.techhalo.ai", "360voice-staging.techhalo.ai",
               "+15550100003", "+15550199003"),
    SandboxEnv("dev", "Dev", "dev-sky.halo360.ai", "halovoice-dev.techhalo.ai",
               "api-halo-task-dev.techhalo.ai", "360voice-dev.techhalo.ai", "+15550100004",
               "+15550199004"),
)

SYNTHETIC_CLIENT = "Ada Synthetic"
"""Name of the synthetic client whose ID card the checks request."""


def env_by_name(name: str) -> SandboxEnv:
    for env in ENVIRONMENTS:
        if env.name == name:
            return env
    raise KeyError(f"unknown environment {name!r}; use one of: "
                   + ", ".join(e.name for e in ENVIRONMENTS))


def env_by_host(host: str) -> SandboxEnv | None:
    host = host.split(":")[0].lower()
    for env in ENVIRONMENTS:
        if host in env.hosts.values():
            return env
    return None


def env_by_phone(phone: str) -> SandboxEnv | None:
    return next((e for e in ENVIRONMENTS if phone in (e.phone, e.sender)), None)


def all_hosts() -> list[str]:
    return [h for env in ENVIRONMENTS for h in env.hosts.values()]
