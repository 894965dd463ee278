"""Registry of check kinds: one line per kind, imported lazily.

Lazy so that `controlplane validate` does not pay for (or need) every client library.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

from controlplane.probes.base import Probe

KINDS: dict[str, str] = {
    "http": "controlplane.probes.http:HttpProbe",
    "tls": "controlplane.probes.tls:TlsProbe",
    "dns": "controlplane.probes.dns:DnsProbe",
    "tcp": "controlplane.probes.tcp:TcpProbe",
    "kafka_lag": "controlplane.probes.kafka_lag:KafkaLagProbe",
    "kafka_cluster": "controlplane.probes.kafka_cluster:KafkaClusterProbe",
    "kafka_canary": "controlplane.probes.kafka_canary:KafkaCanaryProbe",
    "backup": "controlplane.dr.probes:BackupProbe",
    "drill": "controlplane.dr.probes:DrillProbe",
    "dr": "controlplane.dr.probes:DrProbe",
    "idcard_sms": "controlplane.probes.idcard_sms:IdCardSmsProbe",
    "config_drift": "controlplane.probes.config_drift:ConfigDriftProbe",
    "postgres": "controlplane.probes.postgres:PostgresProbe",
    "rabbitmq": "controlplane.probes.rabbitmq:RabbitMqProbe",
    "s3": "controlplane.probes.s3:S3Probe",
    "clickhouse": "controlplane.probes.clickhouse:ClickHouseProbe",
    "smtp": "controlplane.probes.smtp:SmtpProbe",
    "vendor_status": "controlplane.probes.vendor_status:VendorStatusProbe",
    "vendor_api": "controlplane.probes.vendor_api:VendorApiProbe",
    "kafka_tls": "controlplane.probes.kafka_tls:KafkaTlsProbe",
    "k8s_workload": "controlplane.probes.k8s_workload:K8sWorkloadProbe",
    "release_drift": "controlplane.probes.release_drift:ReleaseDriftProbe",
    "aks": "controlplane.probes.aks:AksProbe",
}


@cache
def probe_class(kind: str) -> type[Probe[Any]]:
    """The Probe class for a kind; KeyError if the kind is unknown."""
    module_name, _, attr = KINDS[kind].partition(":")
    cls: type[Probe[Any]] = getattr(importlib.import_module(module_name), attr)
    return cls


def valid_kinds() -> list[str]:
    return sorted(KINDS)
