"""Convert another agent's config into shipper's: `convert_otelcol` for an OpenTelemetry
Collector config (filelog receiver, processors, loki/otlphttp exporters)."""

from shipper.convert.otelcol import Conversion, convert_otelcol
from shipper.convert.source import NotCollector

__all__ = ["Conversion", "NotCollector", "convert_otelcol"]
