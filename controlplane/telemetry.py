"""OpenTelemetry set-up: OTLP/HTTP exporter when configured, otherwise no export."""

from __future__ import annotations

import logging

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from controlplane.config import TelemetryConfig

log = logging.getLogger(__name__)


def setup_telemetry(cfg: TelemetryConfig) -> trace.Tracer:
    if not cfg.otlp_endpoint:
        # nothing would export the spans: don't build one per check run (SDK spans cost
        # ids, attributes and a lock each)
        return trace.NoOpTracer()
    provider = TracerProvider(resource=Resource.create({"service.name": cfg.service_name}))
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(
        endpoint=cfg.otlp_endpoint.rstrip("/") + "/v1/traces")))
    log.info("tracing enabled exporter=otlp endpoint=%s", cfg.otlp_endpoint)
    return provider.get_tracer("controlplane")
