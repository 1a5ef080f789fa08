"""Convert another agent's config into shipper's: `otelcol.convert_otelcol` for an
OpenTelemetry Collector config (filelog receiver, processors, loki/otlphttp exporters).

Nothing is imported here: `run` reads `source.COLLECTOR_KEYS` for every config, and the
converter itself (0.7 MiB of the agent's memory) is loaded only for a Collector config.
"""
